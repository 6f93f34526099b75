"""`pareto serve` as a real subprocess, for tests that send it signals.

`serve` is a fixture: `serve(config_path, database_url, *options)` starts the process in the
test's tmp_path with stdout and stderr going to a log file, and the fixture stops whatever is
still running after the test.
"""

from __future__ import annotations

import os
import signal
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

PARETO = Path(sys.executable).parent / "pareto"
POLL_SECONDS = 0.02


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass
class ServeProcess:
    """A running `pareto serve` and its log file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, limit: float = 30.0) -> None:
        """Poll the liveness probe until it answers 200; fail with the log otherwise."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"pareto serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                response = httpx.get(f"{self.base_url}/health/liveliness", timeout=0.5)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            time.sleep(POLL_SECONDS)
        pytest.fail(f"pareto serve did not answer within {limit} s:\n{self.log()}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=15)


ServeFactory = Callable[..., ServeProcess]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start `pareto serve` processes, and stop those still running after the test."""
    started: list[ServeProcess] = []

    def start(config: Path, database_url: str, *options: str) -> ServeProcess:
        port = free_port()
        log_path = tmp_path / f"serve-{len(started)}.log"
        environ = {**os.environ, "DATABASE_URL": database_url}
        environ.pop("PARETO_CONFIG", None)
        command = [str(PARETO), "serve", "--config", str(config), "--port", str(port), *options]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=tmp_path, env=environ, stdout=log, stderr=subprocess.STDOUT
            )
        served = ServeProcess(process, port, log_path)
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
            served.kill()
