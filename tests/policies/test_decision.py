"""Tests of the decision's plain-JSON form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies import Decision, Mode, PolicySettings, decide
from tests.policies.factories import make_candidate


def _sample_decision(settings: PolicySettings | None = None) -> Decision:
    candidates = [
        make_candidate("ref", 0.010),
        make_candidate("cheap", 0.004, latency=None),
        make_candidate("unscored", 0.001, cases=0, unscored_cases=7),
    ]
    return decide(
        candidates, settings or PolicySettings(), reference_model="ref", current_model="ref"
    )


def test_to_dict_is_strict_json() -> None:
    data = _sample_decision().to_dict()

    # allow_nan=False raises if a NaN quality leaked into the output.
    text = json.dumps(data, allow_nan=False)

    assert json.loads(text) == data


def test_to_dict_fields() -> None:
    data = _sample_decision(PolicySettings(mode=Mode.RECOMMEND)).to_dict()

    assert data["chosen_model"] == "ref"
    assert data["previous_model"] == "ref"
    assert data["reference_model"] == "ref"
    assert data["cheapest_eligible_model"] == "ref"
    assert data["mode"] == "recommend"
    assert data["apply"] is False
    assert data["changes_route"] is False
    assert data["settings"]["min_cases"] == 30
    assert [row["model"] for row in data["candidates"]] == ["unscored", "cheap", "ref"]


def test_to_dict_row_fields() -> None:
    rows = {row["model"]: row for row in _sample_decision().to_dict()["candidates"]}

    assert rows["unscored"]["quality_mean"] is None
    assert rows["unscored"]["quality_low"] is None
    assert rows["unscored"]["quality_high"] is None
    assert rows["unscored"]["unscored_cases"] == 7
    assert rows["cheap"]["latency_p95_ms"] is None
    assert rows["cheap"]["eligible"] is False
    assert rows["cheap"]["ineligible_reasons"] == ["no latency measured"]
    assert rows["ref"]["eligible"] is True
    assert rows["cheap"]["on_frontier"] is True
    assert rows["ref"]["on_frontier"] is False
    assert rows["ref"]["quality_low"] == pytest.approx(8.3)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(PolicySettings(), id="auto"),
        pytest.param(PolicySettings(mode=Mode.RECOMMEND), id="recommend"),
        pytest.param(PolicySettings(mode=Mode.PINNED, pin="cheap"), id="pinned"),
    ],
)
def test_from_dict_round_trip(settings: PolicySettings) -> None:
    data = json.loads(json.dumps(_sample_decision(settings).to_dict()))

    rebuilt = Decision.from_dict(data)

    assert rebuilt.to_dict() == data
    assert rebuilt.settings == settings


def test_from_dict_missing_key_raises() -> None:
    data = _sample_decision().to_dict()
    del data["reason"]

    with pytest.raises(ValueError, match="missing key 'reason'"):
        Decision.from_dict(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"chosen_model": 3}, "'chosen_model' is 3, expected str", id="model-number"),
        pytest.param({"previous_model": 1}, "expected str or null", id="previous-number"),
        pytest.param({"candidates": {}}, "'candidates' is {}, expected list", id="rows-not-list"),
        pytest.param(
            {"candidates": ["ref"]}, "candidate row 'ref' is not an object", id="row-not-object"
        ),
        pytest.param(
            {"settings": {"mode": "manual"}}, "Invalid mode 'manual'", id="invalid-settings"
        ),
    ],
)
def test_from_dict_invalid_raises(change: dict[str, Any], message: str) -> None:
    data = _sample_decision().to_dict()
    data.update(change)

    with pytest.raises(ValueError, match=message):
        Decision.from_dict(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"cases": "50"}, "'cases' is '50', expected int", id="cases-string"),
        pytest.param({"cases": True}, "'cases' is True, expected int", id="cases-bool"),
        pytest.param({"on_frontier": 1}, "'on_frontier' is 1, expected bool", id="frontier-number"),
        pytest.param({"quality_mean": "8"}, "expected int or float or null", id="mean-string"),
    ],
)
def test_from_dict_invalid_row_raises(change: dict[str, Any], message: str) -> None:
    data = _sample_decision().to_dict()
    data["candidates"][0].update(change)

    with pytest.raises(ValueError, match=message):
        Decision.from_dict(data)
