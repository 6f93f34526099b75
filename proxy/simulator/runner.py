"""Start and stop a simulator in-process: in the running event loop, or in a thread.

    server = await SimulatorServer(catalog, speed=10).start()   # port 0: a free port
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused")
    ...
    await server.stop()

    with ThreadedSimulator(catalog) as simulator:                # its own loop and thread
        openai.OpenAI(base_url=simulator.base_url, api_key="unused")

The server binds only to `host` (default 127.0.0.1). `port` is the bound port once started.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

from proxy.simulator.catalog import Catalog
from proxy.simulator.server import create_app

DEFAULT_HOST = "127.0.0.1"
SHUTDOWN_TIMEOUT_SECONDS = 1.0
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


def base_url(host: str, port: int) -> str:
    """Return the OpenAI base URL (ending in /v1) of a server at host:port."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


class SimulatorServer:
    """A simulator served by aiohttp in the current event loop."""

    def __init__(
        self, catalog: Catalog, *, host: str = DEFAULT_HOST, port: int = 0, speed: float = 1.0
    ) -> None:
        self.catalog = catalog
        self.host = host
        self.port = port
        self.speed = speed
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The URL to give OpenAI clients, such as http://127.0.0.1:8001/v1."""
        return base_url(self.host, self.port)

    async def start(self) -> Self:
        """Bind the socket and start serving. Raises OSError when the address is taken."""
        sock = _bind(self.host, self.port)
        runner = web.AppRunner(
            create_app(self.catalog, self.speed),
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
            access_log=None,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop serving; requests still running are cancelled after a short grace time."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ThreadedSimulator:
    """A simulator in a daemon thread with its own event loop, for synchronous code."""

    def __init__(
        self, catalog: Catalog, *, host: str = DEFAULT_HOST, port: int = 0, speed: float = 1.0
    ) -> None:
        self.server = SimulatorServer(catalog, host=host, port=port, speed=speed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self) -> Self:
        """Start the thread and return once the server listens (or raise why it could not)."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready)), name="pareto-simulator", daemon=True
        )
        self._thread.start()
        ready.result(timeout=START_TIMEOUT_SECONDS)
        return self

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that waits
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def stop(self) -> None:
        """Stop the server and wait for the thread to end."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
