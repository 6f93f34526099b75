"""Stored routing decisions: record, pin, release and list them, and estimate what they saved.

Each function runs one short transaction on the engine it is given. The gateway calls them off
the event loop (`asyncio.to_thread`), the CLI calls them directly. A decision is applied when
`RoutingDecision.applied` is true: the route table of every gateway on the database follows the
newest applied decision of each policy (see `proxy.route_sync`).

An operator pin (`pareto route --model`) stays in force until `pareto route --auto` releases it,
so an evaluation decision recorded meanwhile is stored with `applied` false and a reason that
names the pin.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from policies import Decision, Mode
from proxy.policy_config import PolicyConfig
from proxy.route_table import Route
from proxy.tables import RequestLog, RoutingDecision

logger = logging.getLogger(__name__)

SOURCE_EVALUATION = "evaluation"
SOURCE_OPERATOR = "operator"
PINNED_BY_OPERATOR = "pinned by operator"
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000


class DecisionError(Exception):
    """An operator's change to a policy's route cannot be made. The message explains why."""


class AppliedRoute(NamedTuple):
    """The newest applied decision of a policy: the model it routes to and how it was made."""

    model: str
    decision_id: int
    mode: str
    source: str

    @property
    def operator_pin(self) -> bool:
        """Whether an operator pinned this model by hand."""
        return self.source == SOURCE_OPERATOR and self.mode == Mode.PINNED.value


@dataclass(frozen=True)
class StoredDecision:
    """One `routing_decision` row.

    `decision` is the stored `Decision.to_dict()`, or None for an operator's pin or release,
    which has no candidate table.
    """

    id: int
    policy: str
    created_at: datetime
    previous_model: str | None
    chosen_model: str
    mode: str
    source: str
    reason: str
    applied: bool
    run_id: int | None
    decision: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: RoutingDecision) -> StoredDecision:
        assert row.id is not None  # rows read back from the database have an id
        return cls(
            id=row.id,
            policy=row.policy,
            created_at=row.created_at,
            previous_model=row.previous_model,
            chosen_model=row.chosen_model,
            mode=row.mode,
            source=row.source,
            reason=row.reason,
            applied=row.applied,
            run_id=row.run_id,
            decision=row.decision,
        )

    @property
    def operator_pin(self) -> bool:
        """Whether an operator pinned this model by hand."""
        return self.source == SOURCE_OPERATOR and self.mode == Mode.PINNED.value

    @property
    def candidates(self) -> list[dict[str, Any]]:
        """The candidate table (`CandidateRow.to_dict()` rows), empty for an operator's row."""
        if self.decision is None:
            return []
        rows: list[dict[str, Any]] = self.decision.get("candidates", [])
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Return the row as JSON values, with the whole candidate table and settings."""
        evaluation = self.decision or {}
        return {
            "id": self.id,
            "policy": self.policy,
            "created_at": self.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "previous_model": self.previous_model,
            "chosen_model": self.chosen_model,
            "mode": self.mode,
            "source": self.source,
            "applied": self.applied,
            "reason": self.reason,
            "run_id": self.run_id,
            "reference_model": evaluation.get("reference_model"),
            "cheapest_eligible_model": evaluation.get("cheapest_eligible_model"),
            "settings": evaluation.get("settings"),
            "candidates": self.candidates,
        }


def record_decision(
    engine: Engine,
    policy: str,
    decision: Decision,
    *,
    run_id: int | None = None,
    source: str = SOURCE_EVALUATION,
) -> int:
    """Store an evaluation's decision and return its id.

    The decision is applied in auto and pinned modes, whether it changes the route or confirms
    it, unless an operator pin is in force. A recommend-mode decision is only stored.
    """
    with Session(engine) as session:
        current = _latest_applied_row(session, policy)
        reason = decision.reason
        held_by = current if current is not None and _is_operator_pin(current) else None
        if decision.apply and held_by is not None:
            reason += (
                f" Not applied, because an operator pinned {held_by.chosen_model} in decision "
                f"{held_by.id}. `pareto route --auto` releases the pin."
            )
        row = RoutingDecision(
            policy=policy,
            created_at=datetime.now(UTC),
            previous_model=decision.previous_model,
            chosen_model=decision.chosen_model,
            mode=decision.mode.value,
            source=source,
            reason=reason,
            decision=decision.to_dict(),
            run_id=run_id,
            applied=decision.apply and held_by is None,
        )
        return _insert(session, row)


def record_pin(engine: Engine, policy: str, model: str, previous: str | None) -> int:
    """Store an operator's pin of `policy` to `model`, applied at once, and return its id.

    The caller checks that `model` is one of the policy's candidates. `previous` is the model
    the policy routes to before the pin.
    """
    row = RoutingDecision(
        policy=policy,
        created_at=datetime.now(UTC),
        previous_model=previous,
        chosen_model=model,
        mode=Mode.PINNED.value,
        source=SOURCE_OPERATOR,
        reason=PINNED_BY_OPERATOR,
        applied=True,
    )
    with Session(engine) as session:
        return _insert(session, row)


def record_release(engine: Engine, policy: str, config: PolicyConfig) -> int:
    """Release an operator pin and return the id of the decision that records the release.

    The route returns to the model of the newest evaluation decision made in auto or pinned
    mode (applied, or held back by the pin) when that model is still a candidate, and to the
    reference model otherwise. Raises DecisionError when no operator pin is in force or the
    configuration itself pins the policy.
    """
    settings = config.routing()
    if settings.mode is Mode.PINNED:
        raise DecisionError(
            f"Policy {policy!r} is pinned to {settings.pin} in the configuration file, so there "
            "is no operator pin to release. Change its mode there instead."
        )

    with Session(engine) as session:
        current = _latest_applied_row(session, policy)
        if current is None or not _is_operator_pin(current):
            raise DecisionError(
                f"Policy {policy!r} is not pinned by an operator, so there is nothing to release."
            )
        model, why = _release_target(session, policy, config)
        row = RoutingDecision(
            policy=policy,
            created_at=datetime.now(UTC),
            previous_model=current.chosen_model,
            chosen_model=model,
            mode=settings.mode.value,
            source=SOURCE_OPERATOR,
            reason=f"operator released the pin on {current.chosen_model}: {why}",
            applied=True,
        )
        return _insert(session, row)


def latest_applied(engine: Engine) -> dict[str, AppliedRoute]:
    """Return the newest applied decision of every policy that has one, by policy name."""
    newest = (
        select(col(RoutingDecision.policy), func.max(RoutingDecision.id).label("id"))
        .where(col(RoutingDecision.applied))
        .group_by(col(RoutingDecision.policy))
        .subquery()
    )
    query = select(
        col(RoutingDecision.policy),
        col(RoutingDecision.chosen_model),
        col(RoutingDecision.id),
        col(RoutingDecision.mode),
        col(RoutingDecision.source),
    ).join(newest, col(RoutingDecision.id) == newest.c.id)
    with Session(engine) as session:
        rows = session.execute(query).all()
    return {
        policy: AppliedRoute(model, decision_id, mode, source)
        for policy, model, decision_id, mode, source in rows
    }


def list_decisions(
    engine: Engine, policy: str | None = None, limit: int = DEFAULT_LIST_LIMIT
) -> list[StoredDecision]:
    """Return the newest `limit` decisions, of one policy or of all, newest first.

    Raises ValueError when `limit` is not from 1 to MAX_LIST_LIMIT.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"Invalid limit {limit}: expected a number from 1 to {MAX_LIST_LIMIT}.")
    query = select(RoutingDecision).order_by(col(RoutingDecision.id).desc()).limit(limit)
    if policy is not None:
        query = query.where(col(RoutingDecision.policy) == policy)
    with Session(engine) as session:
        rows = session.execute(query).scalars().all()
    return [StoredDecision.from_row(row) for row in rows]


def get_decision(engine: Engine, decision_id: int) -> StoredDecision | None:
    """Return the decision with this id, or None when there is none."""
    with Session(engine) as session:
        row = session.get(RoutingDecision, decision_id)
        return None if row is None else StoredDecision.from_row(row)


def resolve_route(config: PolicyConfig, applied: AppliedRoute | None) -> Route:
    """Return the route a policy should have, given its newest applied decision.

    A pin in the configuration wins over every stored decision. A stored model that is no
    longer one of the policy's candidates is ignored, so the policy falls back to its reference.
    """
    settings = config.routing()
    if settings.mode is Mode.PINNED:
        assert settings.pin is not None  # PolicySettings requires a pin in pinned mode
        # Name a stored decision only when it pinned the same model: an auto decision that
        # chose the pinned model did not put the route there.
        if applied is None or applied.mode != Mode.PINNED.value or applied.model != settings.pin:
            return Route(settings.pin)
        return Route(settings.pin, applied.decision_id)
    if applied is None or applied.model not in config.candidates:
        return Route(config.reference)
    return Route(applied.model, applied.decision_id)


def _release_target(session: Session, policy: str, config: PolicyConfig) -> tuple[str, str]:
    """Return the model a released policy returns to and the sentence that explains it."""
    query = (
        select(RoutingDecision)
        .where(
            col(RoutingDecision.policy) == policy,
            col(RoutingDecision.source) == SOURCE_EVALUATION,
            col(RoutingDecision.mode) != Mode.RECOMMEND.value,
        )
        .order_by(col(RoutingDecision.id).desc())
        .limit(1)
    )
    evaluated = session.execute(query).scalars().first()
    if evaluated is None:
        return config.reference, (
            f"the route returns to the reference model {config.reference}, because no "
            "evaluation decision has chosen a model yet."
        )
    if evaluated.chosen_model not in config.candidates:
        return config.reference, (
            f"the route returns to the reference model {config.reference}, because evaluation "
            f"decision {evaluated.id} chose {evaluated.chosen_model}, which is no longer a "
            "candidate."
        )
    return evaluated.chosen_model, (
        f"the route returns to {evaluated.chosen_model}, chosen by evaluation decision "
        f"{evaluated.id}."
    )


def _latest_applied_row(session: Session, policy: str) -> RoutingDecision | None:
    query = (
        select(RoutingDecision)
        .where(col(RoutingDecision.policy) == policy, col(RoutingDecision.applied))
        .order_by(col(RoutingDecision.id).desc())
        .limit(1)
    )
    return session.execute(query).scalars().first()


def _is_operator_pin(row: RoutingDecision) -> bool:
    return row.source == SOURCE_OPERATOR and row.mode == Mode.PINNED.value


def _insert(session: Session, row: RoutingDecision) -> int:
    session.add(row)
    session.commit()
    session.refresh(row)
    assert row.id is not None  # the database assigns the id on commit
    logger.info(
        "routing decision %d: policy=%s previous=%s new=%s mode=%s applied=%s source=%s reason=%s",
        row.id,
        row.policy,
        row.previous_model,
        row.chosen_model,
        row.mode,
        row.applied,
        row.source,
        row.reason,
    )
    return row.id


# Savings to date


@dataclass(frozen=True)
class CostRatios:
    """Measured cost per request of the reference model relative to each other candidate.

    `by_model[m]` is the reference model's cost per request divided by m's, both from the
    candidate table of decision `decision_id`. `free_models` were measured at $0 per request,
    so no ratio exists for them. With no usable table, `decision_id` may be set but both
    collections are empty and `problem` explains why.
    """

    reference: str
    decision_id: int | None
    reference_cost_usd: float | None
    by_model: Mapping[str, float]
    free_models: frozenset[str]
    problem: str | None = None

    @classmethod
    def from_table(
        cls, reference: str, rows: Sequence[Mapping[str, Any]], decision_id: int
    ) -> CostRatios:
        """Build the ratios from a stored candidate table (`CandidateRow.to_dict()` rows)."""
        costs = {str(row["model"]): float(row["cost_per_request_usd"]) for row in rows}
        reference_cost = costs.get(reference)
        if reference_cost is None or not reference_cost > 0:
            problem = (
                f"decision {decision_id}'s candidate table has no cost per request above $0 "
                f"for the reference model {reference}"
            )
            return cls(reference, decision_id, None, {}, frozenset(), problem)
        ratios = {model: reference_cost / cost for model, cost in costs.items() if cost > 0}
        free = frozenset(model for model, cost in costs.items() if cost <= 0)
        return cls(reference, decision_id, reference_cost, ratios, free)


def newest_evaluation_decision(engine: Engine, policy: str) -> StoredDecision | None:
    """Return the newest decision of `policy` that an evaluation made (not an operator pin)."""
    query = (
        select(RoutingDecision)
        .where(
            col(RoutingDecision.policy) == policy,
            col(RoutingDecision.source) == SOURCE_EVALUATION,
        )
        .order_by(col(RoutingDecision.id).desc())
        .limit(1)
    )
    with Session(engine) as session:
        row = session.execute(query).scalars().first()
    return None if row is None else StoredDecision.from_row(row)


def reference_cost_ratios(engine: Engine, policy: str, reference: str) -> CostRatios:
    """Read the ratios from the candidate table of the newest evaluation decision of `policy`."""
    stored = newest_evaluation_decision(engine, policy)
    if stored is None or not stored.candidates:
        problem = "no evaluation decision of this policy has a candidate table yet"
        return CostRatios(reference, None, None, {}, frozenset(), problem)
    return CostRatios.from_table(reference, stored.candidates, stored.id)


@dataclass(frozen=True)
class ModelSpend:
    """A policy's requests served by one model, their spend and their estimated reference cost.

    `model` is None for requests that failed before a model was chosen.
    """

    model: str | None
    requests: int
    spend_usd: float
    reference_usd: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "requests": self.requests,
            "spend_usd": self.spend_usd,
            "reference_usd": self.reference_usd,
        }


@dataclass(frozen=True)
class Savings:
    """A policy's actual spend against the estimated cost of the reference model, to date.

    `saved_share` is `saved_usd / reference_usd`, None when the reference cost is 0. `method`
    describes how `reference_usd` was estimated.
    """

    requests: int
    spend_usd: float
    reference_usd: float
    saved_usd: float
    saved_share: float | None
    method: str
    by_model: tuple[ModelSpend, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "spend_usd": self.spend_usd,
            "reference_usd": self.reference_usd,
            "saved_usd": self.saved_usd,
            "saved_share": self.saved_share,
            "method": self.method,
            "by_model": [spend.to_dict() for spend in self.by_model],
        }


def savings_to_date(engine: Engine, policy: str, reference_cost_ratio: CostRatios) -> Savings:
    """Compare the spend of every request of `policy` with the reference model's estimated cost.

    Requests served by model M are priced at their spend times `by_model[M]`. Successful
    requests served by a model measured at $0 per request are priced at the reference model's
    measured cost per request each. Requests served by the reference model, by a model the table
    lacks, or by no model count at their own cost.
    """
    # NOTE: this aggregates every request row of the policy on each call. That suits an admin
    # page, but the time grows with the request log because no running total is kept.
    succeeded = case((col(RequestLog.status) < 400, 1), else_=0)
    query = (
        select(
            col(RequestLog.served_model),
            func.count(),
            func.coalesce(func.sum(RequestLog.cost_usd), 0.0),
            func.coalesce(func.sum(succeeded), 0),
        )
        .where(col(RequestLog.policy) == policy)
        .group_by(col(RequestLog.served_model))
    )
    with Session(engine) as session:
        rows = session.execute(query).all()
    return summarize_savings(
        [SpendRow(model, int(count), float(spend), int(ok)) for model, count, spend, ok in rows],
        reference_cost_ratio,
    )


class SpendRow(NamedTuple):
    """A policy's requests served by one model (None: no model) in some span of time."""

    model: str | None
    requests: int
    spend_usd: float
    successes: int


def summarize_savings(rows: Sequence[SpendRow], reference_cost_ratio: CostRatios) -> Savings:
    """Price each row at the reference model's estimated cost, as `savings_to_date` describes.

    Each row is priced on its own, so the amounts of consecutive spans of time add up to the
    amounts of the whole span.
    """
    rows = sorted(rows, key=lambda row: (row.model is None, row.model or ""))
    ratios = reference_cost_ratio
    spends: list[ModelSpend] = []
    priced_as_free = 0
    unknown = 0
    for model, requests, spend, successes in rows:
        reference_usd = spend
        if model is not None and model != ratios.reference:
            if model in ratios.by_model:
                reference_usd = spend * ratios.by_model[model]
            elif model in ratios.free_models and ratios.reference_cost_usd is not None:
                reference_usd = successes * ratios.reference_cost_usd
                priced_as_free += requests
            else:
                unknown += requests
        spends.append(ModelSpend(model, requests, spend, reference_usd))

    spend_usd = math.fsum(item.spend_usd for item in spends)
    reference_usd = math.fsum(item.reference_usd for item in spends)
    saved = reference_usd - spend_usd
    return Savings(
        requests=sum(item.requests for item in spends),
        spend_usd=spend_usd,
        reference_usd=reference_usd,
        saved_usd=saved,
        saved_share=saved / reference_usd if reference_usd > 0 else None,
        method=_savings_method(ratios, priced_as_free, unknown),
        by_model=tuple(spends),
    )


def _savings_method(ratios: CostRatios, priced_as_free: int, unknown: int) -> str:
    if ratios.problem is not None or ratios.reference_cost_usd is None:
        return (
            f"no estimate: {ratios.problem}, so every request counts at its own cost and the "
            "savings are 0."
        )
    parts = [
        "estimate: each request served by a non-reference model is priced at its own cost "
        f"times the reference model's measured cost per request relative to the serving "
        f"model's, from decision {ratios.decision_id}'s candidate table."
    ]
    if priced_as_free:
        parts.append(
            f"{priced_as_free} requests served by a model measured at $0 per request are priced "
            f"at the reference model's ${ratios.reference_cost_usd:.6f} per request, and the "
            "failed ones at $0."
        )
    if unknown:
        parts.append(
            f"{unknown} requests served by a model missing from that table count at their own cost."
        )
    parts.append(
        f"Requests served by the reference model {ratios.reference}, and requests that failed "
        "before a model was chosen, count at their own cost."
    )
    return " ".join(parts)


def describe_policies(
    engine: Engine, configs: dict[str, PolicyConfig], current: dict[str, Route]
) -> list[dict[str, Any]]:
    """Describe each policy from its configuration, its current route and the database."""
    described = []
    for name, config in configs.items():
        route = current[name]
        decisions = list_decisions(engine, name, limit=1)
        last = decisions[0] if decisions else None
        in_force = None if route.decision_id is None else get_decision(engine, route.decision_id)
        ratios = reference_cost_ratios(engine, name, config.reference)
        settings = config.routing()

        mode = settings.mode.value
        pinned_by = "config" if settings.mode is Mode.PINNED else None
        if pinned_by is None and in_force is not None and in_force.operator_pin:
            mode, pinned_by = Mode.PINNED.value, "operator"
        described.append(
            {
                "policy": name,
                "model": route.model,
                "decision_id": route.decision_id,
                "mode": mode,
                "pinned_by": pinned_by,
                "reference": config.reference,
                "candidates": list(config.candidates),
                "last_decision": last.to_dict() if last is not None else None,
                "savings": savings_to_date(engine, name, ratios).to_dict(),
            }
        )
    return described
