"""Deterministic OpenAI-format bodies for the fake upstream.

Everything here is a pure function of the request body, so a test can predict each reply:
the content echoes the last user message, and token counts are whitespace-separated words.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import time
import uuid
from collections.abc import Iterable
from typing import Any

JSONObject = dict[str, Any]

EMBEDDING_DIMENSION = 8
TOOL_ARGUMENTS = json.dumps({"city": "Paris", "unit": "celsius"})
CONTEXT_LIMIT_TOKENS = 8192

# Size of each `function.arguments` fragment in a streamed tool call. Six characters split the
# fake's arguments into several fragments, so a client has to join them.
_ARGUMENT_FRAGMENT_CHARS = 6


class InvalidRequestError(ValueError):
    """An invalid request body, which the fake rejects with a 400 `invalid_request_error`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def error_body(
    message: str, error_type: str, code: str | None, param: str | None = None
) -> JSONObject:
    """Build the `{"error": {...}}` body of an OpenAI error response."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def count_words(text: str) -> int:
    """Count whitespace-separated words, the fake's stand-in for tokens."""
    return len(text.split())


def _content_text_and_images(content: Any) -> tuple[str, int]:
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise InvalidRequestError(
            "Message content must be a string or a list of parts.", "messages"
        )

    texts: list[str] = []
    images = 0
    for part in content:
        if not isinstance(part, dict):
            raise InvalidRequestError("Each content part must be an object.", "messages")
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            images += 1
    return " ".join(texts), images


def _messages(body: JSONObject) -> list[JSONObject]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequestError("`messages` must be a list of message objects.", "messages")
    return messages


def prompt_tokens(body: JSONObject) -> int:
    """Count the words in the text of every message, at least 1."""
    words = sum(
        count_words(_content_text_and_images(message.get("content"))[0])
        for message in _messages(body)
    )
    return max(words, 1)


def echo_text(body: JSONObject) -> str:
    """Build the reply text: `echo: ` and the last user message, plus `[images: N]` if any."""
    user_messages = [m for m in _messages(body) if m.get("role") == "user"]
    if not user_messages:
        return "echo: "

    text, images = _content_text_and_images(user_messages[-1].get("content"))
    if images:
        text = f"{text} [images: {images}]"
    return f"echo: {text}"


def reply_content(body: JSONObject) -> str:
    """Build the assistant content, as a JSON object string when `response_format` requests JSON."""
    text = echo_text(body)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        return json.dumps({"echo": text})
    return text


def choice_count(body: JSONObject) -> int:
    """Return the validated `n` of a chat request (1 when absent)."""
    n = body.get("n", 1)
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidRequestError(f"`n` must be a positive integer, got {n!r}.", "n")
    return n


def called_tool_names(body: JSONObject) -> list[str]:
    """Name the function tools that the reply calls: all of them, or the one `tool_choice` names.

    An empty list means a plain content reply (no tools, or `tool_choice: "none"`).
    """
    tools = body.get("tools")
    if not isinstance(tools, list) or body.get("tool_choice") == "none":
        return []

    names = [
        str(tool["function"].get("name", ""))
        for tool in tools
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
    ]
    tool_choice = body.get("tool_choice")
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        chosen = tool_choice["function"].get("name")
        names = [name for name in names if name == chosen]
    return names


def usage(prompt: int, completion: int, cached_tokens: int | None) -> JSONObject:
    """Build a `usage` object, with `prompt_tokens_details` only when cached_tokens is set."""
    result: JSONObject = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached_tokens is not None:
        result["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return result


def new_completion_id() -> str:
    """Return a unique `chatcmpl-...` id."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _tool_calls(names: list[str]) -> list[JSONObject]:
    return [
        {
            "id": _new_call_id(),
            "type": "function",
            "function": {"name": name, "arguments": TOOL_ARGUMENTS},
        }
        for name in names
    ]


def _completion_tokens(body: JSONObject, tool_names: list[str]) -> int:
    if tool_names:
        per_choice = count_words(TOOL_ARGUMENTS) * len(tool_names)
    else:
        per_choice = count_words(reply_content(body))
    return per_choice * choice_count(body)


def completion(body: JSONObject, model: str, cached_tokens: int | None) -> JSONObject:
    """Build a non-streaming `chat.completion` object for a chat request body."""
    tool_names = called_tool_names(body)
    choices = []
    for index in range(choice_count(body)):
        message: JSONObject = {"role": "assistant", "content": None, "refusal": None}
        if tool_names:
            message["tool_calls"] = _tool_calls(tool_names)
        else:
            message["content"] = reply_content(body)
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_names else "stop",
            }
        )

    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens(body), _completion_tokens(body, tool_names), cached_tokens),
    }


def split_words(text: str) -> list[str]:
    """Split text into pieces that each start with a word, keeping every character."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def _split_fixed(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def _content_deltas(body: JSONObject) -> list[JSONObject]:
    deltas: list[JSONObject] = [{"role": "assistant", "content": ""}]
    deltas.extend({"content": piece} for piece in split_words(reply_content(body)))
    return deltas


def _tool_call_deltas(tool_names: list[str]) -> list[JSONObject]:
    # The first delta of each call carries its index, id, type, name and empty arguments.
    # Later deltas carry only the index and an argument fragment.
    deltas: list[JSONObject] = []
    for index, call in enumerate(_tool_calls(tool_names)):
        opening = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        deltas.append({"tool_calls": [opening]})
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
            for fragment in _split_fixed(TOOL_ARGUMENTS, _ARGUMENT_FRAGMENT_CHARS)
        )
    deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
    return deltas


def completion_chunks(body: JSONObject, model: str, cached_tokens: int | None) -> list[JSONObject]:
    """Build the `chat.completion.chunk` objects of a streamed reply, in sending order.

    Each choice gets a role delta, content (or tool call) deltas, and an empty delta with the
    finish_reason. With `stream_options.include_usage` every chunk has `"usage": null` and a
    last chunk with `"choices": []` carries the usage.
    """
    tool_names = called_tool_names(body)
    deltas = _tool_call_deltas(tool_names) if tool_names else _content_deltas(body)
    finish_reason = "tool_calls" if tool_names else "stop"
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True

    envelope: JSONObject = {
        "id": new_completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(choices: list[JSONObject]) -> JSONObject:
        result = {**envelope, "choices": choices}
        if include_usage:
            result["usage"] = None
        return result

    n = choice_count(body)
    chunks = [
        chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])
        for delta in deltas
        for index in range(n)
    ]
    chunks.extend(
        chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": finish_reason}])
        for index in range(n)
    )
    if include_usage:
        total = usage(prompt_tokens(body), _completion_tokens(body, tool_names), cached_tokens)
        chunks.append({**envelope, "choices": [], "usage": total})
    return chunks


def sse_event(data: JSONObject | str) -> bytes:
    """Encode one server-sent event: `data: ...` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def sse_stream(chunks: Iterable[JSONObject]) -> bytes:
    """Encode the whole event stream of a reply, ending with `data: [DONE]`."""
    return b"".join(sse_event(chunk) for chunk in chunks) + sse_event("[DONE]")


def _embedding_inputs(body: JSONObject) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("`input` must be a string or a non-empty list.", "input")
    if all(isinstance(item, int) for item in value):
        # A single tokenised input: the token ids stand in for its words.
        return [" ".join(str(token) for token in value)]

    inputs = []
    for item in value:
        if isinstance(item, str):
            inputs.append(item)
        elif isinstance(item, list) and all(isinstance(token, int) for token in item):
            inputs.append(" ".join(str(token) for token in item))
        else:
            raise InvalidRequestError(
                "Each `input` item must be a string or a list of token ids.", "input"
            )
    return inputs


def embedding_vector(text: str) -> list[float]:
    """Map text to a fixed vector of EMBEDDING_DIMENSION floats in [-1, 1).

    The values are multiples of 1/128, so they survive a float32 round trip exactly.
    """
    digest = hashlib.sha256(text.encode()).digest()
    return [byte / 128 - 1.0 for byte in digest[:EMBEDDING_DIMENSION]]


def _encode_base64(vector: list[float]) -> str:
    packed = struct.pack(f"<{len(vector)}f", *vector)
    return base64.b64encode(packed).decode("ascii")


def embeddings(body: JSONObject, model: str) -> JSONObject:
    """Build an embeddings `list` object, one vector per input, base64 when requested."""
    inputs = _embedding_inputs(body)
    as_base64 = body.get("encoding_format") == "base64"

    data = []
    for index, text in enumerate(inputs):
        vector = embedding_vector(text)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": _encode_base64(vector) if as_base64 else vector,
            }
        )

    tokens = sum(max(count_words(text), 1) for text in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
