"""`pareto serve` killed with SIGKILL during a scheduled evaluation, then started again.

The restarted gateway continues the interrupted run at once, not at the next scheduled time,
and no (case, model) pair is called twice: calls of the killed process that were in flight are
marked interrupted instead of being made again.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from evaluator.tables import EvalResult, EvalRun
from proxy.db import make_engine
from tests.evaluator.eval_fakes import (
    POLICY,
    Behaviour,
    ModelServer,
    add_cases,
    eval_config,
    strong_answer,
    weak_answer,
)
from tests.proxy.serve_process import ServeFactory, serve, write_config

__all__ = ["serve"]

CASES = 10
HELD_PROMPT = "question 5"
WAIT_SECONDS = 40.0


def scheduled_config(api_base: str, database_url: str, schedule: str) -> dict[str, Any]:
    config = eval_config(api_base, database_url, concurrency=2)
    config["policies"][POLICY]["schedule"] = schedule
    return config


def status_counts(database_url: str) -> Counter[str]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(EvalResult.status, func.count()).group_by(col(EvalResult.status))
            ).all()
    finally:
        engine.dispose()
    return Counter({status: count for status, count in rows})


def run_statuses(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            return [run.status for run in session.exec(select(EvalRun)).all()]
    finally:
        engine.dispose()


def wait_for(condition: Any, description: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {WAIT_SECONDS} s waiting for {description}")


@pytest.mark.slow
def test_killed_serve_continues_run(serve: ServeFactory, tmp_path: Path, database_url: str) -> None:
    engine = make_engine(database_url)
    add_cases(engine, CASES)
    engine.dispose()
    behaviours = {
        "strong-up": Behaviour(strong_answer, latency_seconds=0.2),
        "weak-up": Behaviour(weak_answer, latency_seconds=0.2),
    }
    with ModelServer(behaviours) as server:
        server.hold([HELD_PROMPT])
        config = scheduled_config(server.base_url, database_url, "every 1s")
        first = serve(write_config(tmp_path / "first.yaml", config), database_url)
        first.wait_ready()
        # Every case before the held one is done, and both calls of the held case are pending.
        wait_for(
            lambda: status_counts(database_url) == Counter({"ok": 10, "pending": 2}),
            "the run to reach the held case",
        )
        first.kill()
        server.release()

        # An hourly schedule would not start a run during this test: only the restart can.
        config = scheduled_config(server.base_url, database_url, "every 1h")
        second = serve(write_config(tmp_path / "second.yaml", config), database_url)
        second.wait_ready()
        wait_for(lambda: run_statuses(database_url) == ["completed"], "the run to complete")
        second.terminate()
        assert second.wait(timeout=30) == 0, second.log()
        calls = Counter((call.model, call.prompt) for call in server.calls)

    log = second.log()
    assert set(calls.values()) == {1}, calls
    assert len(calls) == 2 * CASES
    assert f"evaluation run to continue now: policy={POLICY} run=1" in log
    assert "continuing evaluation run: run=1" in log
    assert "interrupted_calls=2" in log
    counts = status_counts(database_url)
    assert counts == Counter({"ok": 2 * CASES - 2, "interrupted": 2})
