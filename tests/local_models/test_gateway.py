"""The gateway in front of two real llama.cpp servers (llama-cpp-python 0.3.36).

Every request goes through the gateway with the official `openai` client, and the request row
is then read from the database. What these servers do differently from OpenAI, as observed:

- A streamed response never carries usage, even when `stream_options.include_usage`
  requests it, so a streamed request is recorded with 0 tokens.
- Embeddings come as one vector per input token (there is no pooling for these models).
- An oversized prompt gets an OpenAI-style 400 `context_length_exceeded` when not streamed.
  Streamed, the server sends a 200 and then closes the connection without a byte of body.
- A request that arrives during a stream cuts that stream short unless the server runs with
  `--interrupt_requests false`, as these tests' servers do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.gateway import MASTER_KEY, RunningGateway
from tests.local_models.configs import EMBEDDINGS, GEMMA, SMOLLM2, offline_config
from tests.local_models.conftest import LocalServers
from tests.local_models.servers import TEST_CONTEXT_TOKENS

pytestmark = pytest.mark.local_models

CHAT_MODELS = [SMOLLM2, GEMMA]
CLIENT_TIMEOUT_SECONDS = 120.0
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Answer with the result only. What is 2 + 3?"}
]
# Long enough that a second request arrives while the first is still streaming.
STORY: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write a long story about a cat."}
]
# About 1,200 tokens for either model: more than the servers' 512-token context window.
OVERSIZED: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Count these words. " + "word " * 1200}
]
SMOLLM2_EMBEDDING_SIZE = 576
# Not called by these tests: the reference model has no server here.
UNUSED_BASE = "http://127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def gateway(
    local_servers: LocalServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    database = tmp_path_factory.mktemp("gateway") / "pareto.db"
    config = offline_config(
        smollm2_base=local_servers.smollm2.base_url,
        gemma_base=local_servers.gemma.base_url,
        reference_base=UNUSED_BASE,
        database_url=f"sqlite:///{database}",
        master_key=MASTER_KEY,
    )
    with RunningGateway(config, config["general_settings"]["database_url"]) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> openai.OpenAI:
    return gateway.client(timeout=CLIENT_TIMEOUT_SECONDS)


def request_row(gateway: RunningGateway, request_id: str) -> dict[str, Any]:
    gateway.flush()
    assert gateway.state.engine is not None
    with gateway.state.engine.connect() as connection:
        result = connection.exec_driver_sql(
            "SELECT * FROM request_log WHERE request_id = ?", (request_id,)
        )
        rows = [dict(row._mapping) for row in result]
    assert len(rows) == 1, f"expected one row for request {request_id}, found {len(rows)}"
    return rows[0]


def server_of(local_servers: LocalServers, model: str) -> str:
    return local_servers.smollm2.base_url if model == SMOLLM2 else local_servers.gemma.base_url


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_records_server_usage(
    gateway: RunningGateway, client: openai.OpenAI, model: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=QUESTION, max_tokens=16
    )
    completion = raw.parse()
    row = request_row(gateway, raw.headers["x-pareto-request-id"])

    assert raw.headers["x-pareto-model"] == model
    assert completion.choices[0].message.content is not None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 16
    assert row["status"] == 200
    assert row["upstream"] == f"{model}#{CHAT_MODELS.index(model)}"
    assert row["prompt_tokens"] == completion.usage.prompt_tokens
    assert row["completion_tokens"] == completion.usage.completion_tokens
    assert row["cost_usd"] == 0
    assert row["latency_ms"] > 0
    assert row["ttft_ms"] is None
    assert not row["stream"]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_stream_records_ttft_without_usage(
    gateway: RunningGateway, client: openai.OpenAI, model: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=QUESTION,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    row = request_row(gateway, raw.headers["x-pareto-request-id"])

    deltas = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    reported = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert "".join(deltas), "the stream carried no text"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert reported == [], (
        "llama-cpp-python now reports usage in streams: record it, and update this test and "
        "docs/local-models.md"
    )
    assert row["status"] == 200
    assert row["stream"]
    assert row["prompt_tokens"] == 0
    assert row["completion_tokens"] == 0
    assert row["ttft_ms"] is not None
    assert 0 < row["ttft_ms"] <= row["latency_ms"]


def test_concurrent_streams_both_complete(client: openai.OpenAI) -> None:
    first_text_arrived = threading.Event()
    finish_reasons: dict[str, str | None] = {}
    texts: dict[str, str] = {}

    def stream(name: str) -> None:
        parts = []
        finish = None
        for chunk in client.chat.completions.create(
            model=SMOLLM2, messages=STORY, max_tokens=48, stream=True
        ):
            if not chunk.choices:
                continue
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
            if "".join(parts):
                first_text_arrived.set()
        texts[name], finish_reasons[name] = "".join(parts), finish

    first = threading.Thread(target=stream, args=("first",))
    first.start()
    assert first_text_arrived.wait(CLIENT_TIMEOUT_SECONDS), "the first stream sent no text"
    stream("second")
    first.join(CLIENT_TIMEOUT_SECONDS)

    assert set(finish_reasons) == {"first", "second"}
    assert finish_reasons["first"] in ("stop", "length"), texts
    assert finish_reasons["second"] in ("stop", "length"), texts
    assert texts["first"]
    assert texts["second"]


def test_embeddings_one_vector_per_token(gateway: RunningGateway, client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model=EMBEDDINGS, input="hello world")
    response = raw.parse()
    row = request_row(gateway, raw.headers["x-pareto-request-id"])

    vectors: Any = response.data[0].embedding
    assert len(response.data) == 1
    assert response.usage.prompt_tokens > 0
    assert len(vectors) == response.usage.prompt_tokens
    assert all(len(vector) == SMOLLM2_EMBEDDING_SIZE for vector in vectors)
    assert row["status"] == 200
    assert row["endpoint"] == "embeddings"
    assert row["prompt_tokens"] == response.usage.prompt_tokens
    assert row["cost_usd"] == 0


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_oversized_prompt_is_clear_400(
    gateway: RunningGateway, client: openai.OpenAI, local_servers: LocalServers, model: str
) -> None:
    direct = httpx.post(
        f"{server_of(local_servers, model)}/chat/completions",
        json={"model": model, "messages": OVERSIZED, "max_tokens": 16},
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    upstream_error = direct.json()["error"]

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=OVERSIZED, max_tokens=16)
    error = caught.value
    row = request_row(gateway, error.response.headers["x-pareto-request-id"])

    assert direct.status_code == 400
    assert f"maximum context length is {TEST_CONTEXT_TOKENS} tokens" in upstream_error["message"]
    assert error.status_code == 400
    assert error.body == {
        "message": upstream_error["message"],
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    assert row["status"] == 400
    assert row["error_type"] == "context_length_exceeded"


def test_oversized_stream_is_upstream_error(
    gateway: RunningGateway, client: openai.OpenAI, local_servers: LocalServers
) -> None:
    direct = httpx.post(
        f"{local_servers.smollm2.base_url}/chat/completions",
        json={"model": SMOLLM2, "messages": OVERSIZED, "max_tokens": 16, "stream": True},
        timeout=CLIENT_TIMEOUT_SECONDS,
    )

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=SMOLLM2,
            messages=OVERSIZED,
            max_tokens=16,
            stream=True,
        )
    error = caught.value
    row = request_row(gateway, error.response.headers["x-pareto-request-id"])

    assert direct.status_code == 200
    assert direct.content == b""
    assert error.status_code == 502
    assert isinstance(error.body, dict)
    assert error.body["code"] == "upstream_invalid_response"
    assert "closed the stream without data" in error.body["message"]
    assert row["status"] == 502
    assert row["stream"]
