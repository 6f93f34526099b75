"""A `pareto serve` child process for the demo, with its log in a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
LOG_TAIL_LINES = 20


class GatewayStartError(RuntimeError):
    """The gateway process exited or did not become ready; the message quotes its log."""


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on right now.

    NOTE: another process can take the port before the caller's server binds it; that server
    then fails to start, and its log says so.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    """Runs `python -m proxy serve` on 127.0.0.1 and stops it with SIGTERM."""

    def __init__(self, config: Path, log_path: Path, environ: dict[str, str]) -> None:
        self.config = config
        self.log_path = log_path
        self.environ = environ
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the process and wait until its readiness check passes."""
        self.port = free_port()
        command = [
            sys.executable, "-m", "proxy", "serve", "--config", str(self.config),
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.environ},
            )
        self._wait_ready()
        return self

    def stop(self) -> int | None:
        """SIGTERM the process (it flushes its request rows) and return its exit status."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()

    def log_tail(self) -> str:
        """Return the last lines of the gateway's log."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise GatewayStartError(
                    f"the gateway exited with status {self._process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                response = httpx.get(f"{self.base_url}/health/readiness", timeout=2.0)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise GatewayStartError(
            f"the gateway was not ready within {READY_TIMEOUT_SECONDS:g} s:\n" + self.log_tail()
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
