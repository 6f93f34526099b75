"""Noticing a client that disconnects while the gateway waits for an upstream."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message, Receive

# The status nginx made common for "client closed the request". It is recorded, never sent.
CLIENT_CLOSED_REQUEST = 499

# The watch starts this long after the upstream call, so that fast calls (most of them) never
# pay for the extra task; a disconnect is noticed at most this much later.
WATCH_DELAY_SECONDS = 0.02


class DisconnectWatch:
    """Cancel the current task when the client disconnects, and remember that it did.

    The caller catches `asyncio.CancelledError`, checks `disconnected` and calls `absorb()` to
    turn the cancellation into an ordinary return.
    """

    def __init__(self, receive: Receive, delay: float = WATCH_DELAY_SECONDS) -> None:
        self._receive = receive
        self._delay = delay
        self.disconnected = False
        self._task: asyncio.Task[Any] | None = None
        self._waiter: asyncio.Future[Message] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)
        return self

    def __exit__(self, *_: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._waiter is not None:
            self._waiter.remove_done_callback(self._fired)
            self._waiter.cancel()

    def _start(self) -> None:
        self._timer = None
        self._waiter = asyncio.ensure_future(self._receive())
        self._waiter.add_done_callback(self._fired)

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
