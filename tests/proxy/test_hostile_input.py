"""Oversized and odd requests over a real socket: each gets a clear 4xx, and the gateway lives on.

Deep nesting, a 50 MiB body, a 64 KiB header, 10,000 messages, a 10,000-character model name,
control characters and invalid UTF-8 in bodies and header values. Requests that a client
library refuses to build are written to a raw socket.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from proxy.body import MAX_NESTING_DEPTH
from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment
from tests.proxy.leaky_upstream import LeakyUpstream
from tests.proxy.test_inputs import (
    AUTH,
    CHAT,
    HELLO,
    JSON_HEADERS,
    MIB,
    assert_error,
    assert_healthy,
    post_bytes,
    post_json,
)

POLICY = "support"
KIB = 1024


def hostile_config(api_base: str, **general: Any) -> dict[str, Any]:
    return {
        "model_list": [deployment("m", "gpt-fake", api_base)],
        "general_settings": {"master_key": MASTER_KEY, **general},
        "policies": {
            POLICY: {"reference": "m", "candidates": ["m"], "judge": "checks", "sample_rate": 0}
        },
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    database = tmp_path_factory.mktemp("hostile") / "pareto.db"
    with RunningGateway(hostile_config(upstream.base_url), f"sqlite:///{database}") as running:
        yield running


def nested_body(depth: int, tail: bytes = b"") -> bytes:
    """Return a valid chat request whose body object is nested `depth` levels deep."""
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    return b'{"model": "m", "messages": [{"role": "user", "content": "deep"}], "x": ' + (
        inner + tail + b"}"
    )


def raw_request(gateway: RunningGateway, request: bytes) -> bytes:
    """Send `request` on a new connection and return everything the server sends back."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65_536):
            received += chunk
    return received


def raw_chat(gateway: RunningGateway, *header_lines: bytes, body: bytes = b"{}") -> bytes:
    lines = [
        b"POST /v1/chat/completions HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Connection: close",
        b"Content-Length: " + str(len(body)).encode(),
        *header_lines,
    ]
    return raw_request(gateway, b"\r\n".join(lines) + b"\r\n\r\n" + body)


def response_status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def response_json(raw: bytes) -> dict[str, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    parsed: dict[str, Any] = json.loads(body)
    return parsed


# Deep nesting


def test_hundred_thousand_brackets(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()

    error = assert_error(post_bytes(gateway, b"[" * 100_000), 400)

    assert "depth limit exceeded" in error["message"]
    assert upstream.requests == []
    assert_healthy(gateway)


@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH + 1, 600, 1_000])
def test_nesting_over_limit_rejected(
    gateway: RunningGateway, upstream: FakeUpstream, depth: int
) -> None:
    upstream.reset()

    error = assert_error(post_bytes(gateway, nested_body(depth)), 400, "nesting_too_deep")

    assert f"more than {MAX_NESTING_DEPTH} levels" in error["message"]
    assert upstream.requests == []
    assert_healthy(gateway)


def test_nesting_with_long_number_rejected(gateway: RunningGateway) -> None:
    # A 30-digit number sends the body to the standard library's parser, which recursed into
    # RecursionError at this depth before the limit existed.
    body = nested_body(990, tail=b', "n": 123456789012345678901234567890')

    assert_error(post_bytes(gateway, body), 400, "nesting_too_deep")
    assert_healthy(gateway)


def test_nesting_at_limit_forwarded(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()

    response = post_bytes(gateway, nested_body(MAX_NESTING_DEPTH))

    assert response.status_code == 200, response.text
    # The arrays of "x" and the one of "messages".
    assert upstream.requests[-1].body.count(b"[") == (MAX_NESTING_DEPTH - 1) + 1


# Size limits


def test_fifty_megabyte_body(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()
    body = b'{"model": "m", "messages": [], "x": "' + b"a" * (50 * MIB) + b'"}'

    started = time.perf_counter()
    response = post_bytes(gateway, body)
    elapsed = time.perf_counter() - started

    error = assert_error(response, 413, "request_too_large")
    assert "20 MB" in error["message"]
    assert elapsed < 10
    assert upstream.requests == []
    assert_healthy(gateway)


def test_declared_large_body_answered_unread(gateway: RunningGateway) -> None:
    # Only 2 of the 50 MiB declared arrive, and the 413 comes back anyway: the gateway does
    # not wait for, or buffer, a body that its Content-Length already puts over the limit.
    declared = raw_request(
        gateway,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
        b"Content-Length: " + str(50 * MIB).encode() + b"\r\n\r\n{}",
    )

    assert response_status(declared) == 413
    assert response_json(declared)["error"]["code"] == "request_too_large"


def test_header_of_64_kib_rejected(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()
    headers = {**JSON_HEADERS, "x-padding": "a" * (64 * KIB)}

    chat = httpx.post(
        gateway.base_url + CHAT,
        json={"model": "m", "messages": HELLO},
        headers=headers,
        timeout=20,
    )
    models = httpx.get(gateway.base_url + "/v1/models", headers=headers, timeout=20)

    for response in (chat, models):
        error = assert_error(response, 431, "headers_too_large")
        assert "32 KB" in error["message"]
        assert "max_header_size_kb" in error["message"]
    assert upstream.requests == []
    assert_healthy(gateway)


def test_header_under_limit_accepted(gateway: RunningGateway) -> None:
    headers = {**JSON_HEADERS, "x-padding": "a" * (16 * KIB)}

    response = httpx.post(
        gateway.base_url + CHAT, json={"model": "m", "messages": HELLO}, headers=headers
    )

    assert response.status_code == 200, response.text


def test_header_limit_configurable(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(hostile_config(fake_upstream.base_url, max_header_size_kb=128))
    headers = {**AUTH, "x-padding": "a" * (64 * KIB)}

    accepted = httpx.get(gateway.base_url + "/v1/models", headers=headers, timeout=20)
    padded = {**AUTH, "x-padding": "a" * (130 * KIB)}
    rejected = httpx.get(gateway.base_url + "/v1/models", headers=padded, timeout=20)

    assert accepted.status_code == 200, accepted.text
    assert "128 KB" in assert_error(rejected, 431, "headers_too_large")["message"]


# Many messages and long names


def test_ten_thousand_messages_forwarded(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()
    messages = [{"role": "user", "content": f"message {index}"} for index in range(10_000)]

    response = post_json(gateway, {"model": "m", "messages": messages})

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "echo: message 9999"
    assert len(upstream.requests[-1].json["messages"]) == 10_000


def test_long_model_name_clipped(gateway: RunningGateway) -> None:
    name = "q" * 9_990 + "0123456789"

    error = assert_error(
        post_json(gateway, {"model": name, "messages": HELLO}), 404, "model_not_found", "model"
    )
    gateway.flush()

    assert len(error["message"]) < 400
    assert "0123456789" not in error["message"]
    assert gateway.state.engine is not None
    with gateway.state.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT requested_model FROM request_log WHERE requested_model LIKE 'qqq%'")
        ).scalar_one()
    assert stored == "q" * 256


def test_long_policy_header_clipped(gateway: RunningGateway) -> None:
    name = "p" * 9_990 + "0123456789"
    headers = {**JSON_HEADERS, "x-pareto-policy": name}

    response = httpx.post(
        gateway.base_url + CHAT, json={"model": "m", "messages": HELLO}, headers=headers
    )

    error = assert_error(response, 400, "policy_not_found", "x-pareto-policy")
    assert len(error["message"]) < 400
    assert "0123456789" not in error["message"]


# Control characters and invalid UTF-8


@pytest.mark.parametrize("character", [b"\x00", b"\x01", b"\x1b", b"\x1f"])
def test_raw_control_character_in_string(gateway: RunningGateway, character: bytes) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "a' + character + b'b"}]}'

    error = assert_error(post_bytes(gateway, body), 400)

    assert "control character" in error["message"]
    assert_healthy(gateway)


def test_escaped_control_characters_forwarded(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.reset()
    content = "".join(chr(code) for code in range(32)) + "\x7f end"

    response = post_json(
        gateway, {"model": "m", "messages": [{"role": "user", "content": content}]}
    )

    assert response.status_code == 200, response.text
    assert upstream.requests[-1].json["messages"][0]["content"] == content


def stored_rows(gateway: RunningGateway, columns: str) -> list[tuple[Any, ...]]:
    gateway.flush()
    assert gateway.state.engine is not None
    with gateway.state.engine.connect() as connection:
        rows = connection.execute(text(f"SELECT {columns} FROM request_log ORDER BY id")).all()
    return [tuple(row) for row in rows]


def test_nul_in_model_recorded(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, database_url: str
) -> None:
    # PostgreSQL rejects NUL in text: this row once stopped the recorder for good.
    gateway = start_gateway(hostile_config(fake_upstream.base_url), database_url)

    rejected = post_json(gateway, {"model": "m\u0000x", "messages": HELLO})
    accepted = post_json(gateway, {"model": "m", "messages": HELLO})

    assert_error(rejected, 404, "model_not_found", "model")
    assert accepted.status_code == 200
    assert stored_rows(gateway, "requested_model, status") == [("m\ufffdx", 404), ("m", 200)]


def test_odd_upstream_error_code_recorded(start_gateway: GatewayFactory, database_url: str) -> None:
    # The upstream's error code is 330 characters with a NUL, longer than the column.
    with LeakyUpstream() as upstream:
        config = {
            "model_list": [
                deployment("odd", "echo-400", upstream.base_url, api_key="sk-odd-code-key"),
                deployment("m", "gpt-ok", upstream.base_url),
            ],
            "general_settings": {"master_key": MASTER_KEY},
        }
        gateway = start_gateway(config, database_url)

        rejected = post_json(gateway, {"model": "odd", "messages": HELLO})
        accepted = post_json(gateway, {"model": "m", "messages": HELLO})
        rows = stored_rows(gateway, "served_model, status, error_type")

    assert rejected.status_code == 400
    assert accepted.status_code == 200
    assert [row[:2] for row in rows] == [("odd", 400), ("m", 200)]
    assert rows[0][2] == "***" + "x" * 61


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "m\xff", "messages": []}', id="model"),
        pytest.param(b'{"model": "m", "messages": [{"role": "\xc0\xaf"}]}', id="overlong"),
        pytest.param(b'{"\xfe": 1}', id="key"),
    ],
)
def test_invalid_utf8_in_body(gateway: RunningGateway, body: bytes) -> None:
    error = assert_error(post_bytes(gateway, body), 400)

    assert "UTF-8" in error["message"]
    assert_healthy(gateway)


def test_invalid_utf8_in_authorization(gateway: RunningGateway) -> None:
    raw = raw_chat(gateway, b"Authorization: Bearer \xff\xfe" + MASTER_KEY.encode())

    assert response_status(raw) == 401
    assert response_json(raw)["error"]["code"] == "invalid_api_key"
    assert_healthy(gateway)


def test_invalid_utf8_in_policy_header(gateway: RunningGateway) -> None:
    body = json.dumps({"model": "m", "messages": HELLO}).encode()

    raw = raw_chat(
        gateway,
        b"Authorization: Bearer " + MASTER_KEY.encode(),
        b"x-pareto-policy: \xff\xc3(",
        body=body,
    )

    assert response_status(raw) == 400
    assert response_json(raw)["error"]["code"] == "policy_not_found"
    assert_healthy(gateway)


@pytest.mark.parametrize("value", [b"a\x00b", b"a\x01b", b"a\x7fb", b"a\rb"])
def test_control_character_in_header_value(gateway: RunningGateway, value: bytes) -> None:
    # uvicorn's parser rejects these before the gateway receives the request. The response is
    # its plain-text 400, which the gateway cannot turn into the OpenAI envelope.
    raw = raw_chat(gateway, b"Authorization: Bearer " + MASTER_KEY.encode(), b"x-note: " + value)

    assert response_status(raw) == 400
    assert raw.endswith(b"Invalid HTTP request received.")
    assert_healthy(gateway)
