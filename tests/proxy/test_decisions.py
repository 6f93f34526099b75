"""Stored routing decisions: record, pin, release, list, resolve, and savings to date."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from policies import Decision, Mode, PolicySettings, decide
from proxy.db import make_engine
from proxy.decisions import (
    PINNED_BY_OPERATOR,
    AppliedRoute,
    CostRatios,
    DecisionError,
    get_decision,
    latest_applied,
    list_decisions,
    record_decision,
    record_pin,
    record_release,
    reference_cost_ratios,
    resolve_route,
    savings_to_date,
)
from proxy.policy_config import PolicyConfig
from proxy.route_table import Route
from proxy.tables import RequestLog
from tests.policies.factories import make_candidate

POLICY = "support-bot"
BIG_COST = 0.01
SMALL_COST = 0.002


def make_decision(
    current: str | None = "big",
    *,
    mode: str = "auto",
    pin: str | None = None,
    small_mean: float = 8.6,
) -> Decision:
    """Decide between big (the reference) and small, which is 5 times cheaper per request."""
    candidates = [
        make_candidate("big", BIG_COST, mean=8.7),
        make_candidate("small", SMALL_COST, mean=small_mean),
    ]
    settings = PolicySettings(mode=Mode(mode), pin=pin)
    return decide(candidates, settings, reference_model="big", current_model=current)


def policy_config(**routing: Any) -> PolicyConfig:
    return PolicyConfig(reference="big", candidates=["big", "small"], judge="checks", **routing)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


# Recording and listing


def test_record_decision_auto_applied(engine: Engine) -> None:
    decision = make_decision()
    assert decision.chosen_model == "small"

    decision_id = record_decision(engine, POLICY, decision, run_id=3)

    stored = get_decision(engine, decision_id)
    assert stored is not None
    assert stored.policy == POLICY
    assert stored.previous_model == "big"
    assert stored.chosen_model == "small"
    assert stored.mode == "auto"
    assert stored.source == "evaluation"
    assert stored.applied is True
    assert stored.run_id == 3
    assert stored.reason == decision.reason
    assert Decision.from_dict(stored.decision or {}) == decision
    assert latest_applied(engine) == {
        POLICY: AppliedRoute("small", decision_id, "auto", "evaluation")
    }


def test_record_decision_confirming_route_applied(engine: Engine) -> None:
    decision = make_decision(current="small")
    assert not decision.changes_route

    decision_id = record_decision(engine, POLICY, decision)

    assert latest_applied(engine)[POLICY].decision_id == decision_id


def test_record_decision_recommend_not_applied(engine: Engine) -> None:
    applied_id = record_decision(engine, POLICY, make_decision())

    recommended_id = record_decision(engine, POLICY, make_decision("small", mode="recommend"))

    stored = get_decision(engine, recommended_id)
    assert stored is not None
    assert stored.applied is False
    assert stored.mode == "recommend"
    assert latest_applied(engine)[POLICY].decision_id == applied_id


def test_record_decision_pinned_mode_applied(engine: Engine) -> None:
    decision_id = record_decision(engine, POLICY, make_decision(mode="pinned", pin="big"))

    assert latest_applied(engine)[POLICY] == AppliedRoute(
        "big", decision_id, "pinned", "evaluation"
    )


def test_record_decision_logs_one_info_line(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.decisions")
    decision = make_decision()

    decision_id = record_decision(engine, POLICY, decision)

    records = [record for record in caplog.records if record.name == "proxy.decisions"]
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    message = records[0].getMessage()
    assert "\n" not in message
    assert f"routing decision {decision_id}:" in message
    assert f"policy={POLICY}" in message
    assert "previous=big" in message
    assert "new=small" in message
    assert "mode=auto" in message
    assert "applied=True" in message
    assert f"reason={decision.reason}" in message


def test_list_decisions_newest_first(engine: Engine) -> None:
    first = record_decision(engine, POLICY, make_decision())
    second = record_decision(engine, "other", make_decision())
    third = record_decision(engine, POLICY, make_decision("small", mode="recommend"))

    assert [row.id for row in list_decisions(engine)] == [third, second, first]
    assert [row.id for row in list_decisions(engine, POLICY)] == [third, first]
    assert [row.id for row in list_decisions(engine, POLICY, limit=1)] == [third]
    assert list_decisions(engine, "nobody") == []


def test_list_decisions_full_rows(engine: Engine) -> None:
    record_decision(engine, POLICY, make_decision(), run_id=9)

    row = list_decisions(engine, POLICY)[0].to_dict()

    assert row["chosen_model"] == "small"
    assert row["reference_model"] == "big"
    assert row["cheapest_eligible_model"] == "small"
    assert row["run_id"] == 9
    assert row["settings"]["mode"] == "auto"
    assert row["created_at"].endswith("Z")
    assert [candidate["model"] for candidate in row["candidates"]] == ["small", "big"]
    assert row["candidates"][0]["cost_per_request_usd"] == SMALL_COST
    assert row["candidates"][0]["eligible"] is True


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_list_decisions_limit_rejected(engine: Engine, limit: int) -> None:
    with pytest.raises(ValueError, match="Invalid limit"):
        list_decisions(engine, limit=limit)


def test_latest_applied_per_policy(engine: Engine) -> None:
    record_decision(engine, POLICY, make_decision())
    second = record_decision(engine, POLICY, make_decision("small", mode="pinned", pin="big"))
    other = record_decision(engine, "other", make_decision())

    applied = latest_applied(engine)

    assert applied == {
        POLICY: AppliedRoute("big", second, "pinned", "evaluation"),
        "other": AppliedRoute("small", other, "auto", "evaluation"),
    }


def test_latest_applied_empty(engine: Engine) -> None:
    assert latest_applied(engine) == {}


# Operator pins and releases


def test_record_pin(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proxy.decisions")

    decision_id = record_pin(engine, POLICY, "small", "big")

    stored = get_decision(engine, decision_id)
    assert stored is not None
    assert stored.reason == PINNED_BY_OPERATOR
    assert stored.mode == "pinned"
    assert stored.source == "operator"
    assert stored.applied is True
    assert stored.previous_model == "big"
    assert stored.candidates == []
    assert latest_applied(engine)[POLICY].operator_pin
    assert "reason=pinned by operator" in caplog.records[-1].getMessage()


def test_pin_holds_evaluation_decisions(engine: Engine) -> None:
    pin_id = record_pin(engine, POLICY, "big", "big")

    held_id = record_decision(engine, POLICY, make_decision())

    held = get_decision(engine, held_id)
    assert held is not None
    assert held.applied is False
    assert f"an operator pinned big in decision {pin_id}" in held.reason
    assert latest_applied(engine)[POLICY].decision_id == pin_id


def test_release_returns_to_evaluated_model(engine: Engine) -> None:
    evaluated_id = record_decision(engine, POLICY, make_decision())
    record_pin(engine, POLICY, "big", "small")

    release_id = record_release(engine, POLICY, policy_config())

    stored = get_decision(engine, release_id)
    assert stored is not None
    assert stored.chosen_model == "small"
    assert stored.previous_model == "big"
    assert stored.source == "operator"
    assert stored.mode == "auto"
    assert stored.applied is True
    assert stored.reason == (
        "operator released the pin on big: the route returns to small, chosen by evaluation "
        f"decision {evaluated_id}."
    )
    assert latest_applied(engine)[POLICY] == AppliedRoute("small", release_id, "auto", "operator")


def test_release_follows_decision_held_by_pin(engine: Engine) -> None:
    record_pin(engine, POLICY, "big", "big")
    held_id = record_decision(engine, POLICY, make_decision())

    release_id = record_release(engine, POLICY, policy_config())

    stored = get_decision(engine, release_id)
    assert stored is not None
    assert stored.chosen_model == "small"
    assert f"evaluation decision {held_id}" in stored.reason


def test_release_ignores_recommendations(engine: Engine) -> None:
    record_pin(engine, POLICY, "small", "big")
    record_decision(engine, POLICY, make_decision(mode="recommend"))

    release_id = record_release(engine, POLICY, policy_config())

    stored = get_decision(engine, release_id)
    assert stored is not None
    assert stored.chosen_model == "big"
    assert "reference model big, because no evaluation decision" in stored.reason


def test_release_skips_model_no_longer_candidate(engine: Engine) -> None:
    evaluated_id = record_decision(engine, POLICY, make_decision())
    record_pin(engine, POLICY, "big", "small")
    config = PolicyConfig(reference="big", candidates=["big", "medium"], judge="checks")

    release_id = record_release(engine, POLICY, config)

    stored = get_decision(engine, release_id)
    assert stored is not None
    assert stored.chosen_model == "big"
    assert f"decision {evaluated_id} chose small, which is no longer a candidate" in stored.reason


def test_release_without_pin_rejected(engine: Engine) -> None:
    record_decision(engine, POLICY, make_decision())

    with pytest.raises(DecisionError, match="is not pinned by an operator"):
        record_release(engine, POLICY, policy_config())


def test_release_config_pinned_rejected(engine: Engine) -> None:
    record_pin(engine, POLICY, "small", "big")

    with pytest.raises(DecisionError, match="pinned to big in the configuration file"):
        record_release(engine, POLICY, policy_config(mode="pinned", pin="big"))


# The route a policy should have


def test_resolve_route_default_reference() -> None:
    assert resolve_route(policy_config(), None) == Route("big")


def test_resolve_route_follows_applied() -> None:
    applied = AppliedRoute("small", 4, "auto", "evaluation")

    assert resolve_route(policy_config(), applied) == Route("small", 4)


def test_resolve_route_ignores_removed_candidate() -> None:
    applied = AppliedRoute("gone", 4, "auto", "evaluation")

    assert resolve_route(policy_config(), applied) == Route("big")


@pytest.mark.parametrize(
    ("applied", "expected"),
    [
        pytest.param(None, Route("small"), id="nothing-stored"),
        pytest.param(AppliedRoute("big", 4, "auto", "evaluation"), Route("small"), id="auto"),
        pytest.param(AppliedRoute("big", 4, "pinned", "operator"), Route("small"), id="other-pin"),
        pytest.param(
            AppliedRoute("small", 5, "pinned", "evaluation"), Route("small", 5), id="same-pin"
        ),
        pytest.param(
            AppliedRoute("small", 6, "auto", "evaluation"), Route("small"), id="auto-same-model"
        ),
    ],
)
def test_resolve_route_config_pin_wins(applied: AppliedRoute | None, expected: Route) -> None:
    assert resolve_route(policy_config(mode="pinned", pin="small"), applied) == expected


# Savings to date


def add_requests(
    engine: Engine, policy: str, model: str | None, costs: list[float], status: int = 200
) -> None:
    with Session(engine) as session:
        for index, cost in enumerate(costs):
            session.add(
                RequestLog(
                    request_id=f"{policy}-{model}-{status}-{index}",
                    created_at=datetime.now(UTC),
                    endpoint="chat",
                    requested_model=policy,
                    served_model=model,
                    status=status,
                    cost_usd=cost,
                    policy=policy,
                )
            )
        session.commit()


def candidate_row(model: str, cost: float) -> dict[str, Any]:
    return {"model": model, "cost_per_request_usd": cost}


def test_savings_arithmetic(engine: Engine) -> None:
    add_requests(engine, POLICY, "big", [0.01, 0.01])
    add_requests(engine, POLICY, "small", [0.002, 0.002, 0.002])
    add_requests(engine, POLICY, "local", [0.0, 0.0])
    add_requests(engine, POLICY, "local", [0.0], status=502)
    add_requests(engine, POLICY, "other", [0.005])
    add_requests(engine, POLICY, None, [0.0], status=400)
    add_requests(engine, "another-policy", "small", [1.0])
    table = [candidate_row("big", 0.01), candidate_row("small", 0.002), candidate_row("local", 0)]
    ratios = CostRatios.from_table("big", table, decision_id=12)

    savings = savings_to_date(engine, POLICY, ratios)

    # At the reference: big at its own 0.02, small 0.006 x 5 = 0.03, local 2 successes x 0.01
    # = 0.02, other (not in the table) at its own 0.005, and the unrouted failure at 0.
    assert savings.requests == 10
    assert savings.spend_usd == pytest.approx(0.031)
    assert savings.reference_usd == pytest.approx(0.075)
    assert savings.saved_usd == pytest.approx(0.044)
    assert savings.saved_share == pytest.approx(0.044 / 0.075)
    by_model = {item.model: item for item in savings.by_model}
    assert by_model["small"].reference_usd == pytest.approx(0.03)
    assert by_model["local"].requests == 3
    assert by_model["local"].reference_usd == pytest.approx(0.02)
    assert by_model["other"].reference_usd == pytest.approx(0.005)
    assert by_model[None].reference_usd == 0
    assert savings.method.startswith("estimate: ")
    assert "from decision 12's candidate table" in savings.method
    assert "3 requests served by a model measured at $0 per request" in savings.method
    assert "1 requests served by a model missing from that table" in savings.method
    assert "reference model big" in savings.method


def test_savings_only_reference_traffic(engine: Engine) -> None:
    add_requests(engine, POLICY, "big", [0.01, 0.03])
    ratios = CostRatios.from_table("big", [candidate_row("big", 0.02)], decision_id=1)

    savings = savings_to_date(engine, POLICY, ratios)

    assert savings.spend_usd == pytest.approx(0.04)
    assert savings.reference_usd == pytest.approx(0.04)
    assert savings.saved_usd == pytest.approx(0.0)
    assert "missing from that table" not in savings.method


def test_savings_no_requests(engine: Engine) -> None:
    ratios = CostRatios.from_table("big", [candidate_row("big", 0.02)], decision_id=1)

    savings = savings_to_date(engine, POLICY, ratios)

    assert savings.requests == 0
    assert savings.saved_usd == 0
    assert savings.saved_share is None


def test_savings_without_evaluation(engine: Engine) -> None:
    add_requests(engine, POLICY, "small", [0.002])
    record_pin(engine, POLICY, "small", "big")

    ratios = reference_cost_ratios(engine, POLICY, "big")
    savings = savings_to_date(engine, POLICY, ratios)

    assert ratios.decision_id is None
    assert savings.saved_usd == 0
    assert savings.method == (
        "no estimate: no evaluation decision of this policy has a candidate table yet, so every "
        "request counts at its own cost and the savings are 0."
    )


def test_savings_reference_cost_zero() -> None:
    ratios = CostRatios.from_table("big", [candidate_row("big", 0.0)], decision_id=7)

    assert ratios.by_model == {}
    assert ratios.problem is not None
    assert "decision 7's candidate table has no cost per request above $0" in ratios.problem


def test_reference_cost_ratios_from_latest_table(engine: Engine) -> None:
    record_decision(engine, POLICY, make_decision())
    latest_id = record_decision(engine, POLICY, make_decision("small", mode="recommend"))
    record_pin(engine, POLICY, "big", "small")

    ratios = reference_cost_ratios(engine, POLICY, "big")

    assert ratios.decision_id == latest_id
    assert ratios.reference_cost_usd == BIG_COST
    assert ratios.by_model == {"big": 1.0, "small": pytest.approx(5.0)}
