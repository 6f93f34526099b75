"""Forwarding through a real socket with the official openai client: bodies, headers, streams."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

UPSTREAM_KEY = "sk-upstream-secret-key-abcdef"
PRICES = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> RunningGateway:
    config = {
        "model_list": [
            deployment(
                "chat",
                "gpt-fake",
                fake_upstream.base_url,
                api_key=UPSTREAM_KEY,
                model_info=PRICES,
            )
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    return start_gateway(config)


def post(gateway: RunningGateway, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=20,
    )


def sse_payloads(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_chat_answer_and_headers(gateway: RunningGateway) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hello there"}]
    )
    reply = raw.parse()

    assert reply.choices[0].message.content == "echo: hello there"
    assert raw.headers["x-pareto-model"] == "chat"
    assert raw.headers["x-pareto-upstream"] == "openai/gpt-fake"
    assert len(raw.headers["x-pareto-request-id"]) >= 16
    # 2 prompt words x $1/M + 3 completion words x $2/M
    assert float(raw.headers["x-pareto-cost-usd"]) == pytest.approx(0.000008)


def test_upstream_gets_only_its_key(gateway: RunningGateway, fake_upstream: FakeUpstream) -> None:
    gateway.client().chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )

    received = fake_upstream.requests[-1]
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert MASTER_KEY not in str(dict(received.headers))
    assert MASTER_KEY.encode() not in received.body


def test_body_passes_through_unchanged(
    gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "response_format": {"type": "text"},
        "logprobs": False,
        "seed": 42,
        "temperature": 0.25,
        "x_custom_field": {"nested": [1, 2.5, "three", None, True]},
        "metadata": {"ünïcode": "✓"},
    }
    response = post(gateway, body)

    assert response.status_code == 200
    received = fake_upstream.requests[-1].json
    assert received.pop("model") == "gpt-fake"
    assert received == {key: value for key, value in body.items() if key != "model"}


def test_n_returns_three_choices(gateway: RunningGateway) -> None:
    reply = gateway.client().chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "pick"}], n=3
    )

    assert [choice.index for choice in reply.choices] == [0, 1, 2]


def test_json_mode_passes_through(gateway: RunningGateway) -> None:
    reply = gateway.client().chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_object"},
    )

    content = reply.choices[0].message.content
    assert content is not None
    assert json.loads(content) == {"echo": "echo: json please"}


def test_tool_call_non_streaming(gateway: RunningGateway) -> None:
    reply = gateway.client().chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "weather"}], tools=[WEATHER_TOOL]
    )

    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}  # type: ignore[union-attr]


def test_stream_without_usage_hides_it(gateway: RunningGateway) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "a b c"}], "stream": True}
    response = post(gateway, body)

    payloads = sse_payloads(response.text)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert payloads[-1] == "[DONE]"
    assert all('"usage"' not in payload for payload in payloads)
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == "echo: a b c"


def test_stream_asks_upstream_for_usage(
    gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "a"}], "stream": True}
    post(gateway, body)

    sent = fake_upstream.requests[-1].json
    assert sent["stream_options"] == {"include_usage": True}


def test_stream_with_usage_as_sent(gateway: RunningGateway) -> None:
    stream = gateway.client().chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "one two"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == 2
    assert last.usage.completion_tokens == 3
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_stream_tool_call_intact(gateway: RunningGateway) -> None:
    stream = gateway.client().chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "weather"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    ids, names, arguments = set(), set(), ""
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                if call.id:
                    ids.add(call.id)
                if call.function and call.function.name:
                    names.add(call.function.name)
                if call.function and call.function.arguments:
                    arguments += call.function.arguments

    assert len(ids) == 1
    assert next(iter(ids)).startswith("call_")
    assert names == {"get_weather"}
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    assert finish == "tool_calls"


def test_stream_headers_name_model(gateway: RunningGateway) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as response:
        response.read()

    assert response.headers["x-pareto-model"] == "chat"
    assert "x-pareto-cost-usd" not in response.headers


def test_embeddings_forwarded(gateway: RunningGateway) -> None:
    result = gateway.client().embeddings.create(model="chat", input=["one", "two"])

    assert len(result.data) == 2
    assert result.usage.prompt_tokens == 2


def test_path_without_v1_prefix(gateway: RunningGateway) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )

    assert response.status_code == 200


def test_default_params_fill_gaps(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    entry = deployment("chat", "gpt-fake", fake_upstream.base_url, temperature=0.1, max_tokens=7)
    gateway = start_gateway({"model_list": [entry]})
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": 0.9}
    post(gateway, body)

    sent = fake_upstream.requests[-1].json
    assert sent["temperature"] == 0.9
    assert sent["max_tokens"] == 7


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        pytest.param(None, "missing_api_key", id="missing"),
        pytest.param("Bearer wrong-key", "invalid_api_key", id="wrong"),
        pytest.param("Basic abc", "missing_api_key", id="not-bearer"),
        pytest.param(f"Bearer {MASTER_KEY}x", "invalid_api_key", id="longer"),
    ],
)
def test_auth_rejected(
    gateway: RunningGateway, fake_upstream: FakeUpstream, authorization: str | None, code: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}]},
        headers=headers,
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert fake_upstream.requests == []
