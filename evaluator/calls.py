"""How the evaluator calls a model: an injected function, so it runs on the gateway's forwarding.

The evaluator does not import the proxy. The proxy hands it a `ModelCaller` that sends the
request through its own forwarding code (same deployments, retries, fallbacks and pricing), and
tests hand it in-process fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CallResult:
    """The outcome of one chat completion made for an evaluation.

    `output` is the first choice's text (or its tool calls as JSON); `error` is set, and `output`
    is None, when the call failed after the gateway's retries and fallbacks.
    """

    model: str
    output: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    error: str | None = None
    status: int = 200


class ModelCaller(Protocol):
    """Send one chat completion to a configured model name."""

    async def __call__(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> CallResult: ...
