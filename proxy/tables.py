"""Database tables of the gateway (sqlmodel; SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel


class RequestLog(SQLModel, table=True):
    """One row per request the gateway served, written in batches off the request path."""

    __tablename__ = "request_log"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(index=True, max_length=64)
    created_at: datetime = Field(index=True)
    key_id: str | None = Field(default=None, max_length=64)
    endpoint: str = Field(max_length=32)
    requested_model: str | None = Field(default=None, max_length=256)
    served_model: str | None = Field(default=None, max_length=256)
    upstream: str | None = Field(default=None, max_length=256)
    status: int
    error_type: str | None = Field(default=None, max_length=64)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    retries: int = 0
    fallback_used: bool = False
    policy: str | None = Field(default=None, index=True, max_length=128)
    decision_id: int | None = None


class RoutingDecision(SQLModel, table=True):
    """One stored, explained choice of a policy's model.

    `candidates` is the whole candidate table of the decision (`policies.Decision.to_dict()`).
    `applied` is True when the route table followed it (auto and pinned modes, or an operator's
    pin), as opposed to a recommendation that was only recorded.
    """

    __tablename__ = "routing_decision"

    id: int | None = Field(default=None, primary_key=True)
    policy: str = Field(index=True, max_length=128)
    created_at: datetime = Field(index=True)
    previous_model: str | None = Field(default=None, max_length=256)
    chosen_model: str = Field(max_length=256)
    mode: str = Field(max_length=16)
    source: str = Field(max_length=16)  # "evaluation" or "operator"
    reason: str = Field(sa_column=Column(Text, nullable=False))
    decision: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    run_id: int | None = None
    applied: bool = False
