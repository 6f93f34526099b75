"""The HTTP API: plain and streamed completions, usage, latency, models, health and errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import tiktoken

from proxy.simulator import Catalog, SimulatorServer, ThreadedSimulator, build_catalog
from proxy.simulator.models import Reply
from proxy.tokens import encoding_counter
from tests.proxy.simulator.conftest import StartSimulator
from tests.proxy.simulator.helpers import conversation, persona, write_config, write_dataset

MESSAGES = conversation(3)["messages"]
EXPECTED = conversation(3)["expected"]


def post(simulator: ThreadedSimulator, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{simulator.base_url}/chat/completions", content=content, timeout=10, **kwargs
    )


def sse_events(response: httpx.Response) -> list[Any]:
    events = []
    for line in response.text.split("\n\n"):
        if not line.strip():
            continue
        assert line.startswith("data: ")
        data = line.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def texts_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def reference_prompt_tokens(messages: list[dict[str, str]], encoding: str = "o200k_base") -> int:
    """OpenAI's published estimate, computed here straight from tiktoken."""
    encoder = tiktoken.get_encoding(encoding)
    total = 3
    for message in messages:
        total += 3 + len(encoder.encode(message["role"])) + len(encoder.encode(message["content"]))
    return total


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


def test_plain_completion_has_openai_shape_and_tiktoken_usage(simulator: ThreadedSimulator) -> None:
    response = post(simulator, {"model": "sim-good", "messages": MESSAGES})

    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "sim-good"
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == EXPECTED
    assert choice["finish_reason"] == "stop"
    encoder = encoding_counter("o200k_base")
    assert encoder.exact
    usage = body["usage"]
    assert usage["completion_tokens"] == len(tiktoken.get_encoding("o200k_base").encode(EXPECTED))
    assert usage["prompt_tokens"] == reference_prompt_tokens(MESSAGES)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_without_include_usage(simulator: ThreadedSimulator) -> None:
    response = post(simulator, {"model": "sim-good", "messages": MESSAGES, "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == EXPECTED
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}
    # Several chunks of a few tokens each.
    assert len(chunks) > 3


def test_stream_include_usage_final_chunk(simulator: ThreadedSimulator) -> None:
    body = {
        "model": "sim-good",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = sse_events(post(simulator, body))

    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    plain = post(simulator, {"model": "sim-good", "messages": MESSAGES}).json()
    assert usage_chunk["usage"] == plain["usage"]
    assert all(chunk["usage"] is None for chunk in events[:-2])


def test_max_tokens_cuts_the_reply(simulator: ThreadedSimulator) -> None:
    body = post(simulator, {"model": "sim-good", "messages": MESSAGES, "max_tokens": 4}).json()

    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4
    assert EXPECTED.startswith(body["choices"][0]["message"]["content"])
    assert body["choices"][0]["message"]["content"] != EXPECTED


def test_unmatched_conversation_gets_a_deterministic_generic_reply(
    simulator: ThreadedSimulator,
) -> None:
    messages = [{"role": "user", "content": "Can I pay for my sofa in three instalments?"}]
    first = post(simulator, {"model": "sim-weak", "messages": messages}).json()
    second = post(simulator, {"model": "sim-weak", "messages": messages}).json()

    text = first["choices"][0]["message"]["content"]
    assert text == second["choices"][0]["message"]["content"]
    assert "pay for my sofa in three instalments" in text


def test_models_and_health(simulator: ThreadedSimulator) -> None:
    models = httpx.get(f"{simulator.base_url}/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["sim-good", "sim-weak", "gpt-4"]
    assert all(m["object"] == "model" for m in models["data"])
    one = httpx.get(f"{simulator.base_url}/models/gpt-4")
    assert one.json()["id"] == "gpt-4"
    assert_error(httpx.get(f"{simulator.base_url}/models/nope"), 404, "model_not_found")

    health = httpx.get(simulator.base_url.removesuffix("/v1") + "/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


# ---------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"\xff\xfe", None),
        (b"[1, 2]", None),
        ({"messages": MESSAGES}, "model"),
        ({"model": "", "messages": MESSAGES}, "model"),
        ({"model": 7, "messages": MESSAGES}, "model"),
        ({"model": "sim-good"}, "messages"),
        ({"model": "sim-good", "messages": []}, "messages"),
        ({"model": "sim-good", "messages": "hello"}, "messages"),
        ({"model": "sim-good", "messages": [{"content": "hi"}]}, "messages"),
        ({"model": "sim-good", "messages": [{"role": "user", "content": 3}]}, "messages"),
        ({"model": "sim-good", "messages": MESSAGES, "n": 2}, "n"),
        ({"model": "sim-good", "messages": MESSAGES, "n": 0}, "n"),
        ({"model": "sim-good", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "sim-good", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        (
            {"model": "sim-good", "messages": MESSAGES, "stream_options": {"include_usage": True}},
            "stream_options",
        ),
    ],
)
def test_bad_requests_get_400_in_the_envelope(
    simulator: ThreadedSimulator, body: Any, param: str | None
) -> None:
    error = assert_error(post(simulator, body), 400)
    assert error["param"] == param


def test_n_of_one_is_accepted(simulator: ThreadedSimulator) -> None:
    assert post(simulator, {"model": "sim-good", "messages": MESSAGES, "n": 1}).status_code == 200


def test_unknown_model_404(
    simulator: ThreadedSimulator,
) -> None:
    error = assert_error(post(simulator, {"model": "gpt-5", "messages": MESSAGES}), 404)

    assert error["code"] == "model_not_found"
    assert "'gpt-5'" in error["message"]
    for name in ("sim-good", "sim-weak", "gpt-4"):
        assert name in error["message"]


def test_unknown_url_and_method_get_the_envelope(simulator: ThreadedSimulator) -> None:
    assert_error(httpx.post(f"{simulator.base_url}/embeddings", json={}), 404, "unknown_url")
    assert_error(httpx.get(f"{simulator.base_url}/chat/completions"), 405, "method_not_allowed")


# ---------------------------------------------------------------------------
# Latency


def test_plain_reply_waits_ttft_plus_tokens_over_rate(start_simulator: StartSimulator) -> None:
    # sim-weak: ttft 200 ms, 100 tokens/s, no jitter; at speed 2: 100 ms + 5 ms per token.
    simulator = start_simulator(speed=2)
    post(simulator, {"model": "sim-weak", "messages": [{"role": "user", "content": "warm up"}]})
    tokens = len(tiktoken.get_encoding("o200k_base").encode(EXPECTED))

    started = time.monotonic()
    response = post(simulator, {"model": "sim-good", "messages": MESSAGES})
    elapsed_good = time.monotonic() - started
    started = time.monotonic()
    response = post(simulator, {"model": "sim-weak", "messages": MESSAGES})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    # sim-weak may answer with a flawed reply: its own length counts.
    expected = 0.1 + response.json()["usage"]["completion_tokens"] * 0.005
    assert expected <= elapsed < expected + 0.15
    # sim-good: ttft 400 ms, 80 tokens/s -> 200 ms + 6.25 ms per token at speed 2.
    assert 0.2 + tokens * 0.00625 <= elapsed_good < 0.2 + tokens * 0.00625 + 0.15


def test_stream_chunk_pacing(
    start_simulator: StartSimulator,
) -> None:
    simulator = start_simulator(speed=2)
    body = {"model": "sim-weak", "messages": MESSAGES, "stream": True}
    arrivals = []
    arrivals_body = []
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        url = f"{simulator.base_url}/chat/completions"
        with client.stream("POST", url, json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.monotonic() - started)
                    arrivals_body.append(json.loads(line.removeprefix("data: ")))

    # 100 ms to the first chunk, then one chunk of 3 tokens every 15 ms; the final chunk when
    # the last token is due, as late as a plain reply.
    tokens = len(tiktoken.get_encoding("o200k_base").encode(texts_of(arrivals_body)))
    assert 0.1 <= arrivals[0] < 0.1 + 0.1
    content_chunks = len(arrivals) - 1
    assert content_chunks == -(-tokens // 3)
    assert arrivals[-2] >= 0.1 + (content_chunks - 1) * 0.015
    assert 0.1 + tokens * 0.005 <= arrivals[-1] < 0.1 + tokens * 0.005 + 0.15


def test_jitter_is_seeded_per_model(tmp_path: Path) -> None:
    write_dataset(tmp_path, 3)
    config = write_config(tmp_path, [persona("a", jitter=0.2), persona("b", jitter=0.2)])

    def timings(seed: int) -> list[tuple[float, float]]:
        models = build_catalog(config, seed=seed)
        reply = Reply("x")
        return [
            (t.ttft, t.per_token)
            for t in (models.get(name).timing(reply, 1) for name in ("a", "b", "a", "a"))
        ]

    first = timings(0)
    assert first == timings(0)
    assert first != timings(1)
    assert len(set(first)) == 4
    for ttft, per_token in first:
        assert 0.32 <= ttft <= 0.48
        assert 0.8 / 80 <= per_token <= 1.2 / 80


def test_speed_factor_divides_delays(start_simulator: StartSimulator) -> None:
    simulator = start_simulator(speed=1000)
    started = time.monotonic()
    for _ in range(5):
        post(simulator, {"model": "sim-good", "messages": MESSAGES})
    assert time.monotonic() - started < 0.5


# ---------------------------------------------------------------------------
# The official OpenAI client, sync and async


def test_openai_client_plain_and_streamed(simulator: ThreadedSimulator) -> None:
    client = openai.OpenAI(base_url=simulator.base_url, api_key="unused", max_retries=0)

    reply = client.chat.completions.create(model="sim-good", messages=MESSAGES)
    assert reply.choices[0].message.content == EXPECTED
    assert reply.usage is not None and reply.usage.prompt_tokens == reference_prompt_tokens(
        MESSAGES
    )

    stream = client.chat.completions.create(
        model="sim-good",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EXPECTED
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == reply.usage.total_tokens

    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="sim-good", messages=MESSAGES, n=3)
    assert [m.id for m in client.models.list()] == ["sim-good", "sim-weak", "gpt-4"]


async def test_async_server_in_the_running_loop(catalog: Catalog) -> None:
    async with SimulatorServer(catalog, speed=1000) as server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        reply = await client.chat.completions.create(model="sim-good", messages=MESSAGES)
        assert reply.choices[0].message.content == EXPECTED
        await client.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/models")


def test_threaded_runner_reports_a_taken_port(catalog: Catalog) -> None:
    with ThreadedSimulator(catalog) as first, pytest.raises(OSError):
        ThreadedSimulator(catalog, port=first.port).start()
