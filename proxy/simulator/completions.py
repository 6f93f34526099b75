"""Chat completion requests and responses in OpenAI's shape.

`parse_request` validates the fields the simulator uses and ignores the rest (temperature,
tools, ...). Responses and stream chunks follow OpenAI's ``chat.completion`` and
``chat.completion.chunk`` objects.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from evaluator.cases import CaseRowError, describe, parse_messages
from proxy.simulator.errors import bad_request, show

SYSTEM_FINGERPRINT = "fp_pareto_simulator"


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat completion request that the simulator uses."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def parse_body(body: bytes) -> dict[str, Any]:
    """Parse a request body as a JSON object, or raise a 400."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(raw, dict):
        raise bad_request(f"The request body must be a JSON object, got {describe(raw)}.")
    return raw


def parse_request(raw: dict[str, Any]) -> ChatRequest:
    """Validate a chat completion request body, raising a 400 that names the bad parameter."""
    model = raw.get("model")
    if "model" not in raw:
        raise bad_request(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        raise bad_request(
            f"Invalid 'model': expected a non-empty string, got {show(model)}.", param="model"
        )
    if "messages" not in raw:
        raise bad_request(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    try:
        messages = parse_messages(raw["messages"])
    except CaseRowError as exc:
        raise bad_request(f"Invalid 'messages': {exc}.", param="messages") from exc

    stream = _optional_bool(raw, "stream")
    include_usage = False
    options = raw.get("stream_options")
    if options is not None:
        if not stream:
            raise bad_request(
                "The 'stream_options' parameter is only allowed when 'stream' is true.",
                param="stream_options",
            )
        if not isinstance(options, dict):
            raise bad_request(
                f"Invalid 'stream_options': expected an object, got {describe(options)}.",
                param="stream_options",
            )
        include_usage = _optional_bool(options, "include_usage", "stream_options.")

    n = raw.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise bad_request(
            "Invalid 'n': the simulator returns one choice, so 'n' must be 1 or absent, "
            f"got {show(n)}.",
            param="n",
            code="unsupported_value",
        )

    max_tokens = None
    for key in ("max_completion_tokens", "max_tokens"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(
                f"Invalid '{key}': expected a whole number of at least 1, got {show(value)}.",
                param=key,
            )
        max_tokens = value if max_tokens is None else min(max_tokens, value)
    return ChatRequest(model, messages, stream, include_usage, max_tokens)


def _optional_bool(raw: dict[str, Any], key: str, prefix: str = "") -> bool:
    value = raw.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(
            f"Invalid '{prefix}{key}': expected a boolean, got {show(value)}.", param=prefix + key
        )
    return value


def new_id() -> str:
    return f"chatcmpl-sim-{uuid.uuid4().hex[:24]}"


def completion(
    completion_id: str, model: str, text: str, finish_reason: str, usage: Usage
) -> dict[str, Any]:
    """Build a ``chat.completion`` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage.to_dict(),
    }


def chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    *,
    include_usage: bool = False,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """Build a ``chat.completion.chunk`` object: a delta, or (with `usage`) the final usage chunk.

    With `include_usage`, every chunk carries ``"usage": null`` except the final one, as
    OpenAI's do.
    """
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage or usage is not None:
        body["usage"] = usage.to_dict() if usage is not None else None
    return body
