"""Noticing a client that disconnects while the gateway waits for an upstream."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message, Receive

# The status nginx made common for "client closed the request"; recorded, never sent.
CLIENT_CLOSED_REQUEST = 499


class DisconnectWatch:
    """Cancel the current task when the client disconnects, and remember that it did.

    The caller catches `asyncio.CancelledError`, checks `disconnected` and calls `absorb()` to
    turn the cancellation into an ordinary return.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.disconnected = False
        self._task: asyncio.Task[Any] | None = None
        self._waiter: asyncio.Future[Message] | None = None

    def __enter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._waiter = asyncio.ensure_future(self._receive())
        self._waiter.add_done_callback(self._fired)
        return self

    def __exit__(self, *_: object) -> None:
        if self._waiter is not None:
            self._waiter.remove_done_callback(self._fired)
            self._waiter.cancel()

    def absorb(self) -> None:
        """Clear the cancellation this watch caused, so the task can finish normally."""
        if self._task is not None:
            self._task.uncancel()

    def _fired(self, waiter: asyncio.Future[Message]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:
            return
        if waiter.result().get("type") == "http.disconnect" and self._task is not None:
            self.disconnected = True
            self._task.cancel()
