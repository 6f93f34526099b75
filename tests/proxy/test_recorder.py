"""The request recorder on its own: outages, backoff, overflow and shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from proxy.recorder import Recorder, RequestRow


def row(number: int) -> RequestRow:
    return RequestRow(
        request_id=f"req-{number}",
        created_at=time.time(),
        key_id=None,
        endpoint="chat/completions",
        requested_model="m",
        served_model="m",
        upstream="m#0",
        status=200,
        error_type=None,
        prompt_tokens=1,
        completion_tokens=1,
        cached_tokens=0,
        cost_usd=0.0,
        latency_ms=1.0,
        ttft_ms=None,
        stream=False,
        retries=0,
        fallback_used=False,
        policy=None,
        decision_id=None,
    )


class CountingRecorder(Recorder):
    """A recorder that counts its write attempts."""

    attempts = 0

    def _insert(self, batch: list[RequestRow]) -> None:
        self.attempts += 1
        super()._insert(batch)


@pytest.fixture
def later_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a SQLite file in a folder that does not exist yet: every write fails."""
    engine = create_engine(f"sqlite:///{tmp_path / 'later' / 'pareto.db'}")
    yield engine
    engine.dispose()


def bring_up(engine: Engine) -> None:
    assert engine.url.database is not None
    Path(engine.url.database).parent.mkdir()
    SQLModel.metadata.create_all(engine)


def count_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM request_log").scalar_one())


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_outage_rows_written_later(
    later_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.recorder")
    recorder = Recorder(later_engine, interval=0.01)
    recorder.start()
    try:
        for number in range(3):
            recorder.add(row(number))
        assert await wait_for(lambda: not recorder.database_ok), "the write did not fail"
        queued_during_outage = recorder.queued

        bring_up(later_engine)
        assert await wait_for(lambda: recorder.written == 3), "rows not written after the outage"
    finally:
        await recorder.stop(timeout=1)

    assert queued_during_outage == 3
    assert count_rows(later_engine) == 3
    assert recorder.database_ok
    assert recorder.last_error is None
    assert caplog.text.count("request rows not written, will retry") == 1
    assert "request rows written again after a database outage" in caplog.text


async def test_outage_last_error_kept(later_engine: Engine) -> None:
    recorder = Recorder(later_engine, interval=0.01)
    recorder.add(row(1))

    await recorder.flush()

    assert not recorder.database_ok
    assert recorder.last_error is not None
    assert "unable to open database file" in recorder.last_error
    assert recorder.queued == 1


async def test_outage_backoff_not_cut_short(later_engine: Engine) -> None:
    recorder = CountingRecorder(later_engine, batch_size=2, interval=0.01)
    recorder.start()
    try:
        # A full batch arrives every 5 ms for 0.6 s while every write fails.
        for number in range(240):
            recorder.add(row(number))
            await asyncio.sleep(0.0025)
    finally:
        await recorder.stop(timeout=0.1)

    # Backoff from 0.02 s, doubling: about 6 attempts in 0.6 s. A writer woken by every
    # full batch would try about once per added pair of rows instead.
    assert recorder.attempts <= 12, f"{recorder.attempts} write attempts during a 0.6 s outage"


async def test_overflow_counted_and_logged(
    later_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    drops: list[int] = []
    recorder = Recorder(later_engine, max_queue=5, on_drop=drops.append)

    for number in range(8):
        recorder.add(row(number))

    assert recorder.queued == 5
    assert recorder.dropped == 3
    assert sum(drops) == 3
    dropped_lines = [r for r in caplog.records if "request rows dropped" in r.getMessage()]
    assert len(dropped_lines) == 1, "repeated drops within 10 s are logged once"
    assert dropped_lines[0].levelno >= logging.WARNING
    assert "the queue is full (5 rows)" in dropped_lines[0].getMessage()


async def test_failed_batch_requeued_within_bound(later_engine: Engine) -> None:
    drops: list[int] = []
    recorder = Recorder(later_engine, max_queue=4, batch_size=4, on_drop=drops.append)
    for number in range(4):
        recorder.add(row(number))

    # The write takes the whole queue; rows that arrive meanwhile fill it again.
    write = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0)
    for number in range(4, 7):
        recorder.add(row(number))
    await write

    assert recorder.queued == 4
    assert recorder.dropped == 3
    assert sum(drops) == 3


async def test_stop_reports_dropped_and_lost(
    later_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(later_engine, max_queue=2)
    recorder.start()
    for number in range(5):
        recorder.add(row(number))

    await recorder.stop(timeout=0.3)

    assert "request rows lost at shutdown: rows=2 reason=database unavailable" in caplog.text
    assert "request rows dropped since start: 3 (the queue was full)" in caplog.text


async def test_stop_writes_rows_after_outage(later_engine: Engine) -> None:
    recorder = Recorder(later_engine, interval=0.01)
    recorder.start()
    for number in range(3):
        recorder.add(row(number))
    assert await wait_for(lambda: not recorder.database_ok)
    bring_up(later_engine)

    await recorder.stop(timeout=5)

    assert count_rows(later_engine) == 3
    assert recorder.queued == 0
