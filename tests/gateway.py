"""A real gateway on a real socket for tests: uvicorn in a background thread.

`RunningGateway` serves the app that `pareto serve` serves, on 127.0.0.1 and a free port, so the
official `openai` client can talk to it. `flush()` writes the recorder's queue from the server's
own event loop, so a test can read the request rows right after its requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import openai
import uvicorn
import yaml

from proxy.app import Gateway, create_app
from proxy.config import parse_config
from proxy.state import AppState

MASTER_KEY = "sk-test-master-key-0123456789"

T = TypeVar("T")


class RunningGateway:
    """The gateway app served by uvicorn in a thread."""

    def __init__(
        self,
        config: dict[str, Any],
        database_url: str,
        environ: dict[str, str] | None = None,
    ) -> None:
        env = {"DATABASE_URL": database_url, **(environ or {})}
        self.loaded = parse_config(yaml.safe_load(yaml.safe_dump(config)), env)
        self.app: Gateway = create_app(self.loaded)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[openai.OpenAI] = []
        self.port = 0

    @property
    def state(self) -> AppState:
        return self.app.state

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str = MASTER_KEY, **options: Any) -> openai.OpenAI:
        """Return an openai client for this gateway; `stop()` closes it."""
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 20.0)
        client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=api_key, **options)
        self._clients.append(client)
        return client

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            http="httptools",
            access_log=False,
            log_config=None,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            assert self._server is not None
            task = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not task.done():
                await asyncio.sleep(0.01)
            ready.set_result(None)
            await task

        self._thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        self._thread.start()
        ready.result(timeout=15)
        return self

    def flush(self) -> None:
        """Wait for requests still being answered, then write every queued request row now."""
        recorder = self.state.recorder
        assert recorder is not None and self._loop is not None
        # A client can see a stream end before the handler has queued its row.
        deadline = time.monotonic() + 10
        while self.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        asyncio.run_coroutine_threadsafe(recorder.flush(), self._loop).result(timeout=15)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def flush_cases(self) -> None:
        """Write every queued case offer now (call `flush()` first)."""
        sampler = self.state.sampler
        assert sampler is not None and self._loop is not None
        asyncio.run_coroutine_threadsafe(sampler.flush(), self._loop).result(timeout=15)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def deployment(
    model_name: str, upstream_model: str, api_base: str, **params: Any
) -> dict[str, Any]:
    """Build one `model_list` entry pointing at an OpenAI-compatible test upstream."""
    info = params.pop("model_info", None)
    entry: dict[str, Any] = {
        "model_name": model_name,
        "litellm_params": {"model": f"openai/{upstream_model}", "api_base": api_base, **params},
    }
    if info is not None:
        entry["model_info"] = info
    return entry
