"""Token counting with tiktoken, offline, from the encoding files that litellm ships.

tiktoken downloads an encoding's BPE file on first use and keeps it in the folder that
``TIKTOKEN_CACHE_DIR`` names, under the SHA-1 of the download URL. litellm bundles the files of
``cl100k_base`` and ``o200k_base`` in ``litellm/litellm_core_utils/tokenizers/`` under those
names, and points ``TIKTOKEN_CACHE_DIR`` there when it is imported. `encoding_counter` does the
same for the length of one `tiktoken.get_encoding` call, after checking that the bundled file
exists and has the SHA-256 that tiktoken expects, so tiktoken reads it and never reaches for
the network. litellm itself is not imported: only its package folder is located.

When the bundled file is missing or damaged, `encoding_counter` returns the counter named
`APPROXIMATION` ("approx-4-chars"): one token per 4 characters, rounded up, and logs a warning
once. `pareto simulate` prints which counter each model uses. Evaluation calls whose stream
reports no usage are counted with these counters too (`proxy.model_caller`).

Prompt tokens follow OpenAI's published estimate for chat models: 3 tokens per message, plus
the tokens of its role, text content and name (1 more for a name), plus 3 for the reply's
priming. Image parts count 85 tokens each (the low-detail price); tool calls count as their
JSON text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken

_log = logging.getLogger(__name__)

DEFAULT_ENCODING = "o200k_base"
APPROXIMATION = "approx-4-chars"
CHARS_PER_APPROXIMATE_TOKEN = 4

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
TOKENS_PER_IMAGE = 85


@dataclass(frozen=True)
class BundledFile:
    """The name of one encoding's file in tiktoken's cache, and its expected SHA-256."""

    cache_key: str
    sha256: str


# cache_key is the SHA-1 of https://openaipublic.blob.core.windows.net/encodings/<name>.tiktoken;
# sha256 is the expected_hash in tiktoken_ext/openai_public.py.
BUNDLED_FILES: dict[str, BundledFile] = {
    "cl100k_base": BundledFile(
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": BundledFile(
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
ENCODINGS = tuple(BUNDLED_FILES)

_lock = threading.Lock()
_counters: dict[str, TokenCounter] = {}


class TokenCounter:
    """Counts tokens of text and chat messages, and cuts text into token-sized pieces.

    `name` is the tiktoken encoding's name, or `APPROXIMATION` without one.
    """

    def __init__(self, name: str, encoding: tiktoken.Encoding | None) -> None:
        self.name = name
        self._encoding = encoding

    @property
    def exact(self) -> bool:
        """Whether counts come from a tiktoken encoding rather than the approximation."""
        return self._encoding is not None

    def count(self, text: str) -> int:
        """Count the tokens of `text`. Special-token strings count as ordinary text."""
        if self._encoding is None:
            return math.ceil(len(text) / CHARS_PER_APPROXIMATE_TOKEN)
        return len(self._encoding.encode(text, disallowed_special=()))

    def pieces(self, text: str) -> list[str]:
        """`text` cut at token boundaries, one piece per token, joined back it is `text`.

        A character that spans several tokens (some emoji and CJK characters) stays whole in
        the piece of its last token, and the tokens before it give empty pieces, so the list
        always has one item per counted token.
        """
        if self._encoding is None:
            step = CHARS_PER_APPROXIMATE_TOKEN
            return [text[start : start + step] for start in range(0, len(text), step)]
        pieces: list[str] = []
        pending = b""
        for token in self._encoding.encode(text, disallowed_special=()):
            pending += self._encoding.decode_single_token_bytes(token)
            try:
                piece = pending.decode("utf-8")
            except UnicodeDecodeError:
                pieces.append("")
                continue
            pieces.append(piece)
            pending = b""
        if pending:
            pieces[-1] += pending.decode("utf-8", errors="replace")
        return pieces

    def count_messages(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Prompt tokens of a chat request (see the module docstring for the rule)."""
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE
            role = message.get("role")
            if isinstance(role, str):
                total += self.count(role)
            total += self._count_content(message.get("content"))
            name = message.get("name")
            if isinstance(name, str):
                total += TOKENS_PER_NAME + self.count(name)
            tool_calls = message.get("tool_calls")
            if tool_calls:
                total += self.count(json.dumps(tool_calls, separators=(",", ":")))
        return total

    def _count_content(self, content: object) -> int:
        if isinstance(content, str):
            return self.count(content)
        if not isinstance(content, list):
            return 0
        total = 0
        for part in content:
            if not isinstance(part, Mapping):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                total += self.count(part["text"])
            elif part.get("type") == "image_url":
                total += TOKENS_PER_IMAGE
        return total


def bundled_tokenizer_dir() -> Path | None:
    """litellm's folder of bundled tiktoken files, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def bundled_file(name: str) -> Path | None:
    """Return the bundled file of encoding `name` if it exists and has the expected SHA-256."""
    expected = BUNDLED_FILES.get(name)
    folder = bundled_tokenizer_dir()
    if expected is None or folder is None:
        return None
    path = folder / expected.cache_key
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return path if hashlib.sha256(data).hexdigest() == expected.sha256 else None


def encoding_counter(name: str = DEFAULT_ENCODING) -> TokenCounter:
    """Return the counter of tiktoken encoding `name` (one of `ENCODINGS`), loaded once per process.

    Falls back to the `APPROXIMATION` counter, with a warning, when the bundled file is not
    usable. Raises ValueError for a name that is not in `ENCODINGS`.
    """
    if name not in BUNDLED_FILES:
        raise ValueError(f"unknown encoding {name!r}; expected one of {', '.join(ENCODINGS)}")
    with _lock:
        counter = _counters.get(name)
        if counter is None:
            counter = _load(name)
            _counters[name] = counter
        return counter


def _load(name: str) -> TokenCounter:
    path = bundled_file(name)
    if path is None:
        _log.warning(
            "No usable bundled tiktoken file for %s in litellm's package; counting tokens "
            "as %s (1 token per %d characters).",
            name,
            APPROXIMATION,
            CHARS_PER_APPROXIMATE_TOKEN,
        )
        return TokenCounter(APPROXIMATION, None)
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(path.parent)
    try:
        return TokenCounter(name, tiktoken.get_encoding(name))
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def encoding_for_model(model: str | None) -> str:
    """Return the encoding tiktoken maps `model` to if it is in `ENCODINGS`, else the default."""
    if model:
        try:
            name = tiktoken.encoding_name_for_model(model)
        except KeyError:
            return DEFAULT_ENCODING
        if name in BUNDLED_FILES:
            return name
    return DEFAULT_ENCODING
