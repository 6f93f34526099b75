"""Backoff for evaluation calls that end in HTTP 429 after the gateway's own retries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from evaluator.calls import CallResult, ModelCaller

logger = logging.getLogger(__name__)

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


class RateLimitRetry:
    """A `ModelCaller` that calls again after an exponential backoff when a call returns 429.

    The n-th retry waits between half and all of `backoff_seconds * 2 ** (n - 1)`, at most
    `MAX_BACKOFF_SECONDS`. After `retries` retries the last 429 result is returned as it is.
    """

    def __init__(
        self,
        caller: ModelCaller,
        retries: int = DEFAULT_RETRIES,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._caller = caller
        self._retries = retries
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def __call__(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> CallResult:
        result = await self._caller(model, messages, params)
        for retry in range(1, self._retries + 1):
            if result.status != 429:
                break
            delay = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (retry - 1))
            delay *= self._rng.uniform(0.5, 1.0)
            logger.warning(
                "evaluation call rate limited: model=%s retry=%d/%d wait_seconds=%.2f",
                model,
                retry,
                self._retries,
                delay,
            )
            await self._sleep(delay)
            result = await self._caller(model, messages, params)
        return result
