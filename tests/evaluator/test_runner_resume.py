"""`pareto eval run` killed with SIGKILL mid-run, then run again: nothing is called twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func
from sqlmodel import Session, col, select

from evaluator.report import load_report
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

PARETO = Path(sys.executable).parent / "pareto"
CASES = 10
HELD_PROMPT = "question 5"
WAIT_LIMIT_SECONDS = 30.0


def start_run(config_path: Path, database_url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [str(PARETO), "eval", "run", "--config", str(config_path), "--policy", POLICY]
    environ = {**os.environ, "DATABASE_URL": database_url}
    with log.open("wb") as output:
        return subprocess.Popen(
            [*command, "--no-progress"], stdout=output, stderr=subprocess.STDOUT, env=environ
        )


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


def wait_until_stalled(process: subprocess.Popen[bytes], database_url: str) -> Counter[str]:
    """Wait until every case before the held one is done and both held calls are pending."""
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        counts = status_counts(database_url)
        if counts["ok"] >= 10 and counts["pending"] == 2:
            return counts
        time.sleep(0.1)
    raise AssertionError(f"the run did not reach the held case: {status_counts(database_url)}")


@pytest.mark.slow
def test_killed_run_resumes_without_repeats(tmp_path: Path, database_url: str) -> None:
    engine = make_engine(database_url)
    add_cases(engine, CASES)
    behaviours = {
        "strong-up": Behaviour(strong_answer, latency_seconds=0.3),
        "weak-up": Behaviour(weak_answer, latency_seconds=0.3),
    }
    with ModelServer(behaviours) as server:
        server.hold([HELD_PROMPT])
        config = eval_config(server.base_url, database_url, concurrency=2)
        config_path = tmp_path / "config.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")

        first = start_run(config_path, database_url, tmp_path / "first.log")
        try:
            before_kill = wait_until_stalled(first, database_url)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        server.release()

        second = start_run(config_path, database_url, tmp_path / "second.log")
        assert second.wait(60) == 0, (tmp_path / "second.log").read_text()
        calls = Counter((call.model, call.prompt) for call in server.calls)

    output = (tmp_path / "second.log").read_text()
    assert before_kill["pending"] == 2
    assert set(calls.values()) == {1}, calls
    assert len(calls) == 2 * CASES
    assert "continued a stopped run" in output
    assert "2 calls of the stopped process marked interrupted" in output

    with Session(engine) as session:
        runs = session.exec(select(EvalRun)).all()
        rows = session.exec(select(EvalResult)).all()
    assert len(runs) == 1
    assert runs[0].status == "completed"
    assert len(rows) == 2 * CASES
    interrupted = [row for row in rows if row.status == "interrupted"]
    assert {(row.model, row.case_id) for row in interrupted} == {
        (model, runs[0].case_ids[5]) for model in ("strong", "weak")
    }

    assert runs[0].id is not None
    report = load_report(engine, runs[0].id)
    for aggregate in report.aggregates:
        assert aggregate.cases == CASES - 1
        assert aggregate.interrupted == 1
        assert aggregate.error_rate == 0.0
    engine.dispose()
