"""Bad request bodies over a real socket: each gets a clear 4xx in the OpenAI envelope.

Every error test also checks that the gateway still serves a normal request afterwards.
Bodies are sent as raw bytes where the case needs JSON that a client library would not produce.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}
HELLO = [{"role": "user", "content": "hi"}]
MIB = 1_048_576


def gateway_config(api_base: str, **general: Any) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("m", "gpt-fake", api_base),
            deployment("e", "text-embedding-fake", api_base),
        ],
        "general_settings": {"master_key": MASTER_KEY, **general},
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    database = tmp_path_factory.mktemp("inputs") / "pareto.db"
    with RunningGateway(gateway_config(upstream.base_url), f"sqlite:///{database}") as running:
        yield running


def post_bytes(gateway: RunningGateway, body: bytes, path: str = CHAT) -> httpx.Response:
    return httpx.post(gateway.base_url + path, content=body, headers=JSON_HEADERS, timeout=20)


def post_json(gateway: RunningGateway, body: Any, path: str = CHAT) -> httpx.Response:
    return post_bytes(gateway, json.dumps(body).encode(), path)


def assert_error(
    response: httpx.Response,
    status: int,
    code: str | None = None,
    param: str | None = None,
    error_type: str = "invalid_request_error",
) -> dict[str, Any]:
    """Check the status and the OpenAI error envelope, and return the `error` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"] == error_type
    assert error["code"] == code
    assert error["param"] == param
    return error


def assert_healthy(gateway: RunningGateway) -> None:
    """Check that a normal chat request and the liveness probe still succeed."""
    reply = post_json(gateway, {"model": "m", "messages": [{"role": "user", "content": "ok?"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "echo: ok?"
    alive = httpx.get(gateway.base_url + "/health/liveliness", timeout=5)
    assert alive.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "m", "messages": [],}', id="trailing-comma"),
        pytest.param(b'{"model": "m", "messages": [{"role": "user"', id="truncated"),
        pytest.param(b"{'model': 'm'}", id="single-quotes"),
        pytest.param(b'{"model": "m", "temperature": NaN}', id="nan"),
        pytest.param(b'{"model": "m", "temperature": 1e999}', id="infinite-number"),
        pytest.param(b'{"model": "m" "messages": []}', id="missing-colon"),
        pytest.param(b'{"model": "m"} {"model": "m"}', id="two-objects"),
        pytest.param(b'{"model": "m", "user": "\\ud800"}', id="lone-surrogate"),
        pytest.param(b"\xef\xbb\xbf" + b'{"model": "m"}', id="byte-order-mark"),
    ],
)
def test_invalid_json_rejected(gateway: RunningGateway, body: bytes) -> None:
    error = assert_error(post_bytes(gateway, body), 400)

    assert "not valid JSON" in error["message"]
    assert_healthy(gateway)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        pytest.param(b"[]", "an array", id="array"),
        pytest.param(b'[{"model": "m"}]', "an array", id="array-of-object"),
        pytest.param(b'"hello"', "a string", id="string"),
        pytest.param(b"42", "a number", id="number"),
        pytest.param(b"null", "null", id="null"),
        pytest.param(b"true", "a boolean", id="boolean"),
    ],
)
def test_body_not_object(gateway: RunningGateway, body: bytes, kind: str) -> None:
    error = assert_error(post_bytes(gateway, body), 400)

    assert error["message"] == f"The request body must be a JSON object, not {kind}."
    assert_healthy(gateway)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}', id="ff"),
        pytest.param(b'{"model": "m", "user": "\xc3\x28"}', id="bad-continuation"),
        pytest.param(b'{"model": "m", "user": "\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b"\xff\xfe{\x00}\x00", id="utf-16"),
    ],
)
def test_invalid_utf8_rejected(gateway: RunningGateway, body: bytes) -> None:
    error = assert_error(post_bytes(gateway, body), 400)

    assert "not valid UTF-8" in error["message"]
    assert_healthy(gateway)


@pytest.mark.parametrize("body", [b"", b"  \r\n\t "], ids=["empty", "whitespace"])
def test_empty_body_rejected(gateway: RunningGateway, body: bytes) -> None:
    error = assert_error(post_bytes(gateway, body), 400)

    assert "empty" in error["message"]
    assert_healthy(gateway)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        pytest.param(None, "messages", id="null"),
        pytest.param([], "messages", id="empty"),
        pytest.param("hi", "messages", id="string"),
        pytest.param({"role": "user", "content": "hi"}, "messages", id="object"),
        pytest.param(["hi"], "messages[0]", id="message-string"),
        pytest.param([None], "messages[0]", id="message-null"),
        pytest.param([*HELLO, [HELLO]], "messages[1]", id="second-message-array"),
        pytest.param([{"content": "hi"}], "messages[0].role", id="no-role"),
        pytest.param([{"role": None, "content": "hi"}], "messages[0].role", id="role-null"),
        pytest.param([{"role": "user", "content": []}], "messages[0].content", id="content-empty"),
    ],
)
def test_bad_messages_rejected(gateway: RunningGateway, messages: Any, param: str) -> None:
    body = {"model": "m", "messages": messages}

    assert_error(post_json(gateway, body), 400, param=param)
    assert_healthy(gateway)


def test_messages_missing_rejected(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()

    error = assert_error(post_json(gateway, {"model": "m"}), 400, param="messages")

    assert error["message"] == "The 'messages' field is missing."
    assert upstream.requests == []
    assert_healthy(gateway)


def test_model_missing_rejected(gateway: RunningGateway) -> None:
    error = assert_error(post_json(gateway, {"messages": HELLO}), 400, param="model")

    assert "GET /v1/models" in error["message"]
    assert_healthy(gateway)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        pytest.param(7, "a number", id="number"),
        pytest.param(1.5, "a number", id="float"),
        pytest.param(["m"], "an array", id="list"),
        pytest.param({"name": "m"}, "an object", id="object"),
        pytest.param(True, "a boolean", id="boolean"),
        pytest.param("", "a string", id="empty"),
    ],
)
def test_model_wrong_type_rejected(gateway: RunningGateway, model: Any, kind: str) -> None:
    error = assert_error(
        post_json(gateway, {"model": model, "messages": HELLO}), 400, param="model"
    )

    assert error["message"] == f"The 'model' field must be a non-empty string, not {kind}."
    assert_healthy(gateway)


def test_model_null_rejected(gateway: RunningGateway) -> None:
    response = post_json(gateway, {"model": None, "messages": HELLO})

    assert_error(response, 400, param="model")
    assert_healthy(gateway)


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
def test_model_not_configured(gateway: RunningGateway, upstream: FakeUpstream, path: str) -> None:
    upstream.reset()
    body = {"model": "gpt-unknown", "messages": HELLO, "input": "x"}

    error = assert_error(post_json(gateway, body, path), 404, "model_not_found", "model")

    assert "'gpt-unknown'" in error["message"]
    assert upstream.requests == []
    assert_healthy(gateway)


def test_model_name_case_sensitive(gateway: RunningGateway) -> None:
    response = post_json(gateway, {"model": "M", "messages": HELLO})

    assert_error(response, 404, "model_not_found", "model")


def test_long_model_name_not_echoed(gateway: RunningGateway) -> None:
    name = "x" * 9_990 + "0123456789"

    error = assert_error(
        post_json(gateway, {"model": name, "messages": HELLO}), 404, "model_not_found", "model"
    )

    assert len(error["message"]) < 1_000
    assert name not in error["message"]
    assert "0123456789" not in error["message"]
    assert_healthy(gateway)


def test_n_three_choices(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()

    response = post_json(gateway, {"model": "m", "messages": HELLO, "n": 3})

    assert response.status_code == 200, response.text
    choices = response.json()["choices"]
    assert [choice["index"] for choice in choices] == [0, 1, 2]
    assert {choice["message"]["content"] for choice in choices} == {"echo: hi"}
    assert upstream.requests[-1].json["n"] == 3


# aiohttp warns about request bodies over 1 MiB (see test_large_body_no_warning); ignoring that
# warning here keeps this test about what the upstream receives.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
def test_large_image_forwarded(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()
    image = base64.b64encode(os.urandom(1_536_000)).decode()
    url = f"data:image/png;base64,{image}"
    content = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]

    response = post_json(
        gateway, {"model": "m", "messages": [{"role": "user", "content": content}]}
    )

    assert len(url) > 2_000_000
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "echo: describe [images: 1]"
    received = upstream.requests[-1].json["messages"][0]["content"]
    assert received[1]["image_url"]["url"] == url
    assert received == content


def test_unknown_fields_passed_through(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "héllo ✓ 😀", "x_note": {"keep": True}}],
        "x_vendor_option": {"nested": [1, 2.5, "ü", None, True, {"deep": []}]},
        "logit_bias": {"50256": -100},
        "metadata": {"team": "search"},
        "seed": 9_007_199_254_740_993,
        "top_k": 40,
    }

    response = post_json(gateway, body)

    assert response.status_code == 200, response.text
    received = upstream.requests[-1].json
    assert received["model"] == "gpt-fake"
    sent_fields = {key: value for key, value in body.items() if key != "model"}
    received_fields = {key: value for key, value in received.items() if key != "model"}
    assert received_fields == sent_fields


def test_big_integer_passed_through(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    upstream.reset()
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x_id": %d}' % (
        123456789012345678901234567890
    )

    response = post_bytes(gateway, body)

    assert response.status_code == 200, response.text
    assert b'"x_id":123456789012345678901234567890' in upstream.requests[-1].body


def test_large_body_no_warning(gateway: RunningGateway) -> None:
    text = "word " * 300_000

    response = post_json(gateway, {"model": "m", "messages": [{"role": "user", "content": text}]})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [CHAT, "/chat/completions", EMBEDDINGS])
def test_wrong_method_rejected(gateway: RunningGateway, method: str, path: str) -> None:
    response = httpx.request(method, gateway.base_url + path, headers=AUTH, timeout=5)

    assert_error(response, 405, "method_not_allowed")
    assert_healthy(gateway)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v1"),
        ("GET", "/v1/nothing-here"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/chat/completions/extra"),
        ("POST", "/v2/chat/completions"),
    ],
)
def test_unknown_route_rejected(gateway: RunningGateway, method: str, path: str) -> None:
    response = httpx.request(
        method, gateway.base_url + path, headers=JSON_HEADERS, content=b"{}", timeout=5
    )

    assert_error(response, 404, "not_found")
    assert_healthy(gateway)


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param("yes", id="string"),
        pytest.param("true", id="string-true"),
        pytest.param(1, id="one"),
        pytest.param(0, id="zero"),
        pytest.param([True], id="list"),
        pytest.param({}, id="object"),
    ],
)
def test_stream_not_boolean(gateway: RunningGateway, stream: Any) -> None:
    response = post_json(gateway, {"model": "m", "messages": HELLO, "stream": stream})

    assert_error(response, 400, param="stream")
    assert_healthy(gateway)


def test_stream_null_means_false(gateway: RunningGateway) -> None:
    response = post_json(gateway, {"model": "m", "messages": HELLO, "stream": None})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(True, id="boolean"),
        pytest.param("include_usage", id="string"),
        pytest.param(["include_usage"], id="list"),
        pytest.param(3, id="number"),
    ],
)
def test_stream_options_not_object(gateway: RunningGateway, options: Any) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True, "stream_options": options}

    assert_error(post_json(gateway, body), 400, param="stream_options")
    assert_healthy(gateway)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"model": "e"}, id="missing"),
        pytest.param({"model": "e", "input": None}, id="null"),
        pytest.param({"model": "e", "input": []}, id="empty-list"),
        pytest.param({"model": "e", "input": 5}, id="number"),
        pytest.param({"model": "e", "input": {"text": "x"}}, id="object"),
    ],
)
def test_embeddings_bad_input(gateway: RunningGateway, body: dict[str, Any]) -> None:
    assert_error(post_json(gateway, body, EMBEDDINGS), 400, param="input")
    assert_healthy(gateway)


def test_embeddings_without_prefix(gateway: RunningGateway) -> None:
    response = post_json(gateway, {"model": "e"}, "/embeddings")

    assert_error(response, 400, param="input")


@pytest.fixture
def small_limit_gateway(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> RunningGateway:
    return start_gateway(gateway_config(fake_upstream.base_url, max_request_size_mb=1))


def padded_chat_body(size: int) -> bytes:
    """Return a valid chat request body of exactly `size` bytes, padded with JSON whitespace.

    The gateway re-serializes the body compactly, so the upstream receives a small request.
    """
    body = b'{"model": "m", "messages": [{"role": "user", "content": "padded"}]'
    return body + b" " * (size - len(body) - 1) + b"}"


def test_body_over_limit(small_limit_gateway: RunningGateway, fake_upstream: FakeUpstream) -> None:
    response = post_bytes(small_limit_gateway, padded_chat_body(2 * MIB))

    error = assert_error(response, 413, "request_too_large")
    assert "1 MB" in error["message"]
    assert "max_request_size_mb" in error["message"]
    assert fake_upstream.requests == []
    assert_healthy(small_limit_gateway)


def test_chunked_body_over_limit(
    small_limit_gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    body = padded_chat_body(2 * MIB)
    chunks = (body[offset : offset + 65_536] for offset in range(0, len(body), 65_536))

    response = httpx.post(
        small_limit_gateway.base_url + CHAT, content=chunks, headers=JSON_HEADERS, timeout=20
    )

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    error = assert_error(response, 413, "request_too_large")
    assert "1 MB" in error["message"]
    assert fake_upstream.requests == []
    assert_healthy(small_limit_gateway)


def test_body_at_limit_accepted(small_limit_gateway: RunningGateway) -> None:
    body = padded_chat_body(MIB)

    response = post_bytes(small_limit_gateway, body)

    assert len(body) == MIB
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "echo: padded"


def test_body_one_byte_over(small_limit_gateway: RunningGateway) -> None:
    response = post_bytes(small_limit_gateway, padded_chat_body(MIB + 1))

    assert_error(response, 413, "request_too_large")


def test_rejected_requests_recorded(gateway: RunningGateway) -> None:
    post_json(gateway, {"model": "nope-recorded", "messages": HELLO})
    gateway.flush()

    assert gateway.state.engine is not None
    with gateway.state.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT status, error_type, served_model FROM request_log "
                "WHERE requested_model = 'nope-recorded'"
            )
        ).all()
    assert [tuple(row) for row in rows] == [(404, "model_not_found", None)]
