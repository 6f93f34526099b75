"""A TCP relay on 127.0.0.1 that a test can cut and restore, to take a server away from a client.

`TcpRelay(target_port)` listens on a free port of 127.0.0.1 and copies bytes both ways between
each client and the target. `cut()` resets every relayed connection and every new one until
`restore()`, which is what a client sees of a database server that stopped: its connections
break and new ones fail. The server behind the relay keeps running for everyone else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

_START_TIMEOUT_SECONDS = 10.0
_CHUNK_BYTES = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset (RST) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpRelay:
    """Relay 127.0.0.1:`port` to `target_host`:`target_port` from a background thread."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self.port = 0

    def start(self) -> Self:
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready)), name="tcp-relay", daemon=True
        )
        self._thread.start()
        self.port = ready.result(timeout=_START_TIMEOUT_SECONDS)
        return self

    def stop(self) -> None:
        if self._loop is None or self._stop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=_START_TIMEOUT_SECONDS)

    def cut(self) -> None:
        """Reset every open connection, and reset new ones at once until `restore()`."""
        self._call(self._cut_all)

    def restore(self) -> None:
        """Relay new connections again."""
        self._call(self._restore)

    def _call(self, function: Callable[[], None]) -> None:
        assert self._loop is not None
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            function()
            done.set_result(None)

        self._loop.call_soon_threadsafe(run)
        done.result(timeout=_START_TIMEOUT_SECONDS)

    def _cut_all(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    def _restore(self) -> None:
        self._cut = False

    async def _serve(self, ready: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        ready.set_result(server.sockets[0].getsockname()[1])
        async with server:
            await self._stop.wait()
            self._cut_all()

    async def _relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self._cut:
            _reset(client)
            return
        try:
            target_reader, target = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(client)
            return
        self._writers.update((client, target))
        try:
            await asyncio.gather(
                self._copy(client_reader, target), self._copy(target_reader, client)
            )
        finally:
            self._writers.difference_update((client, target))
            for writer in (client, target):
                writer.close()

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK_BYTES):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
