"""Upstream faults beyond tests/proxy/test_faults.py: what the client sees and what the row stores.

Each test injects one fault at a local upstream and checks both the response (status, error
code, stream events) and the request row stored for it.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

FAST_RETRIES = {"retry_backoff_seconds": 0.01, "num_retries": 2, "allowed_fails": 100}


def config(*entries: dict[str, Any], **router: Any) -> dict[str, Any]:
    return {
        "model_list": list(entries),
        "router_settings": {**FAST_RETRIES, **router},
        "general_settings": {"master_key": MASTER_KEY},
    }


def chat(gateway: RunningGateway, model: str = "m", **body: Any) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=20,
    )


def last_row(gateway: RunningGateway) -> dict[str, Any]:
    gateway.flush()
    assert gateway.state.engine is not None
    with gateway.state.engine.connect() as connection:
        result = connection.exec_driver_sql("SELECT * FROM request_log ORDER BY id DESC LIMIT 1")
        return dict(result.one()._mapping)


def stream_events(response: httpx.Response) -> list[str]:
    return [
        line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")
    ]


def closed_port_url() -> str:
    """Return a base URL on 127.0.0.1 where nothing listens, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# ---------------------------------------------------------------------------
# 429 with and without retry-after
# ---------------------------------------------------------------------------


def test_retry_after_is_honoured(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    fake_upstream.retry_after_seconds = 1.0
    gateway = start_gateway(config(deployment("m", "gpt-fake", fake_upstream.base_url)))
    fake_upstream.script("gpt-fake", ["429", "ok"])

    response = chat(gateway)

    first, second = fake_upstream.requests
    assert response.status_code == 200
    assert second.received_at - first.received_at >= 0.95, "the retry came before retry-after"
    row = last_row(gateway)
    assert row["status"] == 200
    assert row["retries"] == 1
    assert row["error_type"] is None


def test_429_without_retry_after_backs_off(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(config(deployment("m", "gpt-fake", fake_upstream.base_url)))
    fake_upstream.script("gpt-fake", ["429-no-retry-after", "ok"])

    response = chat(gateway)

    first, second = fake_upstream.requests
    assert response.status_code == 200
    # retry_backoff_seconds is 0.01, so the first retry waits at most 0.01 s plus scheduling.
    assert second.received_at - first.received_at < 0.5
    assert last_row(gateway)["retries"] == 1


def test_429_without_retry_after_exhausted(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(
        config(deployment("m", "fault-429-no-retry-after", fake_upstream.base_url))
    )

    response = chat(gateway)

    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" not in response.headers
    assert len(fake_upstream.requests) == 3
    row = last_row(gateway)
    assert row["status"] == 429
    assert row["error_type"] == "rate_limit_exceeded"
    assert row["retries"] == 2


# ---------------------------------------------------------------------------
# Status faults and connection faults
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_502_exhausted_gives_clear_error(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, stream: bool
) -> None:
    gateway = start_gateway(config(deployment("m", "fault-502", fake_upstream.base_url)))

    response = chat(gateway, stream=stream)

    error = response.json()["error"]
    assert response.status_code == 502
    assert error["code"] == "upstream_status_502"
    assert "HTTP 502" in error["message"]
    assert len(fake_upstream.requests) == 3
    row = last_row(gateway)
    assert row["status"] == 502
    assert row["error_type"] == "upstream_status_502"
    assert row["stream"] == stream


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_connection_refused_gives_clear_error(start_gateway: GatewayFactory, stream: bool) -> None:
    gateway = start_gateway(config(deployment("m", "gpt-fake", closed_port_url())))

    response = chat(gateway, stream=stream)

    error = response.json()["error"]
    assert response.status_code == 502
    assert error["code"] == "upstream_connection_error"
    assert "could not be reached" in error["message"]
    row = last_row(gateway)
    assert row["status"] == 502
    assert row["error_type"] == "upstream_connection_error"
    assert row["retries"] == 2
    assert row["upstream"] == "m#0"


def test_connection_refused_falls_back(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(
        config(
            deployment("m", "gpt-fake", closed_port_url()),
            deployment("backup", "gpt-fake", fake_upstream.base_url),
            fallbacks=[{"m": ["backup"]}],
        )
    )

    response = chat(gateway)

    assert response.status_code == 200
    assert response.headers["x-pareto-model"] == "backup"
    assert len(fake_upstream.requests) == 1
    row = last_row(gateway)
    assert row["status"] == 200
    assert row["requested_model"] == "m"
    assert row["served_model"] == "backup"
    assert row["fallback_used"]
    assert row["retries"] == 3


def test_reset_mid_response_retried(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(config(deployment("m", "gpt-fake", fake_upstream.base_url)))
    fake_upstream.script("gpt-fake", ["reset-mid-response", "ok"])

    response = chat(gateway)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert len(fake_upstream.requests) == 2
    row = last_row(gateway)
    assert row["status"] == 200
    assert row["retries"] == 1


def test_silent_stream_row(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(
        config(
            deployment("m", "fault-hang", fake_upstream.base_url, stream_timeout=0.3),
            num_retries=0,
        )
    )

    response = chat(gateway, stream=True)

    assert response.status_code == 408
    assert response.json()["error"]["code"] == "upstream_timeout"
    row = last_row(gateway)
    assert row["status"] == 408
    assert row["error_type"] == "upstream_timeout"
    assert row["stream"]


# ---------------------------------------------------------------------------
# A slow drip of one byte per second
# ---------------------------------------------------------------------------


def test_slow_drip_plain_times_out(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(
        config(
            deployment("m", "fault-slow-drip", fake_upstream.base_url, timeout=1.5),
            num_retries=0,
        )
    )

    started = time.monotonic()
    response = chat(gateway)
    elapsed = time.monotonic() - started

    assert response.status_code == 408
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert "1.5 s" in response.json()["error"]["message"]
    assert 1.4 < elapsed < 4
    row = last_row(gateway)
    assert row["status"] == 408
    assert row["error_type"] == "upstream_timeout"


def test_slow_drip_stream_times_out(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    # One byte a second never leaves a read waiting 1.5 s, but no event completes either.
    gateway = start_gateway(
        config(
            deployment("m", "fault-slow-drip", fake_upstream.base_url, stream_timeout=1.5),
            num_retries=0,
        )
    )

    started = time.monotonic()
    response = chat(gateway, stream=True)
    elapsed = time.monotonic() - started

    events = stream_events(response)
    assert response.status_code == 200
    assert len(events) == 1
    error = json.loads(events[0])["error"]
    assert error["code"] == "upstream_timeout"
    assert "no complete event for 1.5 s" in error["message"]
    assert elapsed < 5
    row = last_row(gateway)
    assert row["status"] == 408
    assert row["error_type"] == "upstream_timeout"
    assert row["stream"]
    deadline = time.monotonic() + 3
    while not fake_upstream.requests[-1].cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_upstream.requests[-1].cancelled, "the gateway kept the upstream stream open"


# ---------------------------------------------------------------------------
# Unusable 200 answers to streaming requests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["not-json", "no-choices"])
def test_unusable_stream_answer_retried(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, fault: str
) -> None:
    gateway = start_gateway(config(deployment("m", "gpt-fake", fake_upstream.base_url)))
    fake_upstream.script("gpt-fake", [fault, "ok"])

    response = chat(gateway, stream=True)

    events = stream_events(response)
    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    assert "oops" not in response.text
    assert len(fake_upstream.requests) == 2
    row = last_row(gateway)
    assert row["status"] == 200
    assert row["retries"] == 1


@pytest.mark.parametrize("fault", ["not-json", "no-choices"])
def test_unusable_stream_answer_exhausted(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, fault: str
) -> None:
    gateway = start_gateway(config(deployment("m", f"fault-{fault}", fake_upstream.base_url)))

    response = chat(gateway, stream=True)

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "upstream_invalid_response"
    assert "not a stream of server-sent events" in error["message"]
    assert len(fake_upstream.requests) == 3
    row = last_row(gateway)
    assert row["status"] == 502
    assert row["error_type"] == "upstream_invalid_response"
    assert row["stream"]
