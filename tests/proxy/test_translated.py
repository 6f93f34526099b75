"""Providers with their own API go through litellm: a local fake of Anthropic's Messages API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, deployment
from tests.threaded_server import ThreadedApp

ANTHROPIC_KEY = "sk-ant-test-key-0123456789"


class FakeAnthropic:
    """Anthropic's `POST /v1/messages`, plain and streamed, answering "hello from claude"."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self.server = ThreadedApp(app)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.received.append((dict(request.headers), body))
        if request.headers.get("x-api-key") != ANTHROPIC_KEY:
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return web.json_response({"type": "error", "error": error}, status=401)
        if body.get("stream"):
            return await self._stream(request, body)
        return web.json_response(
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "hello from claude"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 4},
            }
        )

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        message = {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 1},
        }
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        ]
        for piece in ("hello ", "from ", "claude"):
            delta = {"type": "text_delta", "text": piece}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 4},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        for name, data in events:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    with fake.server:
        yield fake


@pytest.fixture
def gateway_config(anthropic: FakeAnthropic, fake_upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "anthropic/claude-3-5-haiku-20241022",
                    "api_base": anthropic.server.base_url,
                    "api_key": ANTHROPIC_KEY,
                },
                "model_info": {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000005},
            },
            deployment("openai-side", "gpt-fake", fake_upstream.base_url),
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def test_translated_chat(
    start_gateway: GatewayFactory, gateway_config: dict[str, Any], anthropic: FakeAnthropic
) -> None:
    gateway = start_gateway(gateway_config)

    raw = gateway.client().chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], max_tokens=20
    )
    reply = raw.parse()

    assert reply.choices[0].message.content == "hello from claude"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 11
    assert reply.usage.completion_tokens == 4
    assert float(raw.headers["x-pareto-cost-usd"]) == pytest.approx(11e-6 + 20e-6)
    headers, body = anthropic.received[-1]
    assert body["model"] == "claude-3-5-haiku-20241022"
    assert (
        body["messages"][0]["content"][0]["text"] == "hi" or body["messages"][0]["content"] == "hi"
    )
    assert MASTER_KEY not in json.dumps(headers)


def test_translated_stream(start_gateway: GatewayFactory, gateway_config: dict[str, Any]) -> None:
    gateway = start_gateway(gateway_config)

    stream = gateway.client().chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert text == "hello from claude"
    assert any(chunk.usage is not None and chunk.usage.completion_tokens == 4 for chunk in chunks)


def test_translated_auth_error(
    start_gateway: GatewayFactory, gateway_config: dict[str, Any]
) -> None:
    gateway_config["model_list"][0]["litellm_params"]["api_key"] = "sk-ant-wrong-key-000000"
    gateway = start_gateway(gateway_config)

    with pytest.raises(openai.APIStatusError) as caught:
        gateway.client().chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )

    assert caught.value.status_code == 502
    assert "credentials" in caught.value.message
