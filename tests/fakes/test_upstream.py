"""Tests of the fake upstream, driven by the openai client, httpx and aiohttp."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionContentPartParam

from tests.fakes.replies import EMBEDDING_DIMENSION, TOOL_ARGUMENTS, embedding_vector
from tests.fakes.upstream import FakeUpstream

# Loads the `fake_upstream` fixture, so this module runs without a conftest that imports it.

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {}}}


@pytest.fixture
def client(fake_upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=fake_upstream.base_url, api_key="sk-test", max_retries=0, timeout=5.0
    ) as openai_client:
        yield openai_client


@pytest.fixture
def http(fake_upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_upstream.base_url, timeout=5.0) as http_client:
        yield http_client


def chat_body(model: str = "gpt-fake", text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def data_events(body: str) -> list[str]:
    """Return the payload of every `data:` line of an event stream, in order."""
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# Success replies


def test_chat_echoes_last_user_message(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-fake",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "what is the weather"},
        ],
    )

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-fake"
    assert len(completion.choices) == 1
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "echo: what is the weather"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 15
    assert completion.usage.prompt_tokens_details is None


def test_chat_ids_are_unique(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(**chat_body())
    second = client.chat.completions.create(**chat_body())

    assert first.id != second.id


def test_chat_counts_image_parts(client: openai.OpenAI) -> None:
    image: ChatCompletionContentPartParam = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    content: list[ChatCompletionContentPartParam] = [
        {"type": "text", "text": "what is this"},
        image,
        image,
    ]

    completion = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": content}]
    )

    assert completion.choices[0].message.content == "echo: what is this [images: 2]"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3


def test_chat_prompt_tokens_at_least_one(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(**chat_body(text=""))

    assert completion.choices[0].message.content == "echo: "
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 1


def test_chat_n_returns_n_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(**chat_body(n=3))

    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert {choice.message.content for choice in completion.choices} == {"echo: hello there"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 9


def test_chat_reports_cached_tokens(fake_upstream: FakeUpstream, client: openai.OpenAI) -> None:
    fake_upstream.cached_tokens = 3

    completion = client.chat.completions.create(**chat_body())

    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 3


def test_chat_json_object_format(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        **chat_body(response_format={"type": "json_object"})
    )

    content = completion.choices[0].message.content
    assert content is not None
    assert json.loads(content) == {"echo": "echo: hello there"}


def test_chat_tool_call(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(**chat_body(tools=[WEATHER_TOOL]))

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}


def test_chat_tool_call_per_tool(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(**chat_body(tools=[WEATHER_TOOL, TIME_TOOL]))

    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]
    assert calls[0].id != calls[1].id


def test_chat_tool_choice_names_one_tool(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        **chat_body(
            tools=[WEATHER_TOOL, TIME_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    )

    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert [call.function.name for call in calls] == ["get_time"]


def test_chat_tool_choice_none_replies_text(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        **chat_body(tools=[WEATHER_TOOL], tool_choice="none")
    )

    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].message.content == "echo: hello there"


# Streaming


def test_stream_chunks_without_usage(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=chat_body(text="one two three", stream=True))

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = data_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert len({chunk["created"] for chunk in chunks}) == 1
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["model"] == "gpt-fake" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content_chunks = chunks[1:-1]
    assert len(content_chunks) == 4
    assert "".join(c["choices"][0]["delta"]["content"] for c in content_chunks) == (
        "echo: one two three"
    )
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_include_usage_adds_usage_chunk(http: httpx.Client) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})

    response = http.post("/chat/completions", json=body)

    events = data_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_stream_include_usage_false_has_no_usage(http: httpx.Client) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": False})

    response = http.post("/chat/completions", json=body)

    chunks = [json.loads(event) for event in data_events(response.text)[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert all(chunk["choices"] for chunk in chunks)


def test_stream_with_openai_client(fake_upstream: FakeUpstream, client: openai.OpenAI) -> None:
    fake_upstream.cached_tokens = 1

    stream = client.chat.completions.create(
        **chat_body(stream=True, stream_options={"include_usage": True})
    )
    with stream:
        chunks = list(stream)

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "echo: hello there"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 1


def test_stream_n_choices(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=chat_body(n=2, stream=True))

    chunks = [json.loads(event) for event in data_events(response.text)[:-1]]
    for index in (0, 1):
        choices = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        text = "".join(choice["delta"].get("content") or "" for choice in choices)
        assert text == "echo: hello there"
        assert choices[-1]["finish_reason"] == "stop"


def test_stream_tool_call_fragments(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(**chat_body(tools=[WEATHER_TOOL], stream=True))
    with stream:
        chunks = list(stream)

    deltas = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert len(deltas) > 2
    first, rest = deltas[0], deltas[1:]
    assert first.index == 0
    assert first.id is not None
    assert first.id.startswith("call_")
    assert first.type == "function"
    assert first.function is not None
    assert first.function.name == "get_weather"
    assert first.function.arguments == ""
    assert all(delta.index == 0 for delta in rest)
    assert all(delta.id is None for delta in rest)
    assert all(delta.type is None for delta in rest)
    assert all(delta.function is not None for delta in rest)
    assert all(delta.function.name is None for delta in rest if delta.function)
    arguments = "".join(delta.function.arguments or "" for delta in rest if delta.function)
    assert arguments == TOOL_ARGUMENTS
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_two_tool_calls(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        **chat_body(tools=[WEATHER_TOOL, TIME_TOOL], stream=True)
    )
    with stream:
        chunks = list(stream)

    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.function is not None
            if call.function.name:
                names[call.index] = call.function.name
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert names == {0: "get_weather", 1: "get_time"}
    assert arguments == {0: TOOL_ARGUMENTS, 1: TOOL_ARGUMENTS}


# Error faults


@pytest.mark.parametrize(
    ("model", "status", "error_type", "code"),
    [
        ("fault-429", 429, "rate_limit_error", "rate_limit_exceeded"),
        ("fault-429-no-retry-after", 429, "rate_limit_error", "rate_limit_exceeded"),
        ("fault-500", 500, "server_error", None),
        ("fault-502", 502, "server_error", None),
        ("fault-503", 503, "server_error", None),
        ("fault-400-context", 400, "invalid_request_error", "context_length_exceeded"),
    ],
)
def test_error_fault_status_and_body(
    http: httpx.Client, model: str, status: int, error_type: str, code: str | None
) -> None:
    response = http.post("/chat/completions", json=chat_body(model=model, stream=True))

    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == error_type
    assert error["code"] == code


def test_fault_429_retry_after_header(http: httpx.Client) -> None:
    with_header = http.post("/chat/completions", json=chat_body(model="fault-429"))
    without_header = http.post(
        "/chat/completions", json=chat_body(model="fault-429-no-retry-after")
    )

    assert with_header.headers["retry-after"] == "0"
    assert "retry-after" not in without_header.headers


def test_fault_400_context_names_limit(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=chat_body(model="fault-400-context"))

    assert "8192 tokens" in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "messages"


def test_error_faults_raise_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**chat_body(model="fault-429"))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**chat_body(model="fault-503"))
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**chat_body(model="fault-400-context"))
    assert raised.value.code == "context_length_exceeded"


def test_unknown_fault_model_not_found(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=chat_body(model="fault-teapot"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_invalid_json_body_rejected(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    response = http.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fake_upstream.requests[0].body == b"{not json"
    assert fake_upstream.requests[0].json is None


def test_missing_model_rejected(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json={"messages": []})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_invalid_messages_rejected(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json={"model": "gpt-fake", "messages": "hi"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


def test_unknown_path_not_found(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    response = http.post("/completions", json={"model": "gpt-fake", "prompt": "hi"})

    assert response.status_code == 404
    assert "error" in response.json()
    assert fake_upstream.requests[0].path == "/v1/completions"


# Connection faults


def test_fault_drop_closes_without_response(http: httpx.Client, client: openai.OpenAI) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/chat/completions", json=chat_body(model="fault-drop"))
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**chat_body(model="fault-drop"))


def test_fault_drop_not_marked_cancelled(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/chat/completions", json=chat_body(model="fault-drop"))

    record = fake_upstream.requests[0]
    assert record.behaviour == "drop"
    assert record.status is None
    assert record.cancelled is False


def test_fault_reset_mid_response(http: httpx.Client) -> None:
    body = chat_body(model="fault-reset-mid-response")
    received = bytearray()

    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        expected_length = int(response.headers["content-length"])
        with pytest.raises(httpx.RemoteProtocolError):
            for piece in response.iter_raw():
                received += piece

    assert 0 < len(received) < expected_length
    assert received.startswith(b'{"id": "chatcmpl-')


def test_cut_stream_sends_three_chunks(http: httpx.Client) -> None:
    body = chat_body(model="fault-cut-stream", text="a b c d e f", stream=True)
    lines: list[str] = []

    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for line in response.iter_lines():
                lines.append(line)

    events = data_events("\n".join(lines))
    assert len(events) == 3
    assert "[DONE]" not in events
    assert all(json.loads(event)["object"] == "chat.completion.chunk" for event in events)


def test_cut_stream_without_stream_resets(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/chat/completions", json=chat_body(model="fault-cut-stream"))


def test_fault_hang_marks_cancelled_on_timeout(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=chat_body(model="fault-hang"), timeout=0.3)

    assert wait_until(lambda: fake_upstream.requests[0].cancelled)
    record = fake_upstream.requests[0]
    assert record.cancelled_at is not None
    assert record.received_at >= started
    assert record.cancelled_at >= record.received_at
    assert record.status is None


def test_stop_closes_hanging_request() -> None:
    upstream = FakeUpstream().start()
    errors: list[Exception] = []

    def call_hang() -> None:
        try:
            httpx.post(
                f"{upstream.base_url}/chat/completions",
                json=chat_body(model="fault-hang"),
                timeout=5.0,
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call_hang)
    caller.start()
    assert wait_until(lambda: len(upstream.requests) == 1)
    started = time.monotonic()
    upstream.stop()
    stop_seconds = time.monotonic() - started
    caller.join(timeout=5.0)

    assert stop_seconds < 2.0
    assert not caller.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], httpx.RemoteProtocolError)
    assert upstream.requests[0].cancelled is False


def test_fault_slow_drip_sends_bytes_slowly(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.drip_seconds = 0.05
    body = chat_body(model="fault-slow-drip", stream=True)
    received = bytearray()

    with http.stream("POST", "/chat/completions", json=body) as response:
        started = time.monotonic()
        for piece in response.iter_raw():
            received += piece
            if len(received) >= 4:
                break
        elapsed = time.monotonic() - started

    assert received.startswith(b"data")
    assert elapsed >= 0.1
    assert wait_until(lambda: fake_upstream.requests[0].cancelled)


def test_fault_slow_drip_delivers_whole_body(
    client: openai.OpenAI,
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.drip_seconds = 0.001

    completion = client.chat.completions.create(**chat_body(model="fault-slow-drip"))

    assert completion.choices[0].message.content == "echo: hello there"


def test_fault_not_json(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=chat_body(model="fault-not-json"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html>oops</html>"


def test_fault_no_choices(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=chat_body(model="fault-no-choices"))

    assert response.status_code == 200
    assert "choices" not in response.json()
    assert response.json()["model"] == "fault-no-choices"


def test_fault_slow_waits_then_succeeds(
    client: openai.OpenAI,
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.slow_seconds = 0.3

    started = time.monotonic()
    completion = client.chat.completions.create(**chat_body(model="fault-slow"))

    assert time.monotonic() - started >= 0.3
    assert completion.choices[0].message.content == "echo: hello there"


def test_fault_slow_marks_cancelled_on_timeout(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=chat_body(model="fault-slow"), timeout=0.1)

    assert wait_until(lambda: fake_upstream.requests[0].cancelled)


# Latency knobs


def test_latency_delays_success(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.latency_seconds = 0.2

    started = time.monotonic()
    client.chat.completions.create(**chat_body())

    assert time.monotonic() - started >= 0.2


def test_first_chunk_delay(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.first_chunk_seconds = 0.3

    with http.stream("POST", "/chat/completions", json=chat_body(stream=True)) as response:
        headers_at = time.monotonic()
        lines = response.iter_lines()
        first_line = next(lines)
        first_chunk_at = time.monotonic()
        later_lines = list(lines)

    assert first_line.startswith("data: ")
    assert later_lines[-2:] == ["data: [DONE]", ""]
    assert first_chunk_at - headers_at >= 0.25


# Scripts


def test_script_runs_then_default_applies(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("gpt-fake", ["429", "500", "ok"])

    statuses = [http.post("/chat/completions", json=chat_body()).status_code for _ in range(4)]

    assert statuses == [429, 500, 200, 200]
    assert [r.behaviour for r in fake_upstream.requests] == ["429", "500", "ok", "ok"]


def test_script_only_affects_its_model(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("gpt-fake", ["503"])

    other = http.post("/chat/completions", json=chat_body(model="gpt-other"))
    scripted = http.post("/chat/completions", json=chat_body())

    assert other.status_code == 200
    assert scripted.status_code == 503


def test_script_ok_overrides_fault_model(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("fault-500", ["ok"])

    first = http.post("/chat/completions", json=chat_body(model="fault-500"))
    second = http.post("/chat/completions", json=chat_body(model="fault-500"))

    assert first.status_code == 200
    assert first.json()["model"] == "fault-500"
    assert second.status_code == 500


def test_script_connection_fault(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("gpt-fake", ["drop"])

    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/chat/completions", json=chat_body())
    assert http.post("/chat/completions", json=chat_body()).status_code == 200


def test_script_rejects_unknown_item(fake_upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="teapot"):
        fake_upstream.script("gpt-fake", ["ok", "teapot"])


def test_reset_clears_records_and_scripts(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    http.post("/chat/completions", json=chat_body())
    fake_upstream.script("gpt-fake", ["500"])

    fake_upstream.reset()

    assert fake_upstream.requests == []
    assert http.post("/chat/completions", json=chat_body()).status_code == 200


# Records


def test_record_keeps_headers_and_body(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    raw = b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}], "x_extra": 1}'

    started = time.monotonic()
    http.post(
        "/chat/completions",
        content=raw,
        headers={"Content-Type": "application/json", "X-Request-Id": "req-123"},
    )
    finished = time.monotonic()

    [record] = fake_upstream.requests
    assert record.method == "POST"
    assert record.path == "/v1/chat/completions"
    assert record.headers["x-request-id"] == "req-123"
    assert record.headers["X-REQUEST-ID"] == "req-123"
    assert record.body == raw
    assert record.json == json.loads(raw)
    assert record.model == "gpt-fake"
    assert started <= record.received_at <= finished
    assert record.behaviour == "ok"
    assert record.status == 200
    assert record.cancelled is False
    assert record.cancelled_at is None


def test_requests_for_filters_by_model(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    http.post("/chat/completions", json=chat_body(model="gpt-a", text="one"))
    http.post("/chat/completions", json=chat_body(model="gpt-b", text="two"))
    http.post("/chat/completions", json=chat_body(model="gpt-a", text="three"))

    texts = [r.json["messages"][0]["content"] for r in fake_upstream.requests_for("gpt-a")]

    assert texts == ["one", "three"]
    assert fake_upstream.requests_for("gpt-c") == []


def test_requests_is_a_snapshot(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    http.post("/chat/completions", json=chat_body())
    snapshot = fake_upstream.requests
    snapshot[0].status = 999
    snapshot.clear()

    http.post("/chat/completions", json=chat_body())

    assert [r.status for r in fake_upstream.requests] == [200, 200]


# API key


def test_api_key_required() -> None:
    with (
        FakeUpstream(api_key="sk-up-1") as upstream,
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-wrong", max_retries=0) as wrong,
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-up-1", max_retries=0) as right,
    ):
        with pytest.raises(openai.AuthenticationError) as raised:
            wrong.chat.completions.create(**chat_body())
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        completion = right.chat.completions.create(**chat_body())
        records = upstream.requests

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert "sk-" not in raised.value.message
    assert completion.choices[0].message.content == "echo: hello there"
    assert [r.status for r in records] == [401, 401, 200]
    assert records[0].headers["authorization"] == "Bearer sk-wrong"


def test_api_key_missing_header() -> None:
    with FakeUpstream(api_key="sk-up-1") as upstream:
        response = httpx.post(f"{upstream.base_url}/chat/completions", json=chat_body())

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


# Embeddings and models


def test_embeddings_one_vector_per_input(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-fake", input=["a", "b c", "a"])

    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(len(item.embedding) == EMBEDDING_DIMENSION for item in result.data)
    assert result.data[0].embedding == embedding_vector("a")
    assert result.data[0].embedding == result.data[2].embedding
    assert result.data[0].embedding != result.data[1].embedding
    assert result.model == "text-embedding-fake"
    assert result.usage.prompt_tokens == 4
    assert result.usage.total_tokens == 4


def test_embeddings_float_format(http: httpx.Client) -> None:
    body = {"model": "text-embedding-fake", "input": "hello world", "encoding_format": "float"}

    response = http.post("/embeddings", json=body)

    assert response.status_code == 200
    payload = response.json()
    assert payload["object"] == "list"
    assert payload["data"] == [
        {"object": "embedding", "index": 0, "embedding": embedding_vector("hello world")}
    ]
    assert payload["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_embeddings_token_id_inputs(http: httpx.Client) -> None:
    body = {"model": "text-embedding-fake", "input": [[1, 2, 3], [4]], "encoding_format": "float"}

    payload = http.post("/embeddings", json=body).json()

    assert [item["embedding"] for item in payload["data"]] == [
        embedding_vector("1 2 3"),
        embedding_vector("4"),
    ]
    assert payload["usage"]["prompt_tokens"] == 4


def test_embeddings_invalid_input_rejected(http: httpx.Client) -> None:
    response = http.post("/embeddings", json={"model": "text-embedding-fake", "input": 5})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_embeddings_honour_faults(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.script("text-embedding-fake", ["429"])
    body = {"model": "text-embedding-fake", "input": "hi"}

    limited = http.post("/embeddings", json=body)
    no_data = http.post("/embeddings", json={**body, "model": "fault-no-choices"})

    assert limited.status_code == 429
    assert no_data.status_code == 200
    assert "data" not in no_data.json()


def test_models_list(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]

    assert "gpt-fake" in ids
    assert "text-embedding-fake" in ids
    assert "fault-429" in ids
    assert "fault-hang" in ids


# Lifecycle


def test_base_url_points_at_loopback(fake_upstream: FakeUpstream) -> None:
    assert fake_upstream.base_url == f"http://127.0.0.1:{fake_upstream.port}/v1"


def test_base_url_requires_running_server() -> None:
    upstream = FakeUpstream()

    with pytest.raises(RuntimeError, match="not running"):
        _ = upstream.base_url


def test_start_twice_rejected() -> None:
    with FakeUpstream() as upstream, pytest.raises(RuntimeError, match="already running"):
        upstream.start()


def test_stop_is_idempotent() -> None:
    upstream = FakeUpstream().start()

    upstream.stop()
    upstream.stop()

    with pytest.raises(RuntimeError, match="not running"):
        _ = upstream.port


async def test_async_context_manager_with_aiohttp() -> None:
    async with FakeUpstream() as upstream, aiohttp.ClientSession() as session:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        async with session.post(f"{upstream.base_url}/chat/completions", json=body) as response:
            status = response.status
            text = await response.text()

    events = data_events(text)
    assert status == 200
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"] == []
