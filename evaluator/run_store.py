"""Database reads and writes of evaluation runs: runs, results, expected outputs, judgments.

Every function opens its own short transaction and commits before it returns, so a process
that dies loses at most the calls in flight. The functions are synchronous, and the runner
calls them from one worker thread, off its event loop.

Times are timezone-aware UTC datetimes, which sqlmodel's datetime columns require.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Update, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evaluator.aggregate import ScoredResult
from evaluator.calls import CallResult
from evaluator.judges import Verdict, output_hash
from evaluator.tables import BenchmarkCase, EvalResult, EvalRun, Judgment

# Runs whose results may be reused: they ended normally, though a budget stop left some
# pairs out. A failed run ended on an unexpected error, so its rows are not trusted.
FINISHED_STATUSES = ("completed", "budget_exhausted")
SCORABLE_STATUSES = ("ok", "reused")

Pair = tuple[int, str]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JudgmentRow:
    """A verdict to store for one result."""

    result_id: int
    case_id: int
    output_hash: str
    judge: str
    rubric_version: str
    verdict: Verdict


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def running_run(engine: Engine, policy: str) -> EvalRun | None:
    """Return the policy's newest run whose status is still "running", if any."""
    with Session(engine) as session:
        statement = (
            select(EvalRun)
            .where(EvalRun.policy == policy, EvalRun.status == "running")
            .order_by(col(EvalRun.id).desc())
        )
        return session.exec(statement).first()


def create_run(
    engine: Engine,
    *,
    policy: str,
    trigger: str,
    models: list[str],
    case_ids: list[int],
    budget_usd: float,
) -> EvalRun:
    """Insert a run with status "running" and return it with its id."""
    run = EvalRun(
        policy=policy,
        status="running",
        trigger=trigger,
        models=models,
        case_ids=case_ids,
        budget_usd=budget_usd,
        started_at=utc_now(),
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(run)
        session.commit()
    return run


def get_run(engine: Engine, run_id: int) -> EvalRun | None:
    with Session(engine) as session:
        return session.get(EvalRun, run_id)


def latest_run(engine: Engine, policy: str | None) -> EvalRun | None:
    """Return the newest run of `policy`, or of any policy when it is None."""
    with Session(engine) as session:
        statement = select(EvalRun).order_by(col(EvalRun.id).desc())
        if policy is not None:
            statement = statement.where(EvalRun.policy == policy)
        return session.exec(statement).first()


def set_spent(engine: Engine, run_id: int, spent_usd: float) -> None:
    with engine.begin() as connection:
        connection.execute(_spent(run_id, spent_usd))


def finish_run(
    engine: Engine, run_id: int, status: str, spent_usd: float, message: str | None
) -> None:
    """Store the run's final status, spend and message (why it stopped early, if it did)."""
    with engine.begin() as connection:
        connection.execute(
            update(EvalRun)
            .where(col(EvalRun.id) == run_id)
            .values(status=status, spent_usd=spent_usd, finished_at=utc_now(), error=message)
        )


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


def policy_case_ids(
    engine: Engine, policy: str, limit: int | None, needs: str | None = None
) -> tuple[list[int], int]:
    """Return the ids of the policy's cases in id order (the first `limit` when given), and
    how many cases were left out because their field `needs` ("checks" or "scores") is empty.
    """
    with Session(engine) as session:
        statement = select(BenchmarkCase.id, *_needed_columns(needs)).where(
            BenchmarkCase.policy == policy
        )
        rows = session.execute(statement.order_by(col(BenchmarkCase.id))).all()
    ids = [row[0] for row in rows if row[0] is not None and (needs is None or row[1])]
    left_out = len(rows) - len(ids)
    return (ids if limit is None else ids[:limit]), left_out


def _needed_columns(needs: str | None) -> list[Any]:
    if needs is None:
        return []
    return [getattr(BenchmarkCase, needs)]


def load_cases(engine: Engine, case_ids: Collection[int]) -> dict[int, BenchmarkCase]:
    """Load cases by id. A case deleted since the run started is missing from the result."""
    with Session(engine) as session:
        statement = select(BenchmarkCase).where(col(BenchmarkCase.id).in_(list(case_ids)))
        return {case.id: case for case in session.exec(statement).all() if case.id is not None}


def save_expected(
    engine: Engine, case_id: int, expected: str, model: str, run_id: int, spent_usd: float
) -> None:
    """Store the reference model's output as the case's expected output, and the run's spend."""
    with engine.begin() as connection:
        connection.execute(
            update(BenchmarkCase)
            .where(col(BenchmarkCase.id) == case_id)
            .values(expected=expected, expected_model=model)
        )
        connection.execute(_spent(run_id, spent_usd))


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def interrupt_pending(engine: Engine, run_id: int) -> int:
    """Mark the run's pending results "interrupted" and return how many there were.

    A pending result was inserted just before its call, so the call may have been made and
    billed. It is never made again, and the statistics leave it out.
    """
    with engine.begin() as connection:
        outcome = connection.execute(
            update(EvalResult)
            .where(col(EvalResult.run_id) == run_id, col(EvalResult.status) == "pending")
            .values(
                status="interrupted",
                error="the evaluation process stopped during this call",
            )
        )
        return int(outcome.rowcount)


def result_pairs(engine: Engine, run_id: int) -> set[Pair]:
    """Return the (case id, model) pairs that already have a result row in the run."""
    with Session(engine) as session:
        statement = select(EvalResult.case_id, EvalResult.model).where(EvalResult.run_id == run_id)
        return {(case_id, model) for case_id, model in session.exec(statement).all()}


def measured_costs(engine: Engine, run_id: int) -> dict[str, list[float]]:
    """Return the cost of every measured call of the run, by model, to seed cost estimates."""
    with Session(engine) as session:
        statement = select(EvalResult.model, EvalResult.cost_usd).where(
            EvalResult.run_id == run_id,
            col(EvalResult.status).in_(("ok", "error", "reused")),
            col(EvalResult.latency_ms).is_not(None),
        )
        costs: dict[str, list[float]] = {}
        for model, cost in session.exec(statement).all():
            costs.setdefault(model, []).append(cost)
        return costs


def fresh_results(
    engine: Engine, *, policy: str, run_id: int, pairs: Collection[Pair], since: datetime
) -> dict[Pair, EvalResult]:
    """Find, for each pair, the newest successful result of an earlier finished run.

    Only results made at or after `since` count. A reused result keeps the time of the call
    it copies, so copying it again does not make it look fresher.
    """
    # NOTE: a result does not store its case's content hash, so only the case id is compared.
    # A case edited in place, keeping its id, counts as unchanged until its results age out.
    if not pairs:
        return {}
    case_ids = sorted({case_id for case_id, _ in pairs})
    models = sorted({model for _, model in pairs})
    with Session(engine) as session:
        statement = (
            select(EvalResult)
            .join(EvalRun, col(EvalRun.id) == col(EvalResult.run_id))
            .where(
                EvalRun.policy == policy,
                col(EvalRun.status).in_(FINISHED_STATUSES),
                col(EvalRun.id) != run_id,
                col(EvalResult.status).in_(SCORABLE_STATUSES),
                col(EvalResult.created_at) >= since,
                col(EvalResult.case_id).in_(case_ids),
                col(EvalResult.model).in_(models),
            )
            .order_by(col(EvalResult.created_at).desc(), col(EvalResult.id).desc())
        )
        found: dict[Pair, EvalResult] = {}
        wanted = set(pairs)
        for result in session.exec(statement).all():
            pair = (result.case_id, result.model)
            if pair in wanted and pair not in found:
                found[pair] = result
        return found


def insert_reused(engine: Engine, run_id: int, sources: Iterable[EvalResult]) -> int:
    """Copy results of earlier runs into the run with status "reused"; return how many."""
    rows = [
        {
            "run_id": run_id,
            "case_id": source.case_id,
            "model": source.model,
            "status": "reused",
            "output": source.output,
            "output_hash": source.output_hash,
            "prompt_tokens": source.prompt_tokens,
            "completion_tokens": source.completion_tokens,
            "cost_usd": source.cost_usd,
            "latency_ms": source.latency_ms,
            "ttft_ms": source.ttft_ms,
            "created_at": source.created_at,
        }
        for source in sources
    ]
    return _insert_results(engine, rows)


def insert_pending(engine: Engine, run_id: int, case_id: int, model: str) -> int:
    """Insert the "pending" result of a call about to be made and return its id."""
    statement = (
        insert(EvalResult)
        .values(run_id=run_id, case_id=case_id, model=model, status="pending", created_at=utc_now())
        .returning(col(EvalResult.id))
    )
    with engine.begin() as connection:
        result_id = connection.execute(statement).scalar_one()
    assert result_id is not None  # a primary key is never NULL
    return result_id


def complete_result(
    engine: Engine, result_id: int, call: CallResult, run_id: int, spent_usd: float
) -> None:
    """Store a call's outcome on its pending result and the run's new spend, in one commit."""
    values = {
        "status": "ok" if call.error is None else "error",
        "output": call.output,
        "output_hash": None if call.output is None else output_hash(call.output),
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "cost_usd": call.cost_usd,
        "latency_ms": call.latency_ms,
        "ttft_ms": call.ttft_ms,
        "error": call.error,
        "created_at": utc_now(),
    }
    with engine.begin() as connection:
        connection.execute(update(EvalResult).where(col(EvalResult.id) == result_id).values(values))
        connection.execute(_spent(run_id, spent_usd))


def run_outputs(engine: Engine, run_id: int, model: str) -> dict[int, str]:
    """Return the model's non-empty outputs in the run by case id, from successful results."""
    with Session(engine) as session:
        statement = select(EvalResult.case_id, EvalResult.output).where(
            EvalResult.run_id == run_id,
            EvalResult.model == model,
            col(EvalResult.status).in_(SCORABLE_STATUSES),
        )
        return {case_id: output for case_id, output in session.exec(statement).all() if output}


def _spent(run_id: int, spent_usd: float) -> Update:
    return update(EvalRun).where(col(EvalRun.id) == run_id).values(spent_usd=spent_usd)


def _insert_results(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    if not rows:
        return 0
    with engine.begin() as connection:
        connection.execute(insert(EvalResult), rows)
    return len(rows)


# ---------------------------------------------------------------------------
# Judgments
# ---------------------------------------------------------------------------


def results_to_judge(engine: Engine, run_id: int) -> list[EvalResult]:
    """Return the run's successful results that have no judgment yet, in case order."""
    judged = select(Judgment.result_id)
    with Session(engine) as session:
        statement = (
            select(EvalResult)
            .where(
                EvalResult.run_id == run_id,
                col(EvalResult.status).in_(SCORABLE_STATUSES),
                col(EvalResult.id).not_in(judged),
            )
            .order_by(col(EvalResult.case_id), col(EvalResult.model))
        )
        return list(session.exec(statement).all())


def cached_judgments(
    engine: Engine, case_ids: Collection[int], judge: str, rubric_version: str
) -> dict[tuple[int, str], Judgment]:
    """Return the newest scored judgment per (case id, output hash) of this judge and rubric.

    Judge errors are not cached, so an output whose judging failed is judged again next time.
    """
    if not case_ids:
        return {}
    with Session(engine) as session:
        statement = (
            select(Judgment)
            .where(
                col(Judgment.case_id).in_(list(case_ids)),
                Judgment.judge == judge,
                Judgment.rubric_version == rubric_version,
                col(Judgment.score).is_not(None),
            )
            .order_by(col(Judgment.id).desc())
        )
        cached: dict[tuple[int, str], Judgment] = {}
        for judgment in session.exec(statement).all():
            cached.setdefault((judgment.case_id, judgment.output_hash), judgment)
        return cached


def save_judgments(engine: Engine, rows: list[JudgmentRow], run_id: int, spent_usd: float) -> None:
    """Store verdicts and the run's new spend in one commit."""
    now = utc_now()
    values = [
        {
            "result_id": row.result_id,
            "case_id": row.case_id,
            "output_hash": row.output_hash,
            "judge": row.judge,
            "rubric_version": row.rubric_version,
            "score": row.verdict.score,
            "passed": row.verdict.passed,
            "reason": row.verdict.reason,
            "error": row.verdict.error,
            "cost_usd": row.verdict.cost_usd,
            "created_at": now,
        }
        for row in rows
    ]
    with engine.begin() as connection:
        if values:
            connection.execute(insert(Judgment), values)
        connection.execute(_spent(run_id, spent_usd))


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def scored_results(engine: Engine, run_id: int) -> list[ScoredResult]:
    """Return every result of the run joined with its newest judgment, if it has one."""
    with Session(engine) as session:
        results = session.exec(select(EvalResult).where(EvalResult.run_id == run_id)).all()
        ids = [result.id for result in results]
        statement = (
            select(Judgment).where(col(Judgment.result_id).in_(ids)).order_by(col(Judgment.id))
        )
        judgments = {judgment.result_id: judgment for judgment in session.exec(statement).all()}

    scored = []
    for result in results:
        judgment = judgments.get(result.id) if result.id is not None else None
        scored.append(
            ScoredResult(
                case_id=result.case_id,
                model=result.model,
                status=result.status,
                cost_usd=result.cost_usd,
                latency_ms=result.latency_ms,
                ttft_ms=result.ttft_ms,
                score=judgment.score if judgment else None,
                passed=judgment.passed if judgment else None,
                judge_error=judgment.error if judgment else None,
            )
        )
    return scored
