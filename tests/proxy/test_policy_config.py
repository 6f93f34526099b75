"""Policy sections: every invalid routing key reported in one pass, under its own key path."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import ConfigError, parse_config

UPSTREAM = "http://127.0.0.1:9/v1"


def config(**policy: Any) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": f"openai/{name}", "api_base": UPSTREAM},
            }
            for name in ("a", "b")
        ],
        "policies": {
            "p": {"reference": "a", "candidates": ["a", "b"], "judge": "checks", **policy}
        },
    }


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(raw, {})
    return raised.value.problems


def test_every_invalid_routing_key_is_listed() -> None:
    found = problems(config(mode="fast", max_latency_p95_ms=-1, min_quality=11, confidence=2))

    assert [line.split(":")[0] for line in found] == [
        "policies.p.mode",
        "policies.p.max_latency_p95_ms",
        "policies.p.min_quality",
        "policies.p.confidence",
    ]
    assert "Invalid mode 'fast'" in found[0]


def test_model_errors_and_routing_errors_together() -> None:
    found = problems(config(sample_rate=2, mode="fast"))

    assert found[0].startswith("policies.p.sample_rate: invalid value 2")
    assert found[1].startswith("policies.p.mode: Invalid mode 'fast'")
    assert len(found) == 2


def test_pin_without_pinned_mode_is_reported_at_pin() -> None:
    found = problems(config(pin="b"))

    assert len(found) == 1
    assert found[0].startswith("policies.p.pin: Invalid pin 'b' with mode 'auto'")


def test_valid_routing_keys_pass() -> None:
    loaded = parse_config(config(mode="pinned", pin="b", max_latency_p95_ms=None), {})

    settings = loaded.config.policies["p"].routing()
    assert (settings.mode.value, settings.pin, settings.max_latency_p95_ms) == ("pinned", "b", None)
