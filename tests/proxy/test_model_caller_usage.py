"""Streams that report no usage: evaluation calls and client requests count their tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from aiohttp import web
from sqlmodel import Session, select

from proxy.model_caller import GatewayModelCaller
from proxy.tables import RequestLog
from proxy.tokens import encoding_counter
from tests.conftest import GatewayFactory
from tests.gateway import deployment
from tests.threaded_server import ThreadedApp

ANSWER = "The kettle costs $39 and ships in two days."
PRICES = {"input_cost_per_token": 0.000002, "output_cost_per_token": 0.00001}
MESSAGES = [{"role": "user", "content": "How much is the kettle?"}]


def event(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def stream(request: web.Request) -> web.StreamResponse:
    """Stream the answer; report usage only when the model name asks for it."""
    payload = await request.json()
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(event({"content": ANSWER}))
    await response.write(event({}, "stop"))
    if payload["model"] == "with-usage":
        usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
        await response.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode())
        await response.write(b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


@pytest.fixture
def upstream() -> Iterator[ThreadedApp]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    with ThreadedApp(app) as server:
        yield server


def test_stream_without_usage_is_counted_and_priced(
    upstream: ThreadedApp, start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"{upstream.base_url}/v1"
    gateway = start_gateway(
        {
            "model_list": [
                deployment("quiet", "gpt-4o-mini", base, model_info=PRICES),
                deployment("reported", "with-usage", base, model_info=PRICES),
            ]
        }
    )
    assert gateway.state.forwarder is not None
    caller = GatewayModelCaller(gateway.state.forwarder)

    quiet = gateway.run(caller("quiet", MESSAGES, {}))
    again = gateway.run(caller("quiet", MESSAGES, {}))
    reported = gateway.run(caller("reported", MESSAGES, {}))

    counter = encoding_counter("o200k_base")
    assert quiet.output == ANSWER
    assert quiet.prompt_tokens == counter.count_messages(MESSAGES) > 0
    assert quiet.completion_tokens == counter.count(ANSWER) > 0
    expected = quiet.prompt_tokens * 0.000002 + quiet.completion_tokens * 0.00001
    assert quiet.cost_usd == pytest.approx(expected)
    assert again.cost_usd == pytest.approx(expected)
    assert (reported.prompt_tokens, reported.completion_tokens) == (100, 50)
    warnings = [r.getMessage() for r in caplog.records if "streams no usage" in r.getMessage()]
    assert len(warnings) == 1
    assert "o200k_base" in warnings[0]


def test_client_stream_without_usage_counted(
    upstream: ThreadedApp, start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"{upstream.base_url}/v1"
    free = {"input_cost_per_token": 0, "output_cost_per_token": 0}
    gateway = start_gateway(
        {
            "model_list": [
                deployment("quiet", "gpt-4o-mini", base, model_info=PRICES),
                deployment("reported", "with-usage", base, model_info=PRICES),
                deployment("local", "llama", base, model_info=free),
            ]
        }
    )
    client = gateway.client()

    for model in ("quiet", "reported", "local"):
        chunks = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    gateway.flush()

    assert gateway.state.engine is not None
    with Session(gateway.state.engine) as session:
        rows = {row.served_model: row for row in session.exec(select(RequestLog)).all()}
    counter = encoding_counter("o200k_base")
    quiet = rows["quiet"]
    assert (quiet.prompt_tokens, quiet.completion_tokens) == (
        counter.count_messages(MESSAGES),
        counter.count(ANSWER),
    )
    assert quiet.cost_usd == pytest.approx(
        quiet.prompt_tokens * 0.000002 + quiet.completion_tokens * 0.00001
    )
    assert (rows["reported"].prompt_tokens, rows["reported"].completion_tokens) == (100, 50)
    assert (rows["local"].prompt_tokens, rows["local"].completion_tokens) == (0, 0)
    estimated = [
        r for r in caplog.records if "recorded with tokens counted by the gateway" in r.getMessage()
    ]
    assert len(estimated) == 1
