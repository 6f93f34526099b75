"""A stream ends for the client at `[DONE]`, even when the upstream's body is still open."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from aiohttp import web
from sqlmodel import Session, select

from evaluator.tables import BenchmarkCase
from proxy.tables import RequestLog
from tests.conftest import GatewayFactory
from tests.gateway import deployment
from tests.threaded_server import ThreadedApp

LINGER_SECONDS = 3.0


def chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-linger",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "linger",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def lingering_stream(request: web.Request) -> web.StreamResponse:
    """Send a whole answer and [DONE], then hold the body open before ending it."""
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk("The kettle costs $39."))
    await response.write(chunk(None, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    await response.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await asyncio.sleep(LINGER_SECONDS)
    await response.write_eof()
    return response


@pytest.fixture
def lingering_upstream() -> Iterator[ThreadedApp]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", lingering_stream)
    with ThreadedApp(app) as server:
        yield server


def test_client_closing_at_done_is_a_success(
    lingering_upstream: ThreadedApp, start_gateway: GatewayFactory
) -> None:
    config = {
        "model_list": [
            deployment("big", "linger", f"{lingering_upstream.base_url}/v1"),
            deployment("small", "linger", f"{lingering_upstream.base_url}/v1"),
        ],
        "policies": {
            "shop": {
                "reference": "big",
                "candidates": ["big", "small"],
                "sample_rate": 1.0,
                "judge": "checks",
            }
        },
    }
    gateway = start_gateway(config)
    client = gateway.client()

    started = time.monotonic()
    stream = client.chat.completions.create(
        model="shop", messages=[{"role": "user", "content": "price?"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    elapsed = time.monotonic() - started
    stream.close()

    assert text == "The kettle costs $39."
    assert elapsed < LINGER_SECONDS, "the gateway waited for the upstream's end of body"
    gateway.flush()
    gateway.flush_cases()
    assert gateway.state.engine is not None
    with Session(gateway.state.engine) as session:
        rows = session.exec(select(RequestLog)).all()
        cases = session.exec(select(BenchmarkCase)).all()
    assert [(row.status, row.error_type, row.completion_tokens) for row in rows] == [(200, None, 6)]
    assert [case.expected for case in cases] == ["The kettle costs $39."]
