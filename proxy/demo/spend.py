"""Spend of the demo's traffic before and after the switch, read from the request log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from proxy.tables import RequestLog

SECONDS_PER_MONTH = 30 * 24 * 3600


@dataclass(frozen=True)
class PhaseSpend:
    """Successful requests of a policy served under one route, and what they cost."""

    requests: int
    total_usd: float
    served: dict[str, int]

    @property
    def per_request_usd(self) -> float:
        return self.total_usd / self.requests if self.requests else 0.0


def phase_spend(engine: Engine, policy: str, decision_id: int | None) -> PhaseSpend:
    """Spend of the policy's successful requests routed by `decision_id` (None: no decision)."""
    query = select(RequestLog.served_model, RequestLog.cost_usd).where(
        RequestLog.policy == policy, RequestLog.status == 200
    )
    if decision_id is None:
        query = query.where(col(RequestLog.decision_id).is_(None))
    else:
        query = query.where(RequestLog.decision_id == decision_id)
    with Session(engine) as session:
        rows = session.exec(query).all()
    served = Counter(model or "unknown" for model, _cost in rows)
    return PhaseSpend(len(rows), sum(cost for _model, cost in rows), dict(served))


def monthly_savings(before: PhaseSpend, after: PhaseSpend, requests_per_second: float) -> float:
    """Savings over 30 days at `requests_per_second`, from the per-request costs of both phases."""
    saved_per_request = before.per_request_usd - after.per_request_usd
    return saved_per_request * requests_per_second * SECONDS_PER_MONTH


def saved_share(before: PhaseSpend, after: PhaseSpend) -> float:
    """Return the share of the per-request cost that the switch saved (0 if nothing was spent)."""
    if before.per_request_usd <= 0:
        return 0.0
    return 1 - after.per_request_usd / before.per_request_usd
