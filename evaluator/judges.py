"""Judges: what turns one candidate output into a score from 1 to 10.

- `LlmJudge` sends the rubric prompt of `evaluator.judge_reply` to the configured judge model
  at temperature 0. A reply without a usable score is requested again up to `retries` times,
  and then becomes a judge error, never a score. When the case also has checks, a failed check caps
  the score (`cap_judge_score`). An output passes with a score of at least `LLM_PASS_SCORE`.
- `ChecksJudge` runs the case's deterministic checks. It scores 10 when all pass and 1
  otherwise, and the output passes when every check passes. A case without checks gets a
  judge error.
- `RecordedJudge` reads the grade stored on the case for the model (`BenchmarkCase.scores`),
  for replaying published results. It makes no model call of its own and ignores the output,
  and an output passes with a recorded score of at least `LLM_PASS_SCORE`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from evaluator.calls import ModelCaller
from evaluator.checks import (
    Check,
    CheckReport,
    CheckSpecError,
    cap_judge_score,
    parse_checks,
    run_checks,
)
from evaluator.judge_reply import (
    MAX_SCORE,
    MIN_SCORE,
    RUBRIC_VERSION,
    JudgeReplyError,
    build_judge_messages,
    parse_judge_reply,
)
from evaluator.tables import BenchmarkCase

# The rubric's 7-8 band is "correct, with minor omissions", the lowest band that is correct.
LLM_PASS_SCORE = 7.0

CHECKS_RUBRIC_VERSION = "checks-1"
RECORDED_RUBRIC_VERSION = "recorded-1"


@dataclass(frozen=True)
class Verdict:
    """A judge's score from 1 to 10 and whether the output passes, or the error that stopped it.

    `cost_usd` is what the judge's own model calls cost, retries included.
    """

    score: float | None
    passed: bool | None
    reason: str | None = None
    error: str | None = None
    cost_usd: float = 0.0


class Judge(Protocol):
    """Grade one output of `model` on `case`. `output` is None for a result stored without one."""

    @property
    def name(self) -> str:
        """The judge as stored in `Judgment.judge`: "llm:<model>", "checks" or "recorded"."""
        ...

    @property
    def rubric_version(self) -> str: ...

    @property
    def calls_models(self) -> bool:
        """Whether judging costs a model call, so it needs the budget and may be cached."""
        ...

    async def judge(self, case: BenchmarkCase, model: str, output: str | None) -> Verdict: ...


def output_hash(output: str | None) -> str:
    """Hash an output for the judgment cache. No output hashes as ""."""
    if output is None:
        return ""
    return hashlib.sha256(output.encode("utf-8")).hexdigest()


class LlmJudge:
    """Grade outputs with an LLM and the rubric prompt, retrying unusable replies."""

    rubric_version = RUBRIC_VERSION
    calls_models = True

    def __init__(self, caller: ModelCaller, judge_model: str, retries: int) -> None:
        self._caller = caller
        self._model = judge_model
        self._retries = retries

    @property
    def name(self) -> str:
        return f"llm:{self._model}"

    async def judge(self, case: BenchmarkCase, model: str, output: str | None) -> Verdict:
        try:
            checks = _case_checks(case)
        except CheckSpecError as exc:
            return Verdict(None, None, error=f"the case's checks are invalid: {exc}")

        messages = build_judge_messages(
            case.messages, case.expected or None, case.criteria, output or ""
        )
        cost = 0.0
        problem = ""
        attempts = self._retries + 1
        for _ in range(attempts):
            reply = await self._caller(self._model, messages, {"temperature": 0})
            cost += reply.cost_usd
            if reply.error is not None:
                problem = f"the judge call failed: {reply.error}"
                continue
            try:
                verdict = parse_judge_reply(reply.output or "")
            except JudgeReplyError as exc:
                problem = str(exc)
                continue
            return _capped(verdict.score, verdict.reason, checks, output or "", cost)

        error = f"{problem} (gave up after {attempts} attempts)"
        return Verdict(None, None, error=error, cost_usd=cost)


class ChecksJudge:
    """Grade outputs with the case's deterministic checks."""

    name = "checks"
    rubric_version = CHECKS_RUBRIC_VERSION
    calls_models = False

    async def judge(self, case: BenchmarkCase, model: str, output: str | None) -> Verdict:
        return judge_with_checks(case, output or "")


class RecordedJudge:
    """Read the score recorded on the case for the model. Nothing is called."""

    name = "recorded"
    rubric_version = RECORDED_RUBRIC_VERSION
    calls_models = False

    async def judge(self, case: BenchmarkCase, model: str, output: str | None) -> Verdict:
        return recorded_verdict(case, model)


def judge_with_checks(case: BenchmarkCase, output: str) -> Verdict:
    """Run the case's checks on `output`: 10 and passed when all pass, else 1 and failed."""
    try:
        checks = _case_checks(case)
    except CheckSpecError as exc:
        return Verdict(None, None, error=f"the case's checks are invalid: {exc}")
    if not checks:
        return Verdict(None, None, error="case has no checks")

    report = run_checks(checks, output)
    return Verdict(float(report.score), report.passed, reason=_describe_report(report))


def recorded_verdict(case: BenchmarkCase, model: str) -> Verdict:
    """Return the score recorded on the case for `model`, or a judge error when it is missing."""
    recorded = (case.scores or {}).get(model)
    if recorded is None:
        return Verdict(None, None, error=f"case has no recorded score for model '{model}'")
    if isinstance(recorded, bool) or not isinstance(recorded, int | float):
        return Verdict(None, None, error=f"recorded score {recorded!r} is not a number")
    score = float(recorded)
    if not MIN_SCORE <= score <= MAX_SCORE:
        return Verdict(
            None,
            None,
            error=f"recorded score {recorded!r} is outside the range {MIN_SCORE}-{MAX_SCORE}",
        )
    return Verdict(score, score >= LLM_PASS_SCORE, reason="recorded score")


def _case_checks(case: BenchmarkCase) -> list[Check]:
    if not case.checks:
        return []
    return parse_checks(case.checks)


def _capped(score: float, reason: str, checks: list[Check], output: str, cost: float) -> Verdict:
    if checks:
        report = run_checks(checks, output)
        capped = cap_judge_score(score, report)
        if capped < score:
            reason = f"{reason} (score capped from {score:g}: {_describe_report(report)})"
        score = capped
    return Verdict(score, score >= LLM_PASS_SCORE, reason=reason, cost_usd=cost)


def _describe_report(report: CheckReport) -> str:
    if report.passed:
        return f"all {len(report.results)} checks passed"
    failures = "; ".join(f"{r.check_type}: {r.explanation}" for r in report.failures)
    return f"{len(report.failures)} of {len(report.results)} checks failed: {failures}"
