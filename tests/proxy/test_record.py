"""The request record: one row per request, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, create_engine, select

from proxy.db import normalize_url
from proxy.tables import RequestLog
from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

PRICES = {
    "input_cost_per_token": 0.000001,
    "output_cost_per_token": 0.000002,
    "cache_read_input_token_cost": 0.0000005,
}


def read_rows(database_url: str) -> list[dict[str, Any]]:
    """Read every row through the table's types, as any other reader of the database would."""
    engine = create_engine(normalize_url(database_url))
    try:
        with Session(engine) as session:
            found = session.exec(select(RequestLog).order_by(col(RequestLog.id)))
            return [row.model_dump() for row in found]
    finally:
        engine.dispose()


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@pytest.fixture
def gateway(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, database_url: str
) -> RunningGateway:
    config = {
        "model_list": [
            deployment("m", "gpt-fake", fake_upstream.base_url, model_info=PRICES),
            deployment("broken", "fault-500", fake_upstream.base_url, max_retries=1),
        ],
        "router_settings": {"retry_backoff_seconds": 0.01},
        "general_settings": {"master_key": MASTER_KEY},
    }
    return start_gateway(config, database_url)


def test_success_row(gateway: RunningGateway, database_url: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "three words here"}]
    )
    gateway.flush()

    row = read_rows(database_url)[-1]
    assert row["request_id"] == raw.headers["x-pareto-request-id"]
    assert row["key_id"] == "master"
    assert row["endpoint"] == "chat/completions"
    assert row["requested_model"] == "m"
    assert row["served_model"] == "m"
    assert row["upstream"] == "m#0"
    assert row["status"] == 200
    assert row["error_type"] is None
    assert row["prompt_tokens"] == 3
    assert row["completion_tokens"] == 4
    assert row["cost_usd"] == pytest.approx(3 * 0.000001 + 4 * 0.000002)
    assert row["latency_ms"] > 0
    assert row["ttft_ms"] is None
    assert not row["stream"]
    assert row["retries"] == 0
    assert not row["fallback_used"]
    created = row["created_at"]
    assert isinstance(created, datetime)
    assert before <= as_utc(created) <= datetime.now(UTC) + timedelta(seconds=1)


def test_stream_row(gateway: RunningGateway, database_url: str) -> None:
    stream = gateway.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a b"}], stream=True
    )
    list(stream)
    gateway.flush()

    row = read_rows(database_url)[-1]
    assert row["stream"]
    assert row["status"] == 200
    assert row["prompt_tokens"] == 2
    assert row["completion_tokens"] == 3
    assert row["ttft_ms"] is not None
    assert 0 < row["ttft_ms"] <= row["latency_ms"]
    assert row["cost_usd"] > 0


def test_cached_tokens_priced(
    gateway: RunningGateway, fake_upstream: FakeUpstream, database_url: str
) -> None:
    fake_upstream.cached_tokens = 2
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "one two three four"}]
    )
    gateway.flush()

    row = read_rows(database_url)[-1]
    expected = 2 * 0.000001 + 2 * 0.0000005 + 5 * 0.000002
    assert row["cached_tokens"] == 2
    assert row["cost_usd"] == pytest.approx(expected)
    assert float(raw.headers["x-pareto-cost-usd"]) == pytest.approx(expected)


def test_failure_row(gateway: RunningGateway, database_url: str) -> None:
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "broken", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    gateway.flush()

    row = read_rows(database_url)[-1]
    assert response.status_code == 502
    assert row["status"] == 502
    assert row["error_type"] == "upstream_status_500"
    assert row["retries"] == 1
    assert row["served_model"] == "broken"
    assert row["cost_usd"] == 0


def test_rejected_request_row(gateway: RunningGateway, database_url: str) -> None:
    httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    gateway.flush()

    row = read_rows(database_url)[-1]
    assert row["status"] == 404
    assert row["error_type"] == "model_not_found"
    assert row["requested_model"] == "nope"
    assert row["served_model"] is None


def test_every_request_one_row(gateway: RunningGateway, database_url: str) -> None:
    client = gateway.client()
    ids = set()
    for index in range(25):
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": f"n {index}"}], stream=index % 2 == 0
        )
        ids.add(raw.headers["x-pareto-request-id"])
        raw.parse()
    gateway.stop()

    rows = read_rows(database_url)
    assert len(rows) == 25
    assert {row["request_id"] for row in rows} == ids


def test_shutdown_flushes_rows(gateway: RunningGateway, database_url: str) -> None:
    recorder = gateway.state.recorder
    assert recorder is not None
    for _ in range(5):
        gateway.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    gateway.stop()

    assert len(read_rows(database_url)) == 5
    assert recorder.queued == 0
