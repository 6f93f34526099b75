"""Tests of policy settings: defaults, validation messages and the config mapping."""

from __future__ import annotations

from typing import Any

import pytest

from policies import Mode, PolicySettings


def test_settings_defaults() -> None:
    settings = PolicySettings()

    assert settings.min_quality == 8.0
    assert settings.min_quality_ratio == 0.95
    assert settings.confidence == 0.90
    assert settings.max_latency_p95_ms == 4000
    assert settings.max_error_rate == 0.02
    assert settings.min_cases == 30
    assert settings.min_savings == 0.10
    assert settings.mode is Mode.AUTO
    assert settings.pin is None


def test_settings_optional_floors_accept_none() -> None:
    settings = PolicySettings(
        min_quality=None, min_quality_ratio=None, max_latency_p95_ms=None, max_error_rate=None
    )

    assert settings.min_quality is None
    assert settings.max_latency_p95_ms is None


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("auto", Mode.AUTO, id="auto"),
        pytest.param("recommend", Mode.RECOMMEND, id="recommend"),
        pytest.param(Mode.AUTO, Mode.AUTO, id="enum-member"),
    ],
)
def test_settings_mode_string_becomes_enum(mode: Any, expected: Mode) -> None:
    settings = PolicySettings(mode=mode)

    assert settings.mode is expected


def test_settings_pinned_with_pin() -> None:
    settings = PolicySettings(mode=Mode.PINNED, pin="gpt-5")

    assert settings.pin == "gpt-5"


INVALID_SETTINGS = [
    pytest.param(
        {"min_quality": 0.5},
        r"Invalid min_quality 0\.5: expected a judge score",
        id="min-quality-below-1",
    ),
    pytest.param({"min_quality": 10.5}, r"Invalid min_quality 10\.5", id="min-quality-above-10"),
    pytest.param({"min_quality": "8"}, r"Invalid min_quality '8'", id="min-quality-string"),
    pytest.param({"min_quality": float("nan")}, r"Invalid min_quality nan", id="min-quality-nan"),
    pytest.param({"min_quality": True}, r"Invalid min_quality True", id="min-quality-bool"),
    pytest.param(
        {"min_quality_ratio": 0}, r"Invalid min_quality_ratio 0: expected a share", id="ratio-zero"
    ),
    pytest.param({"min_quality_ratio": 1.2}, r"Invalid min_quality_ratio 1\.2", id="ratio-above-1"),
    pytest.param(
        {"confidence": 1.0},
        r"Invalid confidence 1\.0: expected a number strictly",
        id="confidence-1",
    ),
    pytest.param({"confidence": 0}, r"Invalid confidence 0", id="confidence-0"),
    pytest.param({"confidence": None}, r"Invalid confidence None", id="confidence-none"),
    pytest.param(
        {"max_latency_p95_ms": 0},
        r"Invalid max_latency_p95_ms 0: expected a number of milliseconds",
        id="latency-zero",
    ),
    pytest.param(
        {"max_latency_p95_ms": -5}, r"Invalid max_latency_p95_ms -5", id="latency-negative"
    ),
    pytest.param(
        {"max_latency_p95_ms": float("inf")}, r"Invalid max_latency_p95_ms inf", id="latency-inf"
    ),
    pytest.param(
        {"max_error_rate": 2},
        r"Invalid max_error_rate 2: expected a share from 0 to 1",
        id="error-rate-percent",
    ),
    pytest.param(
        {"max_error_rate": -0.1}, r"Invalid max_error_rate -0\.1", id="error-rate-negative"
    ),
    pytest.param(
        {"min_cases": 0}, r"Invalid min_cases 0: expected a whole number", id="min-cases-zero"
    ),
    pytest.param({"min_cases": 2.5}, r"Invalid min_cases 2\.5", id="min-cases-fraction"),
    pytest.param({"min_cases": True}, r"Invalid min_cases True", id="min-cases-bool"),
    pytest.param(
        {"min_savings": 1.0}, r"Invalid min_savings 1\.0: expected a share", id="savings-1"
    ),
    pytest.param({"min_savings": -0.1}, r"Invalid min_savings -0\.1", id="savings-negative"),
    pytest.param({"min_savings": None}, r"Invalid min_savings None", id="savings-none"),
    pytest.param(
        {"mode": "manual"},
        r"Invalid mode 'manual': expected one of auto, recommend, pinned",
        id="unknown-mode",
    ),
    pytest.param({"mode": 3}, r"Invalid mode 3", id="mode-number"),
    pytest.param(
        {"mode": "pinned"}, r"Missing pin: mode is pinned, so set pin", id="pinned-without-pin"
    ),
    pytest.param(
        {"mode": "pinned", "pin": "  "}, r"Invalid pin '  ': expected a model name", id="blank-pin"
    ),
    pytest.param(
        {"pin": "gpt-5"},
        r"Invalid pin 'gpt-5' with mode 'auto': pin takes effect only",
        id="pin-without-pinned",
    ),
]


@pytest.mark.parametrize(("values", "message"), INVALID_SETTINGS)
def test_settings_invalid_raises(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicySettings(**values)


def test_settings_from_mapping_uses_defaults() -> None:
    settings = PolicySettings.from_mapping({"min_quality": 7.5, "mode": "recommend"})

    assert settings.min_quality == 7.5
    assert settings.mode is Mode.RECOMMEND
    assert settings.min_cases == 30


def test_settings_from_mapping_unknown_key_raises() -> None:
    with pytest.raises(ValueError, match=r"Unknown policy setting 'min_qualty': expected one of"):
        PolicySettings.from_mapping({"min_qualty": 7.5})


def test_settings_to_dict_round_trip() -> None:
    settings = PolicySettings(min_quality=None, mode=Mode.PINNED, pin="gpt-5", min_cases=40)

    data = settings.to_dict()

    assert data["mode"] == "pinned"
    assert type(data["mode"]) is str
    assert PolicySettings.from_mapping(data) == settings
