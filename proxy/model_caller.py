"""The evaluator's way to call models: a streamed request through the gateway's forwarding.

Streaming lets the evaluator measure time to first token; retries, fallbacks and prices are the
same as for client traffic because the same `Forwarder` and deployment prices are used.
"""

from __future__ import annotations

import time
from typing import Any

from evaluator.calls import CallResult
from proxy.errors import ProxyError
from proxy.forward import Forwarder, Trace
from proxy.sse import AnswerCollector, SseRelay
from proxy.upstream import UpstreamFailure
from proxy.usage import Usage


class GatewayModelCaller:
    """A `ModelCaller` that sends chat completions through a `Forwarder`."""

    def __init__(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder

    async def __call__(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> CallResult:
        payload = {
            **params,
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        trace = Trace()
        relay = SseRelay(hide_usage=False)
        answer = AnswerCollector()
        ttft: float | None = None
        try:
            stream, first = await self._forwarder.open_stream(
                model, payload, "chat/completions", trace
            )
            try:
                ttft = (time.perf_counter() - started) * 1000
                answer.add(relay.feed(first))
                async for chunk in stream.chunks():
                    answer.add(relay.feed(chunk))
                answer.add(relay.flush())
            finally:
                stream.close()
        except ProxyError as error:
            return _failed(model, started, error.message, error.status)
        except UpstreamFailure as failure:
            return _failed(model, started, f"the stream broke: {failure.message}", 502)

        usage = Usage.from_dict(relay.usage)
        prices = trace.deployment.prices if trace.deployment else None
        cost = prices.cost(*_tokens(usage)) if prices else 0.0
        return CallResult(
            model=model,
            output=answer.text(),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            ttft_ms=ttft,
        )


def _tokens(usage: Usage) -> tuple[int, int, int]:
    return usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens


def _failed(model: str, started: float, message: str, status: int) -> CallResult:
    elapsed = (time.perf_counter() - started) * 1000
    return CallResult(model=model, output=None, latency_ms=elapsed, error=message, status=status)
