"""A judge that is down or returns nonsense: the run records judge errors and decides nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evaluator.report import format_report
from evaluator.tables import EvalRun, Judgment
from proxy.db import make_engine
from proxy.decisions import list_decisions
from proxy.evaluation import EvaluationOutcome, evaluate_and_decide
from tests.evaluator.eval_fakes import (
    POLICY,
    Behaviour,
    Messages,
    ModelServer,
    add_cases,
    eval_config,
    gateway_caller,
    load,
    model_behaviours,
)

CASES = 6


def sensible_verdict(messages: Messages) -> str:
    return '{"score": 8, "reason": "matches the expected answer"}'


def nonsense(messages: Messages) -> str:
    return "What a lovely question. I would rather talk about the weather."


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    created = make_engine(sqlite_url)
    add_cases(created, CASES, checks=False)
    yield created
    created.dispose()


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def evaluate(engine: Engine, config: dict[str, Any]) -> EvaluationOutcome:
    loaded = load(config)
    async with gateway_caller(loaded) as caller:
        return await evaluate_and_decide(engine, loaded, caller, POLICY)


def stored(engine: Engine) -> tuple[list[EvalRun], list[Judgment]]:
    with Session(engine) as session:
        runs = list(session.exec(select(EvalRun)).all())
        judgments = list(session.exec(select(Judgment).order_by(col(Judgment.id))).all())
    return runs, judgments


async def test_working_judge_decides(engine: Engine, sqlite_url: str) -> None:
    behaviours = {**model_behaviours(), "judge-up": Behaviour(sensible_verdict)}
    with ModelServer(behaviours) as server:
        outcome = await evaluate(engine, eval_config(server.base_url, sqlite_url, judge="llm"))

    _, judgments = stored(engine)
    assert outcome.decision_id is not None
    assert all(judgment.score == 8 for judgment in judgments)
    assert len(list_decisions(engine, POLICY)) == 1


@pytest.mark.parametrize("fault", ["refused", "500", "nonsense"])
async def test_judge_fault_decides_nothing(engine: Engine, sqlite_url: str, fault: str) -> None:
    judge = Behaviour(nonsense if fault == "nonsense" else sensible_verdict)
    with ModelServer({**model_behaviours(), "judge-up": judge}) as server:
        config = eval_config(server.base_url, sqlite_url, judge="llm", judge_retries=1)
        if fault == "refused":
            config["model_list"][2]["litellm_params"]["api_base"] = closed_port_url()
        if fault == "500":
            server.fail_next("judge-up", [500] * 100)
        outcome = await evaluate(engine, config)
        judge_calls = len(server.calls_to("judge-up"))

    runs, judgments = stored(engine)
    # The first judgment is made alone, because the judge's cost is unknown until then. After
    # three failed calls the judge's deployment cools down, and later judgments say so.
    first_error, later_error = {
        "refused": ("could not be reached", "cooling down"),
        "500": ("failed with HTTP 500", "cooling down"),
        "nonsense": ("no JSON object", "no JSON object"),
    }[fault]
    assert outcome.decision is None
    assert outcome.decision_id is None
    assert outcome.no_decision_reason is not None
    assert "scored no output" in outcome.no_decision_reason
    assert "judge error: " in outcome.no_decision_reason
    assert later_error in outcome.no_decision_reason or first_error in outcome.no_decision_reason
    notes = format_report(outcome.summary.report)
    assert "outputs without a score (judge errors, most often: " in notes
    assert list_decisions(engine, POLICY) == []
    assert [run.status for run in runs] == ["completed"]
    assert len(judgments) == 2 * CASES
    assert first_error in (judgments[0].error or "")
    for judgment in judgments:
        assert judgment.score is None
        assert judgment.passed is None
        assert judgment.error is not None
        assert first_error in judgment.error or later_error in judgment.error
        assert "gave up after 2 attempts" in judgment.error
    for aggregate in outcome.summary.report.aggregates:
        assert aggregate.judge_errors == CASES
        assert aggregate.quality.cases == 0
    if fault != "refused":
        assert judge_calls > 0, "the judge was never called"
