"""The evaluator's way to call models: a streamed request through the gateway's forwarding.

Streaming lets the evaluator measure time to first token; retries, fallbacks and prices are the
same as for client traffic because the same `Forwarder` and deployment prices are used.

Some OpenAI-compatible servers (llama.cpp's among them) ignore `stream_options.include_usage`
and send no token counts in a stream. A priced model behind such a server would then look free
and win every routing decision, so its tokens are counted here with tiktoken instead
(`proxy.tokens`), and a warning names the deployment once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from evaluator.calls import CallResult
from proxy.deployments import Deployment
from proxy.errors import ProxyError
from proxy.forward import Forwarder, Trace
from proxy.sse import AnswerCollector, SseRelay
from proxy.tokens import encoding_counter, encoding_for_model
from proxy.upstream import UpstreamFailure
from proxy.usage import Usage

logger = logging.getLogger(__name__)


class GatewayModelCaller:
    """A `ModelCaller` that sends chat completions through a `Forwarder`."""

    def __init__(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder
        self._without_usage: set[str] = set()

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
        output = answer.text()
        deployment = trace.deployment
        if relay.usage is None and deployment is not None:
            usage = self._counted_usage(deployment, messages, output)
        prices = deployment.prices if deployment else None
        cost = prices.cost(*_tokens(usage)) if prices else 0.0
        return CallResult(
            model=model,
            output=output,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            ttft_ms=ttft,
        )

    def _counted_usage(
        self, deployment: Deployment, messages: list[dict[str, Any]], output: str
    ) -> Usage:
        """Count the call's tokens with tiktoken, for a stream that reported no usage."""
        counter = encoding_counter(encoding_for_model(deployment.upstream_model))
        if deployment.id not in self._without_usage:
            self._without_usage.add(deployment.id)
            logger.warning(
                "deployment %s streams no usage; evaluation counts its tokens with %s",
                deployment.id,
                counter.name,
            )
        return Usage(counter.count_messages(messages), counter.count(output))


def _tokens(usage: Usage) -> tuple[int, int, int]:
    return usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens


def _failed(model: str, started: float, message: str, status: int) -> CallResult:
    elapsed = (time.perf_counter() - started) * 1000
    return CallResult(model=model, output=None, latency_ms=elapsed, error=message, status=status)
