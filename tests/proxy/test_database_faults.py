"""The database goes away while traffic flows: the gateway keeps serving and loses no row.

PostgreSQL is "stopped" by cutting a TCP relay between the gateway and the shared server, which
keeps running for everyone else. SQLite is locked by another connection's `BEGIN EXCLUSIVE`;
the gateway waits 5 s for a lock before a write fails, so those variants are slow.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from proxy.db import normalize_url
from tests.conftest import POSTGRES_URL, GatewayFactory, reset_postgres
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment
from tests.tcp_relay import TcpRelay

WAIT_SECONDS = 20.0
# A request that waited for the database would take at least the 5 s SQLite lock timeout.
SERVING_LIMIT_SECONDS = 1.0


@dataclass
class Outage:
    """A database the test can take away from the gateway and give back."""

    database_url: str  # the URL the gateway is given
    cut: Callable[[], None]
    restore: Callable[[], None]
    count_rows: Callable[[], int]  # read without going through the cut


def sqlite_outage(path: Path) -> Iterator[Outage]:
    holder: list[sqlite3.Connection] = []

    def cut() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        holder.append(connection)

    def restore() -> None:
        connection = holder.pop()
        connection.execute("ROLLBACK")
        connection.close()

    def count_rows() -> int:
        # In WAL mode a reader is not blocked by the writer's lock.
        connection = sqlite3.connect(path)
        try:
            return int(connection.execute("SELECT count(*) FROM request_log").fetchone()[0])
        finally:
            connection.close()

    yield Outage(f"sqlite:///{path}", cut, restore, count_rows)
    for connection in holder:
        connection.close()


def postgres_outage() -> Iterator[Outage]:
    reset_postgres()
    direct = make_url(normalize_url(POSTGRES_URL))
    engine = create_engine(direct)

    def count_rows() -> int:
        with engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT count(*) FROM request_log").scalar_one())

    with TcpRelay(direct.port or 5432, direct.host or "127.0.0.1") as relay:
        relayed = direct.set(host="127.0.0.1", port=relay.port)
        yield Outage(
            relayed.render_as_string(hide_password=False), relay.cut, relay.restore, count_rows
        )
    engine.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.slow),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "sqlite":
        yield from sqlite_outage(tmp_path / "pareto.db")
    else:
        yield from postgres_outage()


def gateway_config(api_base: str, **general: Any) -> dict[str, Any]:
    return {
        "model_list": [deployment("m", "gpt-fake", api_base)],
        "general_settings": {"master_key": MASTER_KEY, **general},
    }


def send(gateway: RunningGateway, count: int) -> list[tuple[int, float, str]]:
    """Send `count` chat requests, every second one streamed; return status, seconds and id."""
    results = []
    for number in range(count):
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": f"request {number}"}],
            "stream": number % 2 == 1,
        }
        started = time.monotonic()
        response = httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=20,
        )
        elapsed = time.monotonic() - started
        results.append((response.status_code, elapsed, response.headers["x-pareto-request-id"]))
    return results


def wait_until(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def readiness(gateway: RunningGateway) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}/health/readiness", timeout=10)


def dropped_metric(gateway: RunningGateway) -> float:
    response = httpx.get(
        f"{gateway.base_url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    for line in response.text.splitlines():
        if line.startswith("pareto_recorder_dropped_rows_total "):
            return float(line.split()[1])
    raise AssertionError("pareto_recorder_dropped_rows_total is missing from /metrics")


def test_outage_rows_written_later(
    outage: Outage, fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(gateway_config(fake_upstream.base_url), outage.database_url)
    recorder = gateway.state.recorder
    assert recorder is not None
    before = send(gateway, 4)
    assert wait_until(lambda: outage.count_rows() == 4)

    outage.cut()
    during = send(gateway, 20)
    failing = wait_until(lambda: not recorder.database_ok)
    down = readiness(gateway)
    queued_while_down = recorder.queued
    rows_while_down = outage.count_rows()

    outage.restore()
    written = wait_until(lambda: outage.count_rows() == 24)
    up = wait_until(lambda: readiness(gateway).status_code == 200)

    assert [status for status, _, _ in before + during] == [200] * 24
    slowest = max(seconds for _, seconds, _ in during)
    assert slowest < SERVING_LIMIT_SECONDS, f"a request took {slowest:.2f} s during the outage"
    assert failing, "the recorder never noticed the outage"
    assert down.status_code == 503
    assert down.json()["status"] == "not ready"
    assert down.json()["database"].startswith("unavailable: ")
    if outage.database_url.startswith("sqlite"):
        # SQLite still runs queries on the locked file, so readiness reports the failing writes.
        reason = "unavailable: request rows cannot be written: database is locked"
        assert down.json()["database"] == reason
    assert queued_while_down == 20
    assert rows_while_down == 4
    assert written, f"{outage.count_rows()} rows after the database returned, expected 24"
    assert up, "readiness did not return to 200"
    assert recorder.dropped == 0
    assert dropped_metric(gateway) == 0


def test_outage_overflow_counted(
    outage: Outage,
    fake_upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.recorder")
    config = gateway_config(fake_upstream.base_url, request_log_max_queue=5)
    gateway = start_gateway(config, outage.database_url)
    recorder = gateway.state.recorder
    assert recorder is not None
    send(gateway, 2)
    assert wait_until(lambda: outage.count_rows() == 2)

    outage.cut()
    during = send(gateway, 12)
    # Rows of a write in progress return to the queue when it fails, and the excess is dropped.
    settled = wait_until(lambda: recorder.dropped == 7 and not recorder.database_ok)
    dropped = dropped_metric(gateway)
    outage.restore()
    written = wait_until(lambda: outage.count_rows() == 7)
    gateway.stop()

    assert [status for status, _, _ in during] == [200] * 12
    assert settled, f"{recorder.dropped} rows dropped, expected 12 - 5 = 7"
    assert dropped == 7
    assert recorder.dropped == 7
    assert written, f"{outage.count_rows()} rows after the database returned, expected 2 + 5"
    assert outage.count_rows() == 7
    messages = [record.getMessage() for record in caplog.records]
    assert any("request rows dropped: the queue is full (5 rows)" in m for m in messages)
    assert "request rows dropped since start: 7 (the queue was full)" in messages
