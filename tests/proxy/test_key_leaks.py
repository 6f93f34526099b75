"""Keys never leak: traffic with known keys, then a search of every log, response and table.

`pareto serve` runs as a subprocess at log level DEBUG against `LeakyUpstream`, which copies
the key it receives into error bodies, plain-text errors, error codes, response headers and
cookies. Mixed traffic, `pareto cases import` and `pareto eval run` follow. Then the test
searches for the master key, the upstream keys and a secret extra header value in the server's
log, the commands' output, every response (bodies and headers, from every GET route the app
serves as well), the Prometheus text and a dump of every table. tests/proxy/test_admin_auth.py
checks that keys are compared in constant time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlmodel import SQLModel

from proxy.app import create_app
from proxy.config import parse_config
from proxy.db import make_engine
from proxy.demo.gateway_process import free_port
from tests.gateway import deployment
from tests.proxy.app_routes import served_routes
from tests.proxy.leaky_upstream import LeakyUpstream

PARETO = Path(sys.executable).parent / "pareto"

MASTER = "sk-master-LEAKCHECK-7f3a9c41e2"
UPSTREAM_KEY = "sk-upstream-LEAKCHECK-41d8e2b7c9"
ANTHROPIC_KEY = "sk-ant-LEAKCHECK-0c6e7f11d4"
HEADER_SECRET = "hdr-secret-LEAKCHECK-93bb51ad"
WRONG_KEY = "sk-wrong-LEAKCHECK-55aa01"
# The distinctive part of each secret too, in case something printed a key only in part.
SECRETS = {
    MASTER: "7f3a9c41e2",
    UPSTREAM_KEY: "41d8e2b7c9",
    ANTHROPIC_KEY: "0c6e7f11d4",
    HEADER_SECRET: "93bb51ad",
}
POLICY = "support"


def leak_config(api_base: str, server_root: str) -> dict[str, Any]:
    def leaky(model_name: str, upstream_model: str) -> dict[str, Any]:
        return deployment(
            model_name,
            upstream_model,
            api_base,
            api_key=UPSTREAM_KEY,
            extra_headers={"x-team-token": HEADER_SECRET},
            max_retries=0,
        )

    claude = {
        "model_name": "claude",
        "litellm_params": {
            "model": "anthropic/claude-leaky",
            "api_base": server_root,
            "api_key": ANTHROPIC_KEY,
            "max_retries": 0,
        },
    }
    return {
        "model_list": [
            leaky("m", "gpt-ok"),
            leaky("e", "embed-ok"),
            leaky("bad401", "echo-401"),
            leaky("bad500", "echo-500"),
            leaky("bad400", "echo-400"),
            leaky("hdr", "echo-header"),
            claude,
        ],
        "router_settings": {"cooldown_time": 0, "retry_backoff_seconds": 0},
        "general_settings": {"master_key": MASTER},
        "policies": {
            POLICY: {
                "reference": "m",
                "candidates": ["m", "bad401"],
                "sample_rate": 1.0,
                "judge": "checks",
                "mode": "recommend",
            }
        },
    }


class Transcript:
    """Every text the test saw: response bodies and headers, command output, logs, dumps."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, label: str, text: str) -> None:
        self.texts[f"{len(self.texts):03d} {label}"] = text

    def add_response(self, label: str, response: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.add(label, f"{response.status_code}\n{headers}\n\n{response.text}")
        return response

    def leaks(self) -> list[str]:
        """Return 'label: secret' for each text that contains a secret or its distinctive part."""
        found = []
        for label, text in self.texts.items():
            for secret, part in SECRETS.items():
                if secret in text or part in text:
                    found.append(f"{label}: {secret}")
        return found


def run_command(
    transcript: Transcript, environ: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(PARETO), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    transcript.add(f"pareto {args[0]} {args[1]} stdout", result.stdout)
    transcript.add(f"pareto {args[0]} {args[1]} stderr", result.stderr)
    return result


def wait_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pareto serve exited: {log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base_url}/health/liveliness", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"pareto serve did not start: {log.read_text(errors='replace')}")


def get_routes(config: dict[str, Any]) -> list[str]:
    """Return the path of every GET route the app serves, with its parameters filled in."""
    loaded = parse_config(yaml.safe_load(yaml.safe_dump(config)), {"DATABASE_URL": "sqlite://"})
    values = {"{model_id:path}": "m", "{name:path}": POLICY}
    paths = []
    for method, path in served_routes(create_app(loaded)):
        if method != "GET":
            continue
        for parameter, value in values.items():
            path = path.replace(parameter, value)
        assert "{" not in path, f"no test value for the parameter of {path}"
        paths.append(path)
    return paths


def send_traffic(transcript: Transcript, base_url: str, config: dict[str, Any]) -> None:
    """Send successes, failures of every kind and admin reads, recording every response."""
    auth = {"Authorization": f"Bearer {MASTER}"}
    chat_url = f"{base_url}/v1/chat/completions"

    def chat(label: str, model: str, headers: dict[str, str], **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": label}], **extra}
        response = httpx.post(chat_url, json=body, headers=headers, timeout=60)
        return transcript.add_response(f"chat {label}", response)

    assert chat("ok", "m", auth).status_code == 200
    assert chat("ok stream", "m", auth, stream=True).status_code == 200
    assert chat("policy", POLICY, auth).status_code == 200
    embeddings = httpx.post(
        f"{base_url}/v1/embeddings", json={"model": "e", "input": "x"}, headers=auth, timeout=30
    )
    assert transcript.add_response("embeddings", embeddings).status_code == 200
    assert chat("wrong key", "m", {"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
    assert chat("no key", "m", {}).status_code == 401
    assert chat("unknown model", "nope", auth).status_code == 404

    assert chat("echo 401", "bad401", auth).status_code == 502
    assert chat("echo 401 stream", "bad401", auth, stream=True).status_code == 502
    assert chat("echo 500", "bad500", auth).status_code == 502
    assert chat("echo 400", "bad400", auth).status_code == 400
    assert chat("echo header", "hdr", auth).status_code == 200
    assert chat("anthropic 401", "claude", auth).status_code == 502

    for path in get_routes(config):
        transcript.add_response(f"GET {path}", httpx.get(base_url + path, headers=auth, timeout=30))
        transcript.add_response(f"GET {path} no key", httpx.get(base_url + path, timeout=30))


def dump_tables(database_url: str) -> str:
    """Return every row of every table of the gateway, as JSON lines."""
    engine = make_engine(database_url)
    lines = []
    try:
        with engine.connect() as connection:
            for table in SQLModel.metadata.sorted_tables:
                for row in connection.execute(select(table)):
                    lines.append(json.dumps([table.name, *row], default=repr))
    finally:
        engine.dispose()
    return "\n".join(lines)


ServeFactory = Callable[[Path, str], tuple[subprocess.Popen[bytes], str, Path]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start `pareto serve --log-level debug` and make sure it is stopped after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(config_path: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str, Path]:
        port = free_port()
        log = tmp_path / "serve.log"
        environ = {**environment(), "DATABASE_URL": database_url}
        command = [str(PARETO), "serve", "--config", str(config_path), "--port", str(port)]
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [*command, "--log-level", "debug"],
                cwd=tmp_path,
                env=environ,
                stdout=stderr,
                stderr=stderr,
            )
        processes.append(process)
        return process, f"http://127.0.0.1:{port}", log

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)


def environment() -> dict[str, str]:
    environ = dict(os.environ)
    environ.pop("PARETO_CONFIG", None)
    return environ


@pytest.mark.slow
def test_no_key_in_logs_responses_or_tables(
    tmp_path: Path, database_url: str, serve: ServeFactory
) -> None:
    transcript = Transcript()
    with LeakyUpstream() as upstream:
        config = leak_config(upstream.base_url, upstream.server.base_url)
        config_path = tmp_path / "config.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        process, base_url, log = serve(config_path, database_url)
        wait_ready(process, base_url, log)

        send_traffic(transcript, base_url, config)
        environ = {**environment(), "DATABASE_URL": database_url}
        cases = tmp_path / "cases.jsonl"
        case = {
            "messages": [{"role": "user", "content": "say fine"}],
            "checks": [{"type": "contains", "value": "fine"}],
        }
        cases.write_text(json.dumps(case) + "\n", encoding="utf-8")
        options = ["--policy", POLICY, "--config", str(config_path)]
        imported = run_command(
            transcript, environ, tmp_path, "cases", "import", str(cases), *options
        )
        evaluated = run_command(
            transcript, environ, tmp_path, "eval", "run", *options, "--no-progress"
        )
        metrics = httpx.get(
            f"{base_url}/metrics", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10
        )
        transcript.add_response("metrics", metrics)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        received = list(upstream.received)

    server_log = log.read_text(encoding="utf-8", errors="replace")
    transcript.add("pareto serve log", server_log)
    dump = dump_tables(database_url)
    transcript.add("table dump", dump)
    if database_url.startswith("sqlite:///"):
        files = Path(database_url.removeprefix("sqlite:///")).parent.glob("pareto.db*")
        for path in files:
            transcript.add(f"file {path.name}", path.read_bytes().decode("latin-1"))

    # The leak had every chance: the upstream received the keys and the errors quoted them.
    assert any(h.get("Authorization") == f"Bearer {UPSTREAM_KEY}" for h in received)
    assert any(h.get("x-team-token") == HEADER_SECRET for h in received)
    assert any(h.get("x-api-key") == ANTHROPIC_KEY for h in received)
    assert imported.returncode == 0, imported.stderr
    assert evaluated.returncode == 0, evaluated.stderr
    assert "upstream attempt failed" in server_log
    assert "request_log" in dump
    assert '"eval_result"' in dump
    assert "pareto_requests" in metrics.text
    leaks = transcript.leaks()
    assert not leaks, "secrets found in:\n" + "\n".join(leaks)
    rejected = next(text for label, text in transcript.texts.items() if "chat echo 401" in label)
    assert "Incorrect API key provided: ***. Received ***." in rejected
