"""Upstream faults: retries, deployment order, fallbacks, cooldown, timeouts and cancellation."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
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


def rows(gateway: RunningGateway) -> list[dict[str, Any]]:
    gateway.flush()
    assert gateway.state.engine is not None
    with gateway.state.engine.connect() as connection:
        result = connection.exec_driver_sql("SELECT * FROM request_log ORDER BY id")
        return [dict(row._mapping) for row in result]


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "drop", "not-json", "no-choices"])
def test_retry_then_success(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, fault: str
) -> None:
    gateway = start_gateway(config(deployment("m", "gpt-fake", fake_upstream.base_url)))
    fake_upstream.script("gpt-fake", [fault, "ok"])

    response = chat(gateway)

    assert response.status_code == 200
    assert len(fake_upstream.requests) == 2
    row = rows(gateway)[-1]
    assert row["status"] == 200
    assert row["retries"] == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("429", 429, "rate_limit_exceeded"),
        ("500", 502, "upstream_status_500"),
        ("503", 502, "upstream_status_503"),
        ("drop", 502, "upstream_connection_error"),
        ("reset-mid-response", 502, "upstream_connection_error"),
        ("not-json", 502, "upstream_invalid_response"),
        ("no-choices", 502, "upstream_invalid_response"),
    ],
)
def test_exhausted_retries_give_clear_error(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, fault: str, status: int, code: str
) -> None:
    gateway = start_gateway(config(deployment("m", f"fault-{fault}", fake_upstream.base_url)))

    response = chat(gateway)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert len(fake_upstream.requests) == 3
    row = rows(gateway)[-1]
    assert row["status"] == status
    assert row["error_type"] == code
    assert row["retries"] == 2


def test_retry_after_header_passed_on(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(
        config(deployment("m", "fault-429", fake_upstream.base_url), num_retries=0)
    )

    response = chat(gateway)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "0"


def test_context_error_not_retried(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(config(deployment("m", "fault-400-context", fake_upstream.base_url)))

    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "long"}]
        )

    assert caught.value.status_code == 400
    assert "maximum context length" in caught.value.message
    assert caught.value.code == "context_length_exceeded"
    assert len(fake_upstream.requests) == 1


def test_order_retries_group_fallback(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    base = fake_upstream.base_url
    gateway = start_gateway(
        config(
            deployment("m", "fault-500", base, max_retries=1),
            deployment("m", "fault-503", base, max_retries=1),
            deployment("backup", "fault-502", base, max_retries=0),
            deployment("last", "gpt-fake", base),
            fallbacks=[{"m": ["backup", "last"]}],
        )
    )

    response = chat(gateway)

    assert response.status_code == 200
    assert response.headers["x-pareto-model"] == "last"
    models = [request.model for request in fake_upstream.requests]
    group = models[:4]
    assert sorted(group) == ["fault-500", "fault-500", "fault-503", "fault-503"]
    assert group[0] == group[1]
    assert models[4:] == ["fault-502", "gpt-fake"]
    row = rows(gateway)[-1]
    assert row["fallback_used"]
    assert row["served_model"] == "last"
    assert row["retries"] == 5


def test_cooldown_skips_failing_deployment(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    base = fake_upstream.base_url
    gateway = start_gateway(
        config(
            deployment("m", "fault-500", base, max_retries=0, weight=1000),
            deployment("m", "gpt-fake", base, max_retries=0, weight=0.001),
            allowed_fails=2,
            cooldown_time=30,
        )
    )

    for _ in range(6):
        assert chat(gateway).status_code == 200

    failing = fake_upstream.requests_for("fault-500")
    assert len(failing) == 2
    assert len(fake_upstream.requests_for("gpt-fake")) == 6


def test_all_cooling_down_gives_503(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(
        config(
            deployment("m", "fault-500", fake_upstream.base_url, max_retries=0),
            allowed_fails=1,
            cooldown_time=30,
        )
    )

    first = chat(gateway)
    second = chat(gateway)

    assert first.status_code == 502
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "deployments_cooling_down"
    assert int(second.headers["retry-after"]) >= 1
    assert len(fake_upstream.requests) == 1


def test_silent_upstream_gives_408(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(
        config(deployment("m", "fault-hang", fake_upstream.base_url, timeout=0.3), num_retries=0)
    )

    started = time.monotonic()
    response = chat(gateway)
    elapsed = time.monotonic() - started

    assert response.status_code == 408
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert 0.25 < elapsed < 3
    assert rows(gateway)[-1]["status"] == 408


def test_silent_stream_gives_408(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(
        config(
            deployment("m", "fault-hang", fake_upstream.base_url, stream_timeout=0.3),
            num_retries=0,
        )
    )

    response = chat(gateway, stream=True)

    assert response.status_code == 408
    assert response.json()["error"]["type"] == "timeout_error"


def test_cut_stream_ends_with_error_event(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(config(deployment("m", "fault-cut-stream", fake_upstream.base_url)))

    response = chat(gateway, stream=True)

    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    last = json.loads(events[-1][len("data: ") :])
    assert last["error"]["code"] == "upstream_connection_error"
    assert "[DONE]" not in response.text
    assert len(fake_upstream.requests) == 1, "nothing is retried after bytes reached the client"
    row = rows(gateway)[-1]
    assert row["status"] == 502
    assert row["stream"]


def test_client_disconnect_cancels_upstream(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(config(deployment("m", "fault-hang", fake_upstream.base_url)))

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=0.3,
        )
    disconnected = time.monotonic()

    deadline = disconnected + 3
    while not fake_upstream.requests[-1].cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    record = fake_upstream.requests[-1]
    assert record.cancelled
    assert record.cancelled_at is not None
    assert record.cancelled_at - disconnected < 0.5
    assert rows(gateway)[-1]["status"] == 499


def test_client_disconnect_mid_stream(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    fake_upstream.drip_seconds = 0.005
    gateway = start_gateway(config(deployment("m", "fault-slow-drip", fake_upstream.base_url)))

    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as response:
        next(response.iter_raw())

    deadline = time.monotonic() + 3
    while not fake_upstream.requests[-1].cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_upstream.requests[-1].cancelled
    row = rows(gateway)[-1]
    assert row["status"] == 499
    assert row["stream"]
