"""Evaluation runs through the gateway's forwarding against a local model server."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evaluator import run_store
from evaluator.aggregate import ModelAggregate
from evaluator.run_errors import NoCasesError, UnknownModelError, UnknownPolicyError
from evaluator.runner import RunSummary, run_evaluation
from evaluator.tables import BenchmarkCase, EvalResult, EvalRun, Judgment
from proxy.db import make_engine
from tests.evaluator.eval_fakes import (
    JUDGE_CALL_USD,
    POLICY,
    STRONG_CALL_USD,
    WEAK_CALL_USD,
    Behaviour,
    Messages,
    ModelServer,
    add_cases,
    eval_config,
    gateway_caller,
    load,
    model_behaviours,
    question_number,
)

CASES = 12


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer(model_behaviours()) as running:
        yield running


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    created = make_engine(sqlite_url)
    yield created
    created.dispose()


async def evaluate(engine: Engine, config: dict[str, Any], **options: Any) -> RunSummary:
    loaded = load(config)
    async with gateway_caller(loaded) as caller:
        return await run_evaluation(engine, loaded, caller, POLICY, **options)


def by_model(summary: RunSummary) -> dict[str, ModelAggregate]:
    return {aggregate.model: aggregate for aggregate in summary.report.aggregates}


def pair_counts(server: ModelServer, models: tuple[str, ...]) -> Counter[tuple[str, str]]:
    return Counter((call.model, call.prompt) for call in server.calls if call.model in models)


def results(engine: Engine, run_id: int) -> list[EvalResult]:
    with Session(engine) as session:
        return list(session.exec(select(EvalResult).where(EvalResult.run_id == run_id)).all())


# ---------------------------------------------------------------------------
# Checks judge
# ---------------------------------------------------------------------------


async def test_checks_judge_ranks_models(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    add_cases(engine, CASES)
    summary = await evaluate(engine, eval_config(server.base_url, sqlite_url))
    strong, weak = by_model(summary)["strong"], by_model(summary)["weak"]

    assert summary.status == "completed"
    assert summary.calls == 2 * CASES
    assert strong.cases == weak.cases == CASES
    assert strong.quality.mean == 10.0
    assert weak.quality.mean == pytest.approx((6 * 10 + 6 * 1) / CASES)
    assert weak.quality.low < weak.quality.mean < weak.quality.high
    assert strong.pass_rate == 1.0
    assert weak.pass_rate == 0.5
    assert strong.cost_per_request_usd == pytest.approx(STRONG_CALL_USD)
    assert weak.cost_per_request_usd == pytest.approx(WEAK_CALL_USD)
    assert strong.latency_p50_ms is not None and weak.latency_p50_ms is not None
    assert strong.latency_p50_ms > weak.latency_p50_ms + 30
    assert strong.latency_p95_ms is not None and strong.latency_p95_ms >= strong.latency_p50_ms
    assert strong.ttft_mean_ms is not None and strong.ttft_mean_ms >= 40
    assert strong.error_rate == weak.error_rate == 0.0
    assert summary.report.spent_usd == pytest.approx(CASES * (STRONG_CALL_USD + WEAK_CALL_USD))


async def test_every_pair_called_once(server: ModelServer, engine: Engine, sqlite_url: str) -> None:
    add_cases(engine, CASES)
    await evaluate(engine, eval_config(server.base_url, sqlite_url, concurrency=8))

    counts = pair_counts(server, ("strong-up", "weak-up"))
    assert len(counts) == 2 * CASES
    assert set(counts.values()) == {1}


async def test_checks_judge_leaves_out_cases_without_checks(
    server: ModelServer, engine: Engine, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = add_cases(engine, 5)
    with Session(engine) as session:
        for case in session.exec(select(BenchmarkCase).where(col(BenchmarkCase.id).in_(ids[:3]))):
            case.checks = None
            session.add(case)
        session.commit()
    summary = await evaluate(engine, eval_config(server.base_url, sqlite_url))
    strong = by_model(summary)["strong"]

    assert strong.judge_errors == 0
    assert strong.quality.cases == 2
    assert pair_counts(server, ("strong-up",)).total() == 2
    assert "evaluation leaves out 3 cases without checks" in caplog.text


async def test_checks_judge_without_any_checks_calls_nothing(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    add_cases(engine, 3, checks=False)

    with pytest.raises(NoCasesError, match="has 3 cases, but none has checks"):
        await evaluate(engine, eval_config(server.base_url, sqlite_url))

    assert server.calls == []


async def test_limit_takes_first_cases(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    ids = add_cases(engine, 6)
    summary = await evaluate(engine, eval_config(server.base_url, sqlite_url), limit=4)

    with Session(engine) as session:
        run = session.get(EvalRun, summary.run_id)
    assert run is not None
    assert run.case_ids == sorted(ids)[:4]
    assert {call.prompt for call in server.calls} == {f"question {n}" for n in range(4)}


async def test_models_option_limits_candidates(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    add_cases(engine, 3)
    summary = await evaluate(engine, eval_config(server.base_url, sqlite_url), models=["weak"])

    assert summary.report.models == ["weak"]
    assert {call.model for call in server.calls} == {"weak-up"}


# ---------------------------------------------------------------------------
# LLM judge
# ---------------------------------------------------------------------------

_SECTION = r"<{name} (\w+)>\n(.*?)\n</{name} \1>"


def section(messages: Messages, name: str) -> str | None:
    match = re.search(_SECTION.format(name=name), messages[-1]["content"], re.DOTALL)
    return match.group(2) if match else None


class ScriptedJudge:
    """Grades 9 when the output equals the expected output, else 4, with planted bad replies.

    - question 2: the verdict arrives in a fenced code block (valid).
    - question 3: prose only, every time (a judge error).
    - question 4: first a score of 11 (out of range), then a valid verdict.
    - question 5: JSON without a score, every time (a judge error).
    """

    def __init__(self) -> None:
        self.attempts: Counter[tuple[int, str]] = Counter()

    def __call__(self, messages: Messages) -> str:
        number = question_number(messages)
        output = section(messages, "CANDIDATE_OUTPUT") or ""
        self.attempts[(number, output)] += 1
        score = 9 if output == section(messages, "EXPECTED_OUTPUT") else 4
        verdict = f'{{"score": {score}, "reason": "compared with the expected output"}}'
        if number == 2:
            return f"Here is my grade:\n```json\n{verdict}\n```"
        if number == 3:
            return "The answer looks fine to me. Score: 9"
        if number == 4 and self.attempts[(number, output)] == 1:
            return '{"score": 11, "reason": "excellent"}'
        if number == 5:
            return '{"verdict": "good", "reason": "no score given"}'
        return verdict


@pytest.fixture
def judge_server() -> Iterator[tuple[ModelServer, ScriptedJudge]]:
    judge = ScriptedJudge()
    behaviours = {**model_behaviours(), "judge-up": Behaviour(judge)}
    with ModelServer(behaviours) as running:
        yield running, judge


def judgments(engine: Engine) -> dict[tuple[int, str], Judgment]:
    """Return each judgment by (question number, model)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Judgment, EvalResult.model, BenchmarkCase.messages)
            .join(EvalResult, col(EvalResult.id) == col(Judgment.result_id))
            .join(BenchmarkCase, col(BenchmarkCase.id) == col(Judgment.case_id))
        ).all()
    return {
        (question_number(list(messages)), model): judgment for judgment, model, messages in rows
    }


async def test_llm_judge_scores_outputs(
    judge_server: tuple[ModelServer, ScriptedJudge], engine: Engine, sqlite_url: str
) -> None:
    server, _ = judge_server
    add_cases(engine, 8, expected=False, checks=False)
    config = eval_config(server.base_url, sqlite_url, judge="llm")
    summary = await evaluate(engine, config)
    verdicts = judgments(engine)

    assert verdicts[(0, "strong")].score == 9
    assert verdicts[(1, "weak")].score == 4
    assert verdicts[(2, "strong")].score == 9
    assert verdicts[(4, "strong")].score == 9
    assert all(verdicts[(n, "strong")].passed for n in (0, 1, 2, 4, 6, 7))
    assert verdicts[(1, "weak")].passed is False
    strong, weak = by_model(summary)["strong"], by_model(summary)["weak"]
    assert strong.quality.mean == 9.0
    assert weak.quality.mean == pytest.approx((9 * 4 + 4 * 2) / 6)
    assert strong.judge_errors == weak.judge_errors == 2


async def test_llm_judge_bad_replies_become_errors(
    judge_server: tuple[ModelServer, ScriptedJudge], engine: Engine, sqlite_url: str
) -> None:
    server, judge = judge_server
    add_cases(engine, 8, expected=False, checks=False)
    await evaluate(engine, eval_config(server.base_url, sqlite_url, judge="llm", judge_retries=2))
    verdicts = judgments(engine)

    for number in (3, 5):
        for model in ("strong", "weak"):
            verdict = verdicts[(number, model)]
            assert verdict.score is None
            assert verdict.passed is None
            assert verdict.error is not None
            assert "gave up after 3 attempts" in verdict.error
    assert "no JSON object" in (verdicts[(3, "strong")].error or "")
    assert "no 'score' key" in (verdicts[(5, "strong")].error or "")
    assert judge.attempts[(3, "answer 3")] == 3
    assert judge.attempts[(4, "answer 4")] == 2
    assert verdicts[(4, "strong")].error is None


async def test_llm_judge_uses_reference_answers(
    judge_server: tuple[ModelServer, ScriptedJudge], engine: Engine, sqlite_url: str
) -> None:
    server, _ = judge_server
    add_cases(engine, 4, expected=False, checks=False)
    await evaluate(engine, eval_config(server.base_url, sqlite_url, judge="llm"))

    with Session(engine) as session:
        cases = session.exec(select(BenchmarkCase).order_by(col(BenchmarkCase.id))).all()
    assert [case.expected for case in cases] == [f"answer {n}" for n in range(4)]
    assert {case.expected_model for case in cases} == {"strong"}
    assert len(server.calls_to("strong-up")) == 4


async def test_llm_judge_asks_missing_reference(
    judge_server: tuple[ModelServer, ScriptedJudge], engine: Engine, sqlite_url: str
) -> None:
    server, _ = judge_server
    add_cases(engine, 4, expected=False, checks=False)
    config = eval_config(server.base_url, sqlite_url, judge="llm")
    summary = await evaluate(engine, config, models=["weak"])

    assert len(server.calls_to("strong-up")) == 4
    with Session(engine) as session:
        expected = session.exec(select(BenchmarkCase.expected)).all()
    assert sorted(text or "" for text in expected) == [f"answer {n}" for n in range(4)]
    judge_cost = len(server.calls_to("judge-up")) * JUDGE_CALL_USD
    assert summary.report.spent_usd == pytest.approx(
        4 * STRONG_CALL_USD + 4 * WEAK_CALL_USD + judge_cost
    )

    await evaluate(engine, config, models=["weak"])
    assert len(server.calls_to("strong-up")) == 4


async def test_llm_judge_same_output_judged_once(
    judge_server: tuple[ModelServer, ScriptedJudge], engine: Engine, sqlite_url: str
) -> None:
    server, judge = judge_server
    add_cases(engine, 2, expected=False, checks=False)
    summary = await evaluate(engine, eval_config(server.base_url, sqlite_url, judge="llm"))

    # Question 0: both models answer "answer 0", one judgment. Question 1: two outputs.
    assert judge.attempts[(0, "answer 0")] == 1
    assert summary.judge_calls == 3
    assert len(server.calls_to("judge-up")) == 3
    verdicts = judgments(engine)
    assert verdicts[(0, "strong")].score == verdicts[(0, "weak")].score == 9


async def test_llm_judge_capped_by_failed_checks(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    server.behaviours["judge-up"] = Behaviour(lambda _: '{"score": 9, "reason": "fine"}')
    add_cases(engine, 2)
    await evaluate(engine, eval_config(server.base_url, sqlite_url, judge="llm"))
    verdicts = judgments(engine)

    assert verdicts[(1, "strong")].score == 9
    assert verdicts[(1, "weak")].score == 3
    assert verdicts[(1, "weak")].passed is False
    assert "capped" in (verdicts[(1, "weak")].reason or "")


# ---------------------------------------------------------------------------
# Reuse, budget, recorded judge, rate limits
# ---------------------------------------------------------------------------


async def test_second_run_reuses_fresh_results(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    server.behaviours["judge-up"] = Behaviour(lambda _: '{"score": 8, "reason": "fine"}')
    add_cases(engine, 6, expected=False)
    config = eval_config(server.base_url, sqlite_url, judge="llm")
    first = await evaluate(engine, config)
    calls_before = len(server.calls)

    second = await evaluate(engine, config)

    assert len(server.calls) == calls_before
    assert second.run_id != first.run_id
    assert second.calls == second.judge_calls == 0
    assert second.reused == 12
    assert second.report.spent_usd == 0.0
    assert {row.status for row in results(engine, second.run_id)} == {"reused"}
    for before, after in zip(first.report.aggregates, second.report.aggregates, strict=True):
        assert after.reused == after.cases
        assert after.scores == before.scores
        assert after.cost_per_request_usd == pytest.approx(before.cost_per_request_usd)


async def test_stale_results_are_called_again(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    add_cases(engine, 3)
    config = eval_config(server.base_url, sqlite_url, freshness_hours=0)
    await evaluate(engine, config)
    second = await evaluate(engine, config)

    assert second.reused == 0
    assert second.calls == 6
    assert len(server.calls) == 12


async def test_budget_stops_run(server: ModelServer, engine: Engine, sqlite_url: str) -> None:
    add_cases(engine, CASES)
    budget = 3 * STRONG_CALL_USD
    config = eval_config(server.base_url, sqlite_url, concurrency=4)
    summary = await evaluate(engine, config, budget_usd=budget)

    assert summary.status == "budget_exhausted"
    assert 0 < summary.report.spent_usd <= budget + STRONG_CALL_USD
    assert summary.calls < 2 * CASES
    assert summary.report.message is not None
    assert "budget" in summary.report.message
    assert summary.report.budget_usd == budget
    spent = sum(row.cost_usd for row in results(engine, summary.run_id))
    assert spent == pytest.approx(summary.report.spent_usd)


async def test_budget_counts_judge_calls(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    server.behaviours["judge-up"] = Behaviour(lambda _: '{"score": 8, "reason": "fine"}')
    add_cases(engine, 4)
    candidates_usd = 4 * (STRONG_CALL_USD + WEAK_CALL_USD)
    budget = candidates_usd + 2.5 * JUDGE_CALL_USD
    config = eval_config(server.base_url, sqlite_url, judge="llm", concurrency=1)
    summary = await evaluate(engine, config, budget_usd=budget)

    assert summary.status == "budget_exhausted"
    assert summary.judge_calls == 2
    assert summary.report.spent_usd == pytest.approx(candidates_usd + 2 * JUDGE_CALL_USD)


async def test_recorded_judge_scores_measured_calls(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    def recorded(number: int) -> dict[str, float]:
        scores = {"strong": 9.0, "weak": 4.0 + number}
        return scores if number != 2 else {"strong": 8.0}

    add_cases(engine, 4, checks=False, scores=recorded)
    summary = await evaluate(engine, eval_config(server.base_url, sqlite_url, judge="recorded"))
    strong, weak = by_model(summary)["strong"], by_model(summary)["weak"]

    assert pair_counts(server, ("strong-up", "weak-up")).total() == 8
    assert summary.status == "completed"
    assert summary.calls == 8
    assert summary.judge_calls == 0
    assert strong.scores == (9.0, 9.0, 8.0, 9.0)
    assert weak.scores[:2] == (4.0, 5.0)
    assert weak.scores[3] == 7.0
    assert weak.judge_errors == 1
    assert weak.pass_rate == pytest.approx(1 / 3)
    assert strong.cost_per_request_usd == pytest.approx(STRONG_CALL_USD)
    assert weak.cost_per_request_usd == pytest.approx(WEAK_CALL_USD)
    assert strong.latency_p50_ms is not None
    assert summary.report.spent_usd == pytest.approx(4 * (STRONG_CALL_USD + WEAK_CALL_USD))


async def test_rate_limited_call_is_retried(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    add_cases(engine, 1)
    server.fail_next("weak-up", [429, 429])
    summary = await evaluate(
        engine, eval_config(server.base_url, sqlite_url), rate_limit_backoff_seconds=0.01
    )

    assert [call.status for call in server.calls_to("weak-up")] == [429, 429, 200]
    assert by_model(summary)["weak"].errors == 0


async def test_rate_limit_gives_up_after_retries(
    server: ModelServer, engine: Engine, sqlite_url: str
) -> None:
    add_cases(engine, 1)
    server.fail_next("weak-up", [429] * 10)
    summary = await evaluate(
        engine,
        eval_config(server.base_url, sqlite_url),
        rate_limit_retries=2,
        rate_limit_backoff_seconds=0.01,
    )
    weak = by_model(summary)["weak"]

    assert len(server.calls_to("weak-up")) == 3
    assert weak.errors == 1
    assert weak.error_rate == 1.0
    assert weak.quality.cases == 0
    rows = [row for row in results(engine, summary.run_id) if row.model == "weak"]
    assert rows[0].status == "error"
    assert "Rate limited" in (rows[0].error or "")


# ---------------------------------------------------------------------------
# A run left "running" by a dead process
# ---------------------------------------------------------------------------


async def test_dead_run_is_continued(server: ModelServer, engine: Engine, sqlite_url: str) -> None:
    ids = add_cases(engine, 3)
    dead = run_store.create_run(
        engine,
        policy=POLICY,
        trigger="cli",
        models=["strong", "weak"],
        case_ids=ids,
        budget_usd=1.0,
    )
    assert dead.id is not None
    run_store.insert_pending(engine, dead.id, ids[0], "strong")

    summary = await evaluate(engine, eval_config(server.base_url, sqlite_url))
    strong = by_model(summary)["strong"]

    assert summary.run_id == dead.id
    assert summary.resumed
    assert summary.interrupted == 1
    assert summary.status == "completed"
    assert ("strong-up", "question 0") not in pair_counts(server, ("strong-up",))
    assert len(server.calls) == 5
    assert strong.interrupted == 1
    assert strong.cases == 2
    assert summary.report.budget_usd == 1.0


# ---------------------------------------------------------------------------
# Errors before a run starts
# ---------------------------------------------------------------------------


async def test_unknown_policy_rejected(engine: Engine, sqlite_url: str) -> None:
    loaded = load(eval_config("http://127.0.0.1:9/v1", sqlite_url))
    async with gateway_caller(loaded) as caller:
        with pytest.raises(UnknownPolicyError, match="'nope' is not in the configuration"):
            await run_evaluation(engine, loaded, caller, "nope")


async def test_unknown_model_rejected(engine: Engine, sqlite_url: str) -> None:
    loaded = load(eval_config("http://127.0.0.1:9/v1", sqlite_url))
    async with gateway_caller(loaded) as caller:
        with pytest.raises(UnknownModelError, match="'judge' is not a candidate"):
            await run_evaluation(engine, loaded, caller, POLICY, models=["weak", "judge"])


async def test_policy_without_cases_rejected(engine: Engine, sqlite_url: str) -> None:
    loaded = load(eval_config("http://127.0.0.1:9/v1", sqlite_url))
    async with gateway_caller(loaded) as caller:
        with pytest.raises(NoCasesError, match="policy qa has no cases"):
            await run_evaluation(engine, loaded, caller, POLICY)
    with Session(engine) as session:
        assert session.exec(select(EvalRun)).all() == []
