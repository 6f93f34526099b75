"""Database tables of the evaluator: cases, runs, results and judgments (sqlmodel)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class BenchmarkCase(SQLModel, table=True):
    """One benchmark item of a policy: the conversation, what a good answer is, how to judge it.

    `expected` is the reference model's answer: the one served when the reference model served
    the sampled request, or, when empty, the one the reference model gives the first time the
    case is evaluated. `scores` holds recorded grades per model for the `recorded` judge.
    """

    __tablename__ = "benchmark_case"
    __table_args__ = (UniqueConstraint("policy", "content_hash", name="uq_case_policy_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    policy: str = Field(index=True, max_length=128)
    source: str = Field(max_length=16)  # "sampled" or "imported"
    content_hash: str = Field(max_length=64)
    messages: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    expected: str | None = Field(default=None, sa_column=Column(Text))
    expected_model: str | None = Field(default=None, max_length=256)
    criteria: str | None = Field(default=None, sa_column=Column(Text))
    checks: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    tags: list[str] | None = Field(default=None, sa_column=Column(JSON))
    scores: dict[str, float] | None = Field(default=None, sa_column=Column(JSON))
    request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime


class EvalRun(SQLModel, table=True):
    """One evaluation of a policy's candidates on its cases.

    `status` is "running", "completed", "budget_exhausted" or "failed". A running run whose
    process died is continued by the next run of the same policy.
    """

    __tablename__ = "eval_run"

    id: int | None = Field(default=None, primary_key=True)
    policy: str = Field(index=True, max_length=128)
    status: str = Field(max_length=32)
    trigger: str = Field(max_length=32)  # "cli", "schedule" or "api"
    models: list[str] = Field(sa_column=Column(JSON, nullable=False))
    case_ids: list[int] = Field(sa_column=Column(JSON, nullable=False))
    budget_usd: float
    spent_usd: float = 0.0
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))


class EvalResult(SQLModel, table=True):
    """One candidate's answer to one case in one run.

    `status` is "pending" (inserted just before the call), "ok", "error", "reused" (copied from
    a fresh result of an earlier run) or "interrupted" (pending when its process died: the call
    may have happened, so it is not made again, and the row is left out of the statistics).
    """

    __tablename__ = "eval_result"
    __table_args__ = (UniqueConstraint("run_id", "case_id", "model", name="uq_result_run_case"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True, foreign_key="eval_run.id")
    case_id: int = Field(index=True, foreign_key="benchmark_case.id")
    model: str = Field(max_length=256)
    status: str = Field(max_length=16)
    output: str | None = Field(default=None, sa_column=Column(Text))
    output_hash: str | None = Field(default=None, max_length=64)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime


class Judgment(SQLModel, table=True):
    """A judge's verdict on one output. Cached by (case, output hash, judge, rubric version)."""

    __tablename__ = "judgment"

    id: int | None = Field(default=None, primary_key=True)
    result_id: int = Field(index=True, foreign_key="eval_result.id")
    case_id: int = Field(index=True)
    output_hash: str = Field(max_length=64)
    judge: str = Field(max_length=256)  # "llm:<model>", "checks" or "recorded"
    rubric_version: str = Field(max_length=64)
    score: float | None = None
    passed: bool | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    cost_usd: float = 0.0
    created_at: datetime


class SamplingState(SQLModel, table=True):
    """The case sampler's progress in one policy, kept so that sampling continues after a restart.

    `seen` counts the distinct requests offered to the policy's reservoir so far: the n of
    reservoir sampling, which sets the chance that the next request replaces a stored case.
    Writers of a policy's cases lock this row first, so that replicas and imports take turns.
    """

    __tablename__ = "sampling_state"

    policy: str = Field(primary_key=True, max_length=128)
    seen: int = 0
    updated_at: datetime
