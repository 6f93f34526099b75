"""Reading a policy's report from the database: chart decision, route, history, spend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from policies import Mode, PolicySettings, decide
from proxy.db import make_engine
from proxy.decisions import (
    SOURCE_OPERATOR,
    record_decision,
    record_pin,
    reference_cost_ratios,
    savings_to_date,
)
from proxy.report.data import known_policies, load_report
from proxy.tables import RequestLog, RoutingDecision
from tests.policies.factories import make_candidate
from tests.proxy.test_decisions import BIG_COST, POLICY, SMALL_COST, make_decision, policy_config

START = datetime(2025, 3, 1, 9, 15, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def add_request(
    engine: Engine, model: str | None, cost: float, at: datetime, status: int = 200
) -> None:
    with Session(engine) as session:
        session.add(
            RequestLog(
                request_id=f"r-{at.timestamp()}-{model}-{cost}-{status}",
                created_at=at,
                endpoint="chat",
                requested_model=POLICY,
                served_model=model,
                status=status,
                cost_usd=cost,
                policy=POLICY,
            )
        )
        session.commit()


def test_report_before_any_decision(engine: Engine) -> None:
    report = load_report(engine, POLICY, policy_config(), now=START)

    assert report.chart is None
    assert report.history == ()
    assert report.spend.buckets == ()
    assert report.current_model == "big"
    assert report.current_decision_id is None
    assert report.reference_model == "big"
    assert report.candidates == ("big", "small")
    assert report.settings == PolicySettings()
    assert report.generated_at == START
    assert report.savings.method.startswith("no estimate: ")


def test_report_chart_from_newest_evaluation(engine: Engine) -> None:
    first = record_decision(engine, POLICY, make_decision(current=None))
    newest = record_decision(engine, POLICY, make_decision(current="big"))
    pin = record_pin(engine, POLICY, "big", "small")

    report = load_report(engine, POLICY, policy_config())

    assert report.chart is not None
    assert report.chart.decision_id == newest
    assert report.chart.chosen_model == "small"
    assert report.chart.reference_model == "big"
    assert [row.model for row in report.chart.candidates] == ["small", "big"]
    assert [decision.id for decision in report.history] == [pin, newest, first]
    assert report.history[0].source == SOURCE_OPERATOR
    assert report.current_model == "big"
    assert report.current_decision_id == pin
    assert report.operator_pin is True


def test_report_binding_floor_is_highest(engine: Engine) -> None:
    # The reference's mean 8.7 times 0.95 gives 8.265, above the absolute floor of 8.0.
    record_decision(engine, POLICY, make_decision())

    report = load_report(engine, POLICY, policy_config())

    assert report.chart is not None
    floor = report.chart.quality_floor
    assert floor is not None
    assert floor.value == pytest.approx(0.95 * 8.7)
    assert "95% of big's mean 8.7" in floor.basis


def test_report_absolute_floor_when_ratio_off(engine: Engine) -> None:
    candidates = [make_candidate("big", BIG_COST, mean=8.7), make_candidate("small", 0.002)]
    settings = PolicySettings(min_quality=7.5, min_quality_ratio=None)
    record_decision(
        engine, POLICY, decide(candidates, settings, reference_model="big", current_model=None)
    )

    report = load_report(engine, POLICY, policy_config(min_quality=7.5, min_quality_ratio=None))

    assert report.chart is not None
    assert report.chart.quality_floor is not None
    assert report.chart.quality_floor.value == 7.5


def test_report_marks_latency_ceiling(engine: Engine) -> None:
    candidates = [
        make_candidate("big", BIG_COST, mean=8.7, latency=1000.0),
        make_candidate("small", SMALL_COST, mean=8.6, latency=5000.0),
        make_candidate("unmeasured", 0.001, mean=8.6, latency=None),
    ]
    decision = decide(candidates, PolicySettings(), reference_model="big", current_model="big")
    record_decision(engine, POLICY, decision)

    report = load_report(engine, POLICY, None)

    assert report.chart is not None
    over = {row.model: report.chart.over_latency_ceiling(row) for row in report.chart.candidates}
    assert over == {"big": False, "small": True, "unmeasured": True}


def test_report_without_config_uses_decision(engine: Engine) -> None:
    decision_id = record_decision(engine, POLICY, make_decision(mode="recommend"))

    report = load_report(engine, POLICY, None)

    assert report.settings is not None
    assert report.settings.mode is Mode.RECOMMEND
    assert report.settings_source == f"decision {decision_id}"
    assert report.reference_model == "big"
    assert report.candidates == ("small", "big")
    # A recommendation is not applied, so nothing moved the route from the reference.
    assert report.current_model == "big"
    assert report.current_decision_id is None


def test_spend_per_hour_fills_gaps(engine: Engine) -> None:
    record_decision(engine, POLICY, make_decision())
    add_request(engine, "big", 0.01, START)
    add_request(engine, "small", 0.002, START + timedelta(minutes=20))
    add_request(engine, "small", 0.002, START + timedelta(hours=3, minutes=5))
    add_request(engine, None, 0.0, START + timedelta(hours=3, minutes=6), status=400)

    report = load_report(engine, POLICY, policy_config())

    series = report.spend
    assert series.unit == "hour"
    hour = START.replace(minute=0)
    assert [bucket.start for bucket in series.buckets] == [
        hour + timedelta(hours=index) for index in range(4)
    ]
    assert [bucket.requests for bucket in series.buckets] == [2, 0, 0, 2]
    assert series.buckets[0].spend_usd == pytest.approx(0.012)
    # small's requests are priced at the reference's cost, 5 times theirs.
    assert series.buckets[0].reference_usd == pytest.approx(0.02)
    assert series.buckets[3].reference_usd == pytest.approx(0.01)


def test_spend_buckets_add_up_to_savings(engine: Engine) -> None:
    record_decision(engine, POLICY, make_decision())
    for day in range(4):
        add_request(engine, "small", 0.002, START + timedelta(days=day))
        add_request(engine, "big", 0.01, START + timedelta(days=day, hours=2))
    add_request(engine, "other", 0.004, START + timedelta(days=1))

    report = load_report(engine, POLICY, policy_config())

    assert report.spend.unit == "day"
    assert len(report.spend.buckets) == 4
    assert report.spend.buckets[0].start == datetime(2025, 3, 1, tzinfo=UTC)
    expected = savings_to_date(engine, POLICY, reference_cost_ratios(engine, POLICY, "big"))
    assert report.savings == expected
    assert sum(b.spend_usd for b in report.spend.buckets) == pytest.approx(expected.spend_usd)
    assert sum(b.saved_usd for b in report.spend.buckets) == pytest.approx(expected.saved_usd)
    assert sum(b.requests for b in report.spend.buckets) == expected.requests == 9


def test_known_policies_from_decisions_and_requests(engine: Engine) -> None:
    record_decision(engine, "alpha", make_decision())
    add_request(engine, "small", 0.002, START)

    assert known_policies(engine) == ["alpha", POLICY]


def test_unreadable_candidate_row_reported(engine: Engine) -> None:
    decision_id = record_decision(engine, POLICY, make_decision())
    with Session(engine) as session:
        row = session.get(RoutingDecision, decision_id)
        assert row is not None and row.decision is not None
        data = dict(row.decision)
        broken = {"model": "broken", "cost_per_request_usd": 0.001}  # other keys missing
        data["candidates"] = [*data["candidates"], broken]
        row.decision = data
        session.add(row)
        session.commit()

    report = load_report(engine, POLICY, policy_config())

    assert report.chart is not None
    assert [row.model for row in report.chart.candidates] == ["small", "big"]
    assert len(report.problems) == 1
    assert f"decision {decision_id} was left out" in report.problems[0]
