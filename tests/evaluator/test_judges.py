"""Judges: the LLM rubric judge with retries and caps, deterministic checks, recorded scores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from evaluator.calls import CallResult
from evaluator.judges import (
    ChecksJudge,
    LlmJudge,
    RecordedJudge,
    output_hash,
)
from evaluator.tables import BenchmarkCase

VALID = '{"score": 8, "reason": "correct"}'


class FakeCaller:
    """Returns the queued replies in order and records every request."""

    def __init__(self, *replies: str | CallResult, cost_usd: float = 0.001) -> None:
        self.replies = list(replies)
        self.cost_usd = cost_usd
        self.requests: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []

    async def __call__(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> CallResult:
        self.requests.append((model, messages, params))
        reply = self.replies.pop(0)
        if isinstance(reply, CallResult):
            return reply
        return CallResult(model=model, output=reply, cost_usd=self.cost_usd)


def make_case(**fields: Any) -> BenchmarkCase:
    values: dict[str, Any] = {
        "id": 1,
        "policy": "qa",
        "source": "imported",
        "content_hash": "h",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "expected": "4",
        "created_at": datetime.now(UTC),
        **fields,
    }
    return BenchmarkCase(**values)


# ---------------------------------------------------------------------------
# LLM judge
# ---------------------------------------------------------------------------


async def test_llm_judge_reads_score() -> None:
    caller = FakeCaller(VALID)
    verdict = await LlmJudge(caller, "judge", retries=2).judge(make_case(), "m", "4")

    assert verdict.score == 8
    assert verdict.passed is True
    assert verdict.reason == "correct"
    assert verdict.error is None
    assert verdict.cost_usd == pytest.approx(0.001)


async def test_llm_judge_request_shape() -> None:
    caller = FakeCaller(VALID)
    case = make_case(criteria="Answer with a number.")
    await LlmJudge(caller, "judge-model", retries=0).judge(case, "m", "four")
    model, messages, params = caller.requests[0]

    assert model == "judge-model"
    assert params == {"temperature": 0}
    assert "<EXPECTED_OUTPUT" in messages[1]["content"]
    assert "Answer with a number." in messages[1]["content"]
    assert "four" in messages[1]["content"]


async def test_llm_judge_without_expected() -> None:
    caller = FakeCaller(VALID)
    await LlmJudge(caller, "judge", retries=0).judge(make_case(expected=None), "m", "4")

    assert "<EXPECTED_OUTPUT" not in caller.requests[0][1][1]["content"]


@pytest.mark.parametrize("score, passed", [(7, True), (6.5, False), (10, True), (1, False)])
async def test_llm_judge_pass_threshold(score: float, passed: bool) -> None:
    caller = FakeCaller(f'{{"score": {score}, "reason": "r"}}')
    verdict = await LlmJudge(caller, "judge", retries=0).judge(make_case(), "m", "4")

    assert verdict.score == score
    assert verdict.passed is passed


async def test_llm_judge_accepts_fenced_json() -> None:
    caller = FakeCaller(f"My grade:\n```json\n{VALID}\n```")
    verdict = await LlmJudge(caller, "judge", retries=0).judge(make_case(), "m", "4")

    assert verdict.score == 8


@pytest.mark.parametrize(
    "bad_reply, message",
    [
        ("The answer is right. Score: 9", "no JSON object"),
        ('{"score": 11, "reason": "great"}', "outside the allowed range"),
        ('{"score": 0, "reason": "awful"}', "outside the allowed range"),
        ('{"verdict": "good"}', "no 'score' key"),
        ('{"score": "high"}', "is not a number"),
        ("", "empty"),
    ],
)
async def test_llm_judge_bad_reply_is_error(bad_reply: str, message: str) -> None:
    caller = FakeCaller(bad_reply, bad_reply, bad_reply)
    verdict = await LlmJudge(caller, "judge", retries=2).judge(make_case(), "m", "4")

    assert verdict.score is None
    assert verdict.passed is None
    assert verdict.error is not None
    assert message in verdict.error
    assert "gave up after 3 attempts" in verdict.error
    assert len(caller.requests) == 3
    assert verdict.cost_usd == pytest.approx(0.003)


async def test_llm_judge_retry_recovers() -> None:
    caller = FakeCaller('{"score": 42}', VALID)
    verdict = await LlmJudge(caller, "judge", retries=1).judge(make_case(), "m", "4")

    assert verdict.score == 8
    assert len(caller.requests) == 2
    assert verdict.cost_usd == pytest.approx(0.002)


async def test_llm_judge_failed_call_is_error() -> None:
    failure = CallResult(model="judge", output=None, error="upstream timed out", status=408)
    caller = FakeCaller(failure, failure)
    verdict = await LlmJudge(caller, "judge", retries=1).judge(make_case(), "m", "4")

    assert verdict.score is None
    assert verdict.error is not None
    assert "the judge call failed: upstream timed out" in verdict.error


async def test_llm_judge_capped_by_failed_check() -> None:
    caller = FakeCaller('{"score": 9, "reason": "looks right"}')
    case = make_case(checks=[{"type": "contains", "value": "4"}])
    verdict = await LlmJudge(caller, "judge", retries=0).judge(case, "m", "five")

    assert verdict.score == 3
    assert verdict.passed is False
    assert verdict.reason is not None
    assert "capped from 9" in verdict.reason


async def test_llm_judge_passing_checks_keep_score() -> None:
    caller = FakeCaller('{"score": 9, "reason": "looks right"}')
    case = make_case(checks=[{"type": "contains", "value": "4"}])
    verdict = await LlmJudge(caller, "judge", retries=0).judge(case, "m", "it is 4")

    assert verdict.score == 9


async def test_llm_judge_invalid_checks_is_error() -> None:
    caller = FakeCaller(VALID)
    case = make_case(checks=[{"type": "telepathy"}])
    verdict = await LlmJudge(caller, "judge", retries=0).judge(case, "m", "4")

    assert verdict.score is None
    assert verdict.error is not None
    assert "checks are invalid" in verdict.error
    assert caller.requests == []


def test_llm_judge_name() -> None:
    judge = LlmJudge(FakeCaller(), "claude-opus", retries=0)

    assert judge.name == "llm:claude-opus"
    assert judge.calls_models


# ---------------------------------------------------------------------------
# Checks judge
# ---------------------------------------------------------------------------


async def test_checks_judge_pass_scores_ten() -> None:
    case = make_case(checks=[{"type": "contains", "value": "4"}, {"type": "regex", "value": r"\d"}])
    verdict = await ChecksJudge().judge(case, "m", "it is 4")

    assert verdict.score == 10
    assert verdict.passed is True
    assert verdict.reason == "all 2 checks passed"


async def test_checks_judge_fail_scores_one() -> None:
    case = make_case(checks=[{"type": "contains", "value": "4"}, {"type": "regex", "value": r"\d"}])
    verdict = await ChecksJudge().judge(case, "m", "four")

    assert verdict.score == 1
    assert verdict.passed is False
    assert verdict.reason is not None
    assert verdict.reason.startswith("2 of 2 checks failed")


@pytest.mark.parametrize("checks", [None, []])
async def test_checks_judge_needs_checks(checks: list[Any] | None) -> None:
    verdict = await ChecksJudge().judge(make_case(checks=checks), "m", "4")

    assert verdict.score is None
    assert verdict.error == "case has no checks"


async def test_checks_judge_invalid_checks() -> None:
    verdict = await ChecksJudge().judge(
        make_case(checks=[{"type": "regex", "value": "("}]), "m", "4"
    )

    assert verdict.score is None
    assert verdict.error is not None
    assert "invalid regular expression" in verdict.error


# ---------------------------------------------------------------------------
# Recorded judge
# ---------------------------------------------------------------------------


async def test_recorded_judge_reads_score() -> None:
    case = make_case(scores={"m": 7.5, "other": 2})
    verdict = await RecordedJudge().judge(case, "m", None)

    assert verdict.score == 7.5
    assert verdict.passed is True
    assert verdict.cost_usd == 0.0


@pytest.mark.parametrize(
    "scores, message",
    [
        (None, "no recorded score for model 'm'"),
        ({"other": 9}, "no recorded score for model 'm'"),
        ({"m": 12}, "outside the range"),
        ({"m": "nine"}, "not a number"),
        ({"m": True}, "not a number"),
    ],
)
async def test_recorded_judge_errors(scores: dict[str, Any] | None, message: str) -> None:
    verdict = await RecordedJudge().judge(make_case(scores=scores), "m", None)

    assert verdict.score is None
    assert verdict.error is not None
    assert message in verdict.error


def test_output_hash() -> None:
    assert output_hash(None) == ""
    assert output_hash("a") == output_hash("a")
    assert output_hash("a") != output_hash("b")
    assert len(output_hash("a")) == 64
