"""Reading and checking request bodies: parsed once with orjson, checked only as far as needed.

The gateway checks what it must understand to route and record a request (`model`, `messages`,
`stream`, `input`) and passes every other field through untouched, unknown fields included.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from starlette.types import Receive, Scope

from proxy.errors import InvalidRequestError, RequestTooLargeError


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read the whole body, rejecting it with 413 as soon as it passes `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError as exc:
                raise InvalidRequestError("The Content-Length header is not a number.") from exc
            if declared > limit:
                raise _too_large(limit)
            break

    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ClientDisconnected(Exception):
    """The client went away before its request was complete."""


# A number literal of 19 or more digits may not fit orjson's 64-bit integers, which it would
# turn into floats. Such bodies are parsed again with the standard library, which keeps them.
_LONG_NUMBER = re.compile(rb'(?<![\w."])-?\d{19,}')

# orjson parses up to 1,024 levels of nesting but serializes at most 254 (orjson 3.13). A body
# between the two would reach the standard library's encoder, which recurses in C and can raise
# RecursionError deep inside the request, the case sampler or litellm. The body object itself is
# level 1.
MAX_NESTING_DEPTH = 254


def parse_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object, or raise a 400 that states what is wrong.

    Bodies nested deeper than `MAX_NESTING_DEPTH` levels are rejected too.
    """
    if not body.strip():
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"The request body is not valid JSON: {exc}. Send a UTF-8 encoded JSON object."
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, not {_json_kind(data)}."
        )
    # A body with fewer brackets than the limit cannot be nested deeper, and the count runs at
    # C speed, so ordinary requests skip the walk over the parsed object.
    if body.count(b"[") + body.count(b"{") > MAX_NESTING_DEPTH and _too_deep(data):
        raise InvalidRequestError(
            f"The request body is nested more than {MAX_NESTING_DEPTH} levels deep; "
            "flatten the arrays and objects in it.",
            code="nesting_too_deep",
        )
    if _LONG_NUMBER.search(body):
        exact: dict[str, Any] = json.loads(body)
        return exact
    return data


def model_of(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if model is None:
        raise InvalidRequestError(
            "The 'model' field is missing; name one of the models from GET /v1/models.",
            param="model",
        )
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(
            f"The 'model' field must be a non-empty string, not {_json_kind(model)}.",
            param="model",
        )
    return model


def stream_flag(payload: dict[str, Any]) -> bool:
    stream = payload.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise InvalidRequestError(
            f"The 'stream' field must be true or false, not {_json_kind(stream)}.",
            param="stream",
        )
    return stream


def check_messages(payload: dict[str, Any]) -> None:
    """Check the shape of `messages` that every chat upstream requires."""
    messages = payload.get("messages")
    if messages is None:
        raise InvalidRequestError("The 'messages' field is missing.", param="messages")
    if not isinstance(messages, list):
        raise InvalidRequestError(
            f"The 'messages' field must be an array, not {_json_kind(messages)}.",
            param="messages",
        )
    if not messages:
        raise InvalidRequestError(
            "The 'messages' array is empty; send at least one message.", param="messages"
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(
                f"'{where}' must be an object, not {_json_kind(message)}.", param=where
            )
        if not isinstance(message.get("role"), str):
            raise InvalidRequestError(f"'{where}.role' is missing.", param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, list) and not content:
            raise InvalidRequestError(
                f"'{where}.content' is an empty array; send at least one content part.",
                param=f"{where}.content",
            )


def check_input(payload: dict[str, Any]) -> None:
    """Check the `input` of an embeddings request."""
    value = payload.get("input")
    if value is None:
        raise InvalidRequestError("The 'input' field is missing.", param="input")
    if isinstance(value, str):
        return
    if isinstance(value, list) and value:
        return
    raise InvalidRequestError(
        "The 'input' field must be a string or a non-empty array.", param="input"
    )


def stream_options(payload: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Return whether the client asked for usage, and the options to send upstream."""
    options = payload.get("stream_options")
    if options is None:
        return False, {"include_usage": True}
    if not isinstance(options, dict):
        raise InvalidRequestError(
            "The 'stream_options' field must be an object.", param="stream_options"
        )
    asked = options.get("include_usage") is True
    return asked, {**options, "include_usage": True}


def _too_deep(value: dict[str, Any] | list[Any]) -> bool:
    """Tell whether `value` contains arrays or objects nested more than `MAX_NESTING_DEPTH` deep."""
    pending: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while pending:
        container, depth = pending.pop()
        if depth > MAX_NESTING_DEPTH:
            return True
        children = container.values() if isinstance(container, dict) else container
        for child in children:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return False


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"The request body is larger than the limit of {limit / 1_048_576:g} MB "
        "(general_settings.max_request_size_mb).",
        code="request_too_large",
    )


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
