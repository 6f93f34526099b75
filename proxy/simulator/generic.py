"""The reply to a conversation that no dataset or recording holds.

It is short, polite and deterministic: it restates the first words of the last user message,
so the same request always gets the same reply, and a user's own test can send anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proxy.simulator.conversation import last_user

TOPIC_WORDS = 12


def generic_reply(messages: Sequence[Mapping[str, Any]]) -> str:
    """A polite answer that names the topic of the last user message."""
    words = last_user(messages).split()
    if not words:
        return "Thank you for your message. How can I help you today?"
    topic = " ".join(words[:TOPIC_WORDS]).rstrip(".?!,;:")
    if len(words) > TOPIC_WORDS:
        topic += "..."
    return (
        f'Thank you for your message about "{topic}". I am happy to help with that. '
        "Could you share a few more details, such as your order number, so that I can "
        "give you a complete answer?"
    )
