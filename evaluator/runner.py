"""Evaluation runs: call the candidates on a policy's cases, judge the outputs, keep the spend.

`run_evaluation` goes through these steps:

1. Start or continue. A run of the policy still marked "running" belongs to a process that
   died, so it is continued with its own models and cases, and its pending results become
   "interrupted" (never called again). Otherwise a new run fixes its models and case list.
   Under the checks judge, cases without checks are left out (and under the recorded judge,
   cases without recorded scores), with a warning: calling models on them would only buy
   judge errors. A policy with no case left raises `NoCasesError` naming what is missing.
2. Reuse. A pair (case, model) without a result that has a fresh successful result in an
   earlier finished run gets a copy with status "reused" instead of a call.
3. Calls. Every other pair is called, at most `evaluation.concurrency` at a time and within
   the budget (see `evaluator.budget`). A "pending" result is committed before each call and
   completed after it, so a crash never leads to a second call of the same pair. Under the
   LLM judge, a case without an expected output is also sent to the reference model, unless
   the reference model is in the run: then its answer in the run serves.
4. Expected outputs. Cases still without one take the reference model's output in this run.
5. Judging. Each successful result without a judgment is judged. An output already judged
   for the same case, by the same judge and rubric, reuses that verdict without a call.
6. The run ends "completed", or "budget_exhausted" when the budget refused a call.

Under the recorded judge the candidates are called too, because a routing decision needs
their cost, latency and error rate, but each score is the grade recorded on the case for the
model, whatever the output.

NOTE: a run still "running" is assumed to be dead. Two processes evaluating the same policy
at once would take over each other's run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from evaluator import run_store
from evaluator.budget import Budget, Reservation
from evaluator.calls import CallResult, ModelCaller
from evaluator.judges import ChecksJudge, Judge, LlmJudge, RecordedJudge, Verdict, output_hash
from evaluator.rate_limit import DEFAULT_BACKOFF_SECONDS, DEFAULT_RETRIES, RateLimitRetry
from evaluator.report import RunReport, format_usd, load_report
from evaluator.run_errors import (
    EvaluationError,
    NoCasesError,
    UnknownModelError,
    UnknownPolicyError,
)
from evaluator.run_store import JudgmentRow
from evaluator.tables import BenchmarkCase, EvalResult, EvalRun

logger = logging.getLogger(__name__)

T = TypeVar("T")

JUDGE_BUDGET_KEY = "judge"


# ---------------------------------------------------------------------------
# What the runner reads from the configuration (`proxy.config.LoadedConfig` fits)
# ---------------------------------------------------------------------------


class PolicySource(Protocol):
    @property
    def reference(self) -> str: ...
    @property
    def candidates(self) -> Sequence[str]: ...
    @property
    def judge(self) -> str: ...


class EvaluationSource(Protocol):
    @property
    def judge_model(self) -> str | None: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def budget_usd(self) -> float: ...
    @property
    def freshness_hours(self) -> float: ...
    @property
    def judge_retries(self) -> int: ...


class ConfigSource(Protocol):
    @property
    def policies(self) -> Mapping[str, PolicySource]: ...
    @property
    def evaluation(self) -> EvaluationSource: ...


class LoadedConfigSource(Protocol):
    @property
    def config(self) -> ConfigSource: ...


class RunProgress(Protocol):
    """Receives progress: `start` once per phase ("calls", then "judging"), `advance` per item."""

    def start(self, phase: str, total: int) -> None: ...

    def advance(self, phase: str) -> None: ...


@dataclass(frozen=True)
class RunSummary:
    """The report of the run, and what this invocation did to it.

    `calls` counts the model calls made for candidates and expected outputs, and
    `judge_calls` the judgments that needed a model call (retries included in their cost).
    """

    report: RunReport
    resumed: bool
    calls: int
    judge_calls: int
    reused: int
    interrupted: int

    @property
    def run_id(self) -> int:
        return self.report.run_id

    @property
    def status(self) -> str:
        return self.report.status


async def run_evaluation(
    engine: Engine,
    loaded_config: LoadedConfigSource,
    caller: ModelCaller,
    policy: str,
    *,
    models: Sequence[str] | None = None,
    limit: int | None = None,
    budget_usd: float | None = None,
    trigger: str = "schedule",
    progress: RunProgress | None = None,
    rate_limit_retries: int = DEFAULT_RETRIES,
    rate_limit_backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
) -> RunSummary:
    """Evaluate the policy's candidates (or `models`) on its cases, or continue a dead run.

    `limit` keeps the first cases by id. `budget_usd` overrides `evaluation.budget_usd`.
    When a dead run is continued, it keeps its own models, cases and budget. Raises an
    `EvaluationError` for an unknown policy or model, or a policy without cases, and
    ValueError for an empty `models`, a limit below 1 or a budget that is not positive.
    """
    config = loaded_config.config
    spec = config.policies.get(policy)
    if spec is None:
        raise UnknownPolicyError(policy, list(config.policies))
    chosen = _chosen_models(policy, spec, models)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if budget_usd is not None and not (math.isfinite(budget_usd) and budget_usd > 0):
        raise ValueError(f"budget must be a positive number of USD, got {budget_usd}")

    evaluation = config.evaluation
    retrying = RateLimitRetry(caller, rate_limit_retries, rate_limit_backoff_seconds)
    judge = _make_judge(policy, spec.judge, evaluation, retrying)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eval-db") as database:
        run = _Run(engine, database, policy, spec, evaluation, retrying, judge, progress)
        return await run.execute(chosen, limit, budget_usd or evaluation.budget_usd, trigger)


def _chosen_models(policy: str, spec: PolicySource, models: Sequence[str] | None) -> list[str]:
    if models is None:
        return list(spec.candidates)
    chosen = list(dict.fromkeys(models))
    if not chosen:
        raise ValueError("models must name at least one candidate, or be None for all")
    unknown = [model for model in chosen if model not in spec.candidates]
    if unknown:
        raise UnknownModelError(policy, unknown, list(spec.candidates))
    return chosen


def _make_judge(policy: str, kind: str, evaluation: EvaluationSource, caller: ModelCaller) -> Judge:
    if kind == "checks":
        return ChecksJudge()
    if kind == "recorded":
        return RecordedJudge()
    if evaluation.judge_model is None:
        raise EvaluationError(
            f"policy {policy} uses the llm judge, but evaluation.judge_model is not set. "
            "Set it to a model_name from model_list."
        )
    return LlmJudge(caller, evaluation.judge_model, evaluation.judge_retries)


@dataclass(frozen=True)
class _Job:
    """One model call to make: a candidate's output, or the reference's expected output."""

    case: BenchmarkCase
    model: str
    expected_only: bool = False


class _Run:
    """The state of one invocation of `run_evaluation`."""

    def __init__(
        self,
        engine: Engine,
        database: ThreadPoolExecutor,
        policy: str,
        spec: PolicySource,
        evaluation: EvaluationSource,
        caller: ModelCaller,
        judge: Judge,
        progress: RunProgress | None,
    ) -> None:
        self._engine = engine
        self._database = database
        self._policy = policy
        self._spec = spec
        self._evaluation = evaluation
        self._caller = caller
        self._judge = judge
        self._progress = progress
        self._budget = Budget(evaluation.budget_usd)
        self._run_id = 0
        self._cases: dict[int, BenchmarkCase] = {}
        self._not_started = 0
        self.resumed = False
        self.calls = 0
        self.judge_calls = 0
        self.reused = 0
        self.interrupted = 0

    async def _db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a `run_store` function in the database thread."""
        call = functools.partial(function, self._engine, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._database, call)

    async def execute(
        self, models: list[str], limit: int | None, budget_usd: float, trigger: str
    ) -> RunSummary:
        run = await self._start(models, limit, budget_usd, trigger)
        try:
            await self._evaluate(run)
        except Exception as exc:
            await self._fail(exc)
            raise

        report = await self._db(load_report, self._run_id)
        return RunSummary(
            report, self.resumed, self.calls, self.judge_calls, self.reused, self.interrupted
        )

    async def _start(
        self, models: list[str], limit: int | None, budget_usd: float, trigger: str
    ) -> EvalRun:
        run = await self._db(run_store.running_run, self._policy)
        if run is not None:
            assert run.id is not None
            self.resumed = True
            self.interrupted = await self._db(run_store.interrupt_pending, run.id)
            logger.info(
                "continuing evaluation run: run=%d policy=%s interrupted_calls=%d",
                run.id,
                self._policy,
                self.interrupted,
            )
        else:
            needs = _needed_field(self._judge)
            case_ids, left_out = await self._db(
                run_store.policy_case_ids, self._policy, limit, needs
            )
            if not case_ids:
                raise NoCasesError(self._policy, left_out, needs)
            if left_out:
                logger.warning(
                    "evaluation leaves out %d cases without %s: policy=%s "
                    "(attach them with pareto cases annotate)",
                    left_out,
                    needs,
                    self._policy,
                )
            run = await self._db(
                run_store.create_run,
                policy=self._policy,
                trigger=trigger,
                models=models,
                case_ids=case_ids,
                budget_usd=budget_usd,
            )
            assert run.id is not None
            logger.info(
                "evaluation run started: run=%d policy=%s cases=%d models=%s budget_usd=%g",
                run.id,
                self._policy,
                len(case_ids),
                ",".join(models),
                budget_usd,
            )
        self._run_id = run.id
        self._budget = Budget(run.budget_usd, run.spent_usd)
        return run

    async def _evaluate(self, run: EvalRun) -> None:
        self._cases = await self._db(run_store.load_cases, run.case_ids)
        done = await self._db(run_store.result_pairs, self._run_id)
        todo = [
            (case_id, model)
            for case_id in run.case_ids
            if case_id in self._cases
            for model in run.models
            if (case_id, model) not in done
        ]

        todo = await self._reuse(todo)
        for model, costs in (await self._db(run_store.measured_costs, self._run_id)).items():
            self._budget.learn(model, costs)
        await self._call_all(todo, run.models)

        await self._store_expected_from_run(run.models)
        await self._judge_all()
        await self._finish()

    async def _reuse(self, todo: list[run_store.Pair]) -> list[run_store.Pair]:
        hours = self._evaluation.freshness_hours
        if hours <= 0 or not todo:
            return todo
        since = run_store.utc_now() - timedelta(hours=hours)
        fresh = await self._db(
            run_store.fresh_results,
            policy=self._policy,
            run_id=self._run_id,
            pairs=todo,
            since=since,
        )
        self.reused = await self._db(run_store.insert_reused, self._run_id, fresh.values())
        return [pair for pair in todo if pair not in fresh]

    # -- calls ---------------------------------------------------------------

    async def _call_all(self, todo: list[run_store.Pair], models: list[str]) -> None:
        jobs = [_Job(self._cases[case_id], model) for case_id, model in todo]
        jobs.extend(self._expected_jobs(models))
        if self._progress is not None:
            self._progress.start("calls", len(jobs))

        queues: dict[str, deque[_Job]] = {}
        for job in jobs:
            queues.setdefault(job.model, deque()).append(job)
        self._not_started += await self._dispatch(queues, self._call)

    def _expected_jobs(self, models: list[str]) -> list[_Job]:
        """Jobs asking the reference model for missing expected outputs, for the LLM judge.

        None are needed when the reference model is in the run, because its outputs serve.
        """
        reference = self._spec.reference
        if not isinstance(self._judge, LlmJudge) or reference in models:
            return []
        return [
            _Job(case, reference, expected_only=True)
            for case in self._cases.values()
            if not case.expected
        ]

    async def _call(self, job: _Job, reservation: Reservation) -> None:
        case_id = job.case.id
        assert case_id is not None
        result: CallResult | None = None
        try:
            result_id = None
            if not job.expected_only:
                result_id = await self._db(
                    run_store.insert_pending, self._run_id, case_id, job.model
                )
            result = await self._caller(job.model, job.case.messages, {})
        finally:
            self._budget.settle(reservation, result.cost_usd if result else 0.0)

        assert result is not None  # the call returned, since no exception left the block
        self.calls += 1
        spent = self._budget.spent_usd
        if result_id is not None:
            await self._db(run_store.complete_result, result_id, result, self._run_id, spent)
        elif result.error is None and result.output:
            job.case.expected = result.output
            await self._db(
                run_store.save_expected, case_id, result.output, job.model, self._run_id, spent
            )
        else:
            logger.warning(
                "expected output not stored: case=%d model=%s error=%s",
                case_id,
                job.model,
                result.error or "empty answer",
            )
            await self._db(run_store.set_spent, self._run_id, spent)
        if self._progress is not None:
            self._progress.advance("calls")

    async def _dispatch(
        self,
        queues: dict[str, deque[T]],
        work: Callable[[T, Reservation], Coroutine[Any, Any, None]],
    ) -> int:
        """Start jobs while concurrency and budget allow; return how many never started.

        Keys (models, or the judge) take turns so that no model waits behind another's queue.
        A key whose cost is still unknown waits while another key's first call is in flight.
        """
        order = deque(queues)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while any(queues.values()):
                key = self._next_key(queues, order) if len(tasks) < self._concurrency else None
                if key is None:
                    await self._wait_for_one(tasks)
                    continue
                reservation = self._budget.reserve(key)
                if reservation is None:
                    break
                job = queues[key].popleft()
                tasks.add(asyncio.create_task(work(job, reservation)))
            while tasks:
                await self._wait_for_one(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return sum(len(queue) for queue in queues.values())

    @property
    def _concurrency(self) -> int:
        return self._evaluation.concurrency

    def _next_key(self, queues: Mapping[str, deque[Any]], order: deque[str]) -> str | None:
        for _ in range(len(order)):
            key = order[0]
            order.rotate(-1)
            if queues[key] and not self._budget.must_wait(key):
                return key
        return None

    @staticmethod
    async def _wait_for_one(tasks: set[asyncio.Task[None]]) -> None:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        tasks.difference_update(done)
        for task in done:
            task.result()

    # -- expected outputs and judging -----------------------------------------

    async def _store_expected_from_run(self, models: list[str]) -> None:
        reference = self._spec.reference
        missing = [case for case in self._cases.values() if not case.expected]
        if reference not in models or not missing or isinstance(self._judge, RecordedJudge):
            return
        answers = await self._db(run_store.run_outputs, self._run_id, reference)
        for case in missing:
            answer = answers.get(case.id) if case.id is not None else None
            if case.id is None or not answer:
                continue
            case.expected = answer
            await self._db(
                run_store.save_expected,
                case.id,
                answer,
                reference,
                self._run_id,
                self._budget.spent_usd,
            )

    async def _judge_all(self) -> None:
        results = [
            result
            for result in await self._db(run_store.results_to_judge, self._run_id)
            if result.case_id in self._cases
        ]
        if self._progress is not None:
            self._progress.start("judging", len(results))
        if not results:
            return
        if not self._judge.calls_models:
            rows = [await self._judgment(result) for result in results]
            await self._save_judgments(rows)
            return

        cache = await self._db(
            run_store.cached_judgments,
            list(self._cases),
            self._judge.name,
            self._judge.rubric_version,
        )
        groups: dict[tuple[int, str], list[EvalResult]] = {}
        for result in results:
            groups.setdefault((result.case_id, _hash(result)), []).append(result)

        cached_rows = []
        queue: deque[list[EvalResult]] = deque()
        for key, group in groups.items():
            hit = cache.get(key)
            if hit is None:
                queue.append(group)
                continue
            cached_rows.extend(self._rows(group, Verdict(hit.score, hit.passed, hit.reason)))
        await self._save_judgments(cached_rows)
        self._not_started += await self._dispatch({JUDGE_BUDGET_KEY: queue}, self._judge_group)

    async def _judgment(self, result: EvalResult) -> JudgmentRow:
        verdict = await self._judge.judge(self._cases[result.case_id], result.model, result.output)
        return self._rows([result], verdict)[0]

    async def _judge_group(self, group: list[EvalResult], reservation: Reservation) -> None:
        """Judge one output once, and store the verdict for every result that gave it."""
        first = group[0]
        verdict: Verdict | None = None
        try:
            verdict = await self._judge.judge(self._cases[first.case_id], first.model, first.output)
        finally:
            self._budget.settle(reservation, verdict.cost_usd if verdict else 0.0)

        assert verdict is not None  # the judge returned, since no exception left the block
        self.judge_calls += 1
        await self._save_judgments(self._rows(group, verdict))

    def _rows(self, group: list[EvalResult], verdict: Verdict) -> list[JudgmentRow]:
        rows = []
        for index, result in enumerate(group):
            assert result.id is not None
            # The judge's cost belongs to the first result only, so the sum is what was spent.
            paid = (
                verdict
                if index == 0
                else Verdict(verdict.score, verdict.passed, verdict.reason, verdict.error)
            )
            rows.append(
                JudgmentRow(
                    result_id=result.id,
                    case_id=result.case_id,
                    output_hash=_hash(result),
                    judge=self._judge.name,
                    rubric_version=self._judge.rubric_version,
                    verdict=paid,
                )
            )
        return rows

    async def _save_judgments(self, rows: list[JudgmentRow]) -> None:
        if not rows:
            return
        await self._db(run_store.save_judgments, rows, self._run_id, self._budget.spent_usd)
        if self._progress is not None:
            for _ in rows:
                self._progress.advance("judging")

    # -- the end ---------------------------------------------------------------

    async def _finish(self) -> None:
        spent = self._budget.spent_usd
        if not self._budget.exhausted:
            await self._db(run_store.finish_run, self._run_id, "completed", spent, None)
            logger.info("evaluation run completed: run=%d spent_usd=%.6f", self._run_id, spent)
            return

        message = (
            f"The budget of {format_usd(self._budget.limit_usd)} ran out after "
            f"{format_usd(spent)} was spent, "
            f"so {self._not_started} calls were not made. Raise --budget-usd or "
            "evaluation.budget_usd and run again: fresh results of this run will be reused."
        )
        await self._db(run_store.finish_run, self._run_id, "budget_exhausted", spent, message)
        logger.info("evaluation run stopped: run=%d %s", self._run_id, message)

    async def _fail(self, exc: Exception) -> None:
        """Mark the run failed after an unexpected error, and its pending calls interrupted."""
        if isinstance(exc, EvaluationError):
            return
        message = f"The run failed: {type(exc).__name__}: {exc}"
        try:
            await self._db(run_store.interrupt_pending, self._run_id)
            await self._db(
                run_store.finish_run, self._run_id, "failed", self._budget.spent_usd, message
            )
        except SQLAlchemyError as db_error:
            logger.error("cannot mark evaluation run %d failed: %s", self._run_id, db_error)


def _needed_field(judge: Judge) -> str | None:
    """Return the case field a judge cannot score without: checks, scores, or None."""
    if isinstance(judge, ChecksJudge):
        return "checks"
    if isinstance(judge, RecordedJudge):
        return "scores"
    return None


def _hash(result: EvalResult) -> str:
    return result.output_hash or output_hash(result.output)
