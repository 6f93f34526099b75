"""Server-sent events of a streamed chat completion: splitting, usage capture, usage hiding.

The gateway asks every streaming upstream for usage (`stream_options.include_usage`) so that it
can price the call. A client that did not ask for usage must not see it, so `SseRelay` then
drops the final usage chunk (the one with `"choices": []`) and the `"usage": null` field that
OpenAI adds to every other chunk. A client that asked receives every byte as the upstream sent it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_USAGE_NULL = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,?')
_DATA_PREFIX = b"data:"


class SseRelay:
    """Split upstream bytes into whole events and pick out the usage along the way."""

    def __init__(self, hide_usage: bool, keep_events: bool = False) -> None:
        self._hide_usage = hide_usage
        self._buffer = b""
        self.usage: dict[str, Any] | None = None
        self.saw_done = False
        # With keep_events, the events sent on are kept (by reference), so that the reply text can
        # be rebuilt after the stream when the upstream reported no usage.
        self.kept: list[bytes] | None = [] if keep_events else None

    def feed(self, chunk: bytes) -> bytes:
        """Take raw bytes; return the complete events to send on, possibly empty."""
        self._buffer += chunk
        out = []
        while True:
            end, separator = _find_event_end(self._buffer)
            if end < 0:
                break
            event = self._buffer[: end + separator]
            self._buffer = self._buffer[end + separator :]
            kept = self._event(event)
            if kept:
                out.append(kept)
        if self.kept is not None and out:
            self.kept.extend(out)
        return b"".join(out)

    def flush(self) -> bytes:
        """Return what is left after the upstream closed (an unterminated last event)."""
        rest, self._buffer = self._buffer, b""
        return self._event(rest) if rest.strip() else b""

    def _event(self, event: bytes) -> bytes:
        if b"[DONE]" in event and event.strip() == b"data: [DONE]":
            self.saw_done = True
            return event
        if b'"usage"' not in event:
            return event
        data = _event_data(event)
        usage = data.get("usage") if data is not None else None
        if isinstance(usage, dict):
            self.usage = usage
            if self._hide_usage and data is not None and data.get("choices") == []:
                return b""
        if self._hide_usage:
            return _USAGE_NULL.sub(b"", event)
        return event


def _find_event_end(buffer: bytes) -> tuple[int, int]:
    lf = buffer.find(b"\n\n")
    crlf = buffer.find(b"\r\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2


def _event_data(event: bytes) -> dict[str, Any] | None:
    lines = [
        line[len(_DATA_PREFIX) :].strip()
        for line in event.splitlines()
        if line.startswith(_DATA_PREFIX)
    ]
    if not lines:
        return None
    try:
        data = orjson.loads(b"\n".join(lines))
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def error_event(body: dict[str, Any]) -> bytes:
    """Format an error as the final event of a broken stream."""
    return b"data: " + orjson.dumps(body) + b"\n\n"


class AnswerCollector:
    """The first choice's text (or tool calls as JSON), rebuilt from stream events."""

    def __init__(self) -> None:
        self._content: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}

    def add(self, events: bytes) -> None:
        for line in events.splitlines():
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]" or not data:
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) == 0:
                    self._delta(choice.get("delta") or {})

    def _delta(self, delta: dict[str, Any]) -> None:
        if isinstance(delta.get("content"), str):
            self._content.append(delta["content"])
        for call in delta.get("tool_calls") or []:
            slot = self._tool_calls.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
            function = call.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""

    def text(self) -> str:
        if self._content or not self._tool_calls:
            return "".join(self._content)
        calls = [self._tool_calls[index] for index in sorted(self._tool_calls)]
        return orjson.dumps(calls).decode()
