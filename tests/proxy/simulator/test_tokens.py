"""Token counts come from tiktoken's real encodings, loaded offline from litellm's package."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from proxy import tokens
from proxy.tokens import (
    APPROXIMATION,
    TokenCounter,
    bundled_file,
    encoding_counter,
    encoding_for_model,
)

# A fresh interpreter whose sockets refuse to connect or resolve names, so any attempt by
# tiktoken to download its file fails loudly; TIKTOKEN_CACHE_DIR points at an empty folder.
OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket, sys

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network use is not allowed in this test")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from proxy.tokens import encoding_counter

    for name, text, expected in [
        ("cl100k_base", "hello world", [15339, 1917]),
        ("o200k_base", "hello world", [24912, 2375]),
    ]:
        counter = encoding_counter(name)
        assert counter.name == name, counter.name
        assert counter.exact
        assert counter.count(text) == len(expected)
        assert counter._encoding.encode(text) == expected, counter._encoding.encode(text)
    assert not attempts, attempts
    print("offline ok")
    """
)


def test_encodings_load_without_network(tmp_path: Path) -> None:
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    env.pop("DATA_GYM_CACHE_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).parents[3],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "offline ok" in result.stdout
    # Nothing was downloaded into, or copied to, the cache folder.
    assert list(tmp_path.iterdir()) == []


def test_bundled_files_exist_with_the_expected_hash() -> None:
    for name in tokens.ENCODINGS:
        path = bundled_file(name)
        assert path is not None, f"litellm no longer ships {name}"
        assert "litellm" in path.parts


def test_loading_restores_tiktoken_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/somewhere/else")
    monkeypatch.setattr(tokens, "_counters", {})
    encoding_counter("cl100k_base")
    assert os.environ["TIKTOKEN_CACHE_DIR"] == "/somewhere/else"


def test_pieces_are_one_per_token_and_join_back() -> None:
    counter = encoding_counter("o200k_base")
    for text in ["Order A-0001 arrives on Friday.", "héllo 👍🏽 日本語 — ok", "", "<|endoftext|>"]:
        pieces = counter.pieces(text)
        assert "".join(pieces) == text
        assert len(pieces) == counter.count(text)


def test_message_count_follows_openais_rule() -> None:
    counter = encoding_counter("o200k_base")
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image_url"}]},
    ]
    expected = (
        3
        + (3 + counter.count("system") + counter.count("Be brief."))
        + (3 + counter.count("user") + counter.count("Hi") + 1 + counter.count("ann"))
        + (3 + counter.count("user") + counter.count("Look") + 85)
    )
    assert counter.count_messages(messages) == expected


def test_missing_bundled_file_approximation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tokens, "_counters", {})
    monkeypatch.setattr(tokens, "bundled_file", lambda name: None)

    counter = encoding_counter("o200k_base")

    assert counter.name == APPROXIMATION
    assert not counter.exact
    assert counter.count("12345678") == 2
    assert counter.count("123456789") == 3
    assert counter.pieces("123456789") == ["1234", "5678", "9"]
    assert APPROXIMATION in caplog.text


def test_approximation_counter_directly() -> None:
    counter = TokenCounter(APPROXIMATION, None)
    assert counter.count("") == 0
    assert counter.count_messages([{"role": "user", "content": "abcd"}]) == 3 + 3 + 1 + 1


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="cl100k_base"):
        encoding_counter("p50k_base")


def test_model_names_map_to_their_encoding() -> None:
    assert encoding_for_model("gpt-4") == "cl100k_base"
    assert encoding_for_model("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_for_model("gpt-4o-mini") == "o200k_base"
    assert encoding_for_model("mixtral-8x7b") == "o200k_base"
    assert encoding_for_model(None) == "o200k_base"
