"""The `pareto` console script, run as a real subprocess: check-config, serve and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from proxy.demo.gateway_process import free_port
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, deployment

PARETO = Path(sys.executable).parent / "pareto"
UPSTREAM_KEY = "sk-upstream-cli-secret-93b1"
START_LIMIT_SECONDS = 2.0
POLL_SECONDS = 0.02


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def valid_config(api_base: str) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("m", "gpt-fake", api_base, api_key=UPSTREAM_KEY),
            deployment("m", "gpt-fake-2", api_base, api_key=UPSTREAM_KEY),
            deployment("e", "text-embedding-fake", api_base),
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def run_pareto(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PARETO), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@dataclass
class Served:
    """A `pareto serve` process started by a test, with its port and log files."""

    process: subprocess.Popen[bytes]
    port: int
    started: float
    stderr_path: Path
    database: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, limit: float) -> float:
        """Poll the liveness probe and return the seconds from process start to the first 200."""
        deadline = self.started + limit
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"pareto serve exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                response = httpx.get(f"{self.base_url}/health/liveliness", timeout=0.5)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                elapsed = time.perf_counter() - self.started
                assert self.process.poll() is None, self.stderr()
                return elapsed
            time.sleep(POLL_SECONDS)
        pytest.fail(f"pareto serve did not answer within {limit} s:\n{self.stderr()}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start `pareto serve` processes in tmp_path, and stop those still running after the test."""
    started: list[Served] = []

    def start(config: Path, *options: str) -> Served:
        port = free_port()
        database = tmp_path / "pareto.db"
        stderr_path = tmp_path / f"serve-{len(started)}.log"
        environ = {**child_environ(), "DATABASE_URL": f"sqlite:///{database}"}
        command = [str(PARETO), "serve", "--config", str(config), "--port", str(port), *options]
        with stderr_path.open("wb") as stderr:
            begin = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=tmp_path, env=environ, stdout=stderr, stderr=stderr
            )
        served = Served(process, port, begin, stderr_path, database)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is not None:
            continue
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait(timeout=15)


def child_environ() -> dict[str, str]:
    environ = dict(os.environ)
    environ.pop("PARETO_CONFIG", None)
    return environ


def chat(served: Served, text: str) -> httpx.Response:
    return httpx.post(
        f"{served.base_url}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": text}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=20,
    )


def request_rows(database: Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(database)
    try:
        return connection.execute(
            "SELECT status, served_model, endpoint FROM request_log ORDER BY id"
        ).fetchall()
    finally:
        connection.close()


def test_check_config_valid(tmp_path: Path) -> None:
    path = write_config(tmp_path, valid_config("http://127.0.0.1:9/v1"))

    result = run_pareto("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: valid; 2 models, 3 deployments, 0 policies"
    assert "  m -> openai/gpt-fake, openai/gpt-fake-2" in lines
    assert "  e -> openai/text-embedding-fake" in lines
    assert result.stderr == ""


def test_check_config_hides_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, valid_config("http://127.0.0.1:9/v1"))

    result = run_pareto("check-config", str(path), cwd=tmp_path)

    assert UPSTREAM_KEY not in result.stdout + result.stderr
    assert MASTER_KEY not in result.stdout + result.stderr


def test_check_config_warnings(tmp_path: Path) -> None:
    config = valid_config("http://127.0.0.1:9/v1")
    config["general_settings"]["alerting"] = ["slack"]
    path = write_config(tmp_path, config)

    result = run_pareto("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 0
    assert "warning: general_settings.alerting: not supported by Pareto yet" in result.stderr


def test_check_config_invalid(tmp_path: Path) -> None:
    config = valid_config("http://127.0.0.1:9/v1")
    del config["model_list"][1]["litellm_params"]["model"]
    config["model_list"][2]["litellm_params"]["timeout"] = "abc"
    path = write_config(tmp_path, config)

    result = run_pareto("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"invalid configuration {path}" in result.stderr
    assert "model_list[1].litellm_params.model: missing" in result.stderr
    assert "model_list[2].litellm_params.timeout: invalid value 'abc'" in result.stderr
    assert UPSTREAM_KEY not in result.stderr


def test_check_config_missing_file(tmp_path: Path) -> None:
    result = run_pareto("check-config", "absent.yaml", cwd=tmp_path)

    assert result.returncode == 2
    assert "absent.yaml: file not found" in result.stderr


def test_no_command_prints_help(tmp_path: Path) -> None:
    result = run_pareto(cwd=tmp_path)

    assert result.returncode == 2
    assert "check-config" in result.stdout


def test_workers_zero_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, valid_config("http://127.0.0.1:9/v1"))

    result = run_pareto("serve", "--config", str(path), "--workers", "0", cwd=tmp_path)

    assert result.returncode == 2
    assert "must be at least 1" in result.stderr


def test_serve_invalid_config_exits(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"model_list": []})

    result = run_pareto("serve", "--config", str(path), "--port", str(free_port()), cwd=tmp_path)

    assert result.returncode == 2
    assert "model_list: invalid value []" in result.stderr


@pytest.mark.parametrize(
    ("section", "key"),
    [("general_settings", "master_key"), ("model_list", "api_base")],
)
def test_serve_refuses_unset_required_variable(tmp_path: Path, section: str, key: str) -> None:
    config = valid_config("http://127.0.0.1:9/v1")
    if section == "general_settings":
        config["general_settings"]["master_key"] = "os.environ/PARETO_TEST_UNSET_VARIABLE"
    else:
        config["model_list"][0]["litellm_params"]["api_base"] = (
            "os.environ/PARETO_TEST_UNSET_VARIABLE"
        )
    path = write_config(tmp_path, config)

    served = run_pareto("serve", "--config", str(path), "--port", str(free_port()), cwd=tmp_path)
    checked = run_pareto("check-config", str(path), cwd=tmp_path)

    assert served.returncode == 2
    assert "needs environment variables that are not set" in served.stderr
    assert f"{key}: environment variable PARETO_TEST_UNSET_VARIABLE is not set" in served.stderr
    assert checked.returncode == 0
    assert "PARETO_TEST_UNSET_VARIABLE is not set; the value is empty" in checked.stderr


def test_serve_missing_config_exits(tmp_path: Path) -> None:
    result = run_pareto("serve", "--config", "absent.yaml", cwd=tmp_path)

    assert result.returncode == 2
    assert "absent.yaml: file not found" in result.stderr


def test_serve_answers_within_two_seconds(
    tmp_path: Path, fake_upstream: FakeUpstream, serve: ServeFactory
) -> None:
    served = serve(write_config(tmp_path, valid_config(fake_upstream.base_url)))

    elapsed = served.wait_ready(limit=15)

    print(f"pareto serve answered GET /health/liveliness {elapsed:.3f} s after start")
    assert elapsed < START_LIMIT_SECONDS


def test_sigterm_keeps_request_rows(
    tmp_path: Path, fake_upstream: FakeUpstream, serve: ServeFactory
) -> None:
    served = serve(write_config(tmp_path, valid_config(fake_upstream.base_url)))
    served.wait_ready(limit=15)
    replies = [chat(served, f"request {number}") for number in range(3)]

    served.terminate()

    log = served.stderr()
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    assert request_rows(served.database) == [(200, "m", "chat/completions")] * 3
    assert "request rows written: 3" in log, log
    assert UPSTREAM_KEY not in log
    assert MASTER_KEY not in log


def test_sigterm_exit_code_zero(
    tmp_path: Path, fake_upstream: FakeUpstream, serve: ServeFactory
) -> None:
    served = serve(write_config(tmp_path, valid_config(fake_upstream.base_url)))
    served.wait_ready(limit=15)

    assert served.terminate() == 0


def test_serve_two_workers(
    tmp_path: Path, fake_upstream: FakeUpstream, serve: ServeFactory
) -> None:
    served = serve(write_config(tmp_path, valid_config(fake_upstream.base_url)), "--workers", "2")
    served.wait_ready(limit=30)
    # The first worker to start answers the probe; wait for the second one to finish starting.
    deadline = time.monotonic() + 30
    while served.stderr().count("gateway started") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)

    try:
        replies = [chat(served, f"worker {number}") for number in range(4)]
    except httpx.HTTPError as exc:
        pytest.fail(f"request to the two workers failed: {exc}\n{served.stderr()}")

    assert [reply.status_code for reply in replies] == [200] * 4
    assert replies[3].json()["choices"][0]["message"]["content"] == "echo: worker 3"
    assert served.terminate() == 0
    assert served.stderr().count("gateway started") == 2


def test_workers_no_access_log(
    tmp_path: Path, fake_upstream: FakeUpstream, serve: ServeFactory
) -> None:
    served = serve(write_config(tmp_path, valid_config(fake_upstream.base_url)), "--workers", "2")
    served.wait_ready(limit=30)
    chat(served, "hello")
    served.terminate()

    assert "uvicorn.access" not in served.stderr()


def test_version(tmp_path: Path) -> None:
    result = run_pareto("--version", cwd=tmp_path)

    assert result.returncode == 0
    assert re.fullmatch(r"pareto \d+\.\d+\.\d+\S*\n", result.stdout)
