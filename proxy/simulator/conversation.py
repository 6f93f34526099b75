"""Which recorded conversation a request is: the matching rule shared by both modes.

A conversation's key is its messages reduced to role and text content, with whitespace
collapsed. This is `evaluator.cases.normalize_messages`, the rule that also identifies a
benchmark case. An assistant message keeps only its role, so a multi-turn conversation matches
whichever model wrote the earlier replies. Other fields (names, tool calls, request parameters)
are not compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from evaluator.cases import first_user_text, normalize_messages

ConversationKey = str


def message_keys(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return one comparable string per message: its role and normalized content.

    Assistant messages keep their role only.
    """
    keys = []
    for message in normalize_messages(messages):
        role = message["role"]
        content = None if role == "assistant" else message["content"]
        keys.append(json.dumps([role, content], sort_keys=True, ensure_ascii=True))
    return keys


def conversation_key(messages: Sequence[Mapping[str, Any]]) -> ConversationKey:
    """Return the key under which a conversation is recorded and looked up."""
    return "\n".join(message_keys(messages))


def last_user(messages: Sequence[Mapping[str, Any]]) -> str:
    """Return the whitespace-collapsed text of the last user message ("" if there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return first_user_text([message])
    return ""


def user_turns(messages: Sequence[Mapping[str, Any]]) -> int:
    """Count the user messages."""
    return sum(1 for message in messages if message.get("role") == "user")


def common_prefix(left: Sequence[str], right: Sequence[str]) -> int:
    """Count the leading items that two key lists have in common."""
    count = 0
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        count += 1
    return count


def clip(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
