"""Database tables of the gateway (sqlmodel; SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class RequestLog(SQLModel, table=True):
    """One row per request the gateway answered, written in batches off the request path."""

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
