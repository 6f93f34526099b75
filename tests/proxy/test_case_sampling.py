"""Successful requests of a policy become benchmark cases, off the request path."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from sqlmodel import Session, create_engine, select

from evaluator.tables import BenchmarkCase
from proxy.db import normalize_url
from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment


def policy_config(base_url: str, sample_rate: float) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("big", "big-model", base_url),
            deployment("small", "small", base_url),
        ],
        "policies": {
            "bot": {
                "reference": "big",
                "candidates": ["big", "small"],
                "sample_rate": sample_rate,
                "judge": "checks",
            }
        },
        "general_settings": {"master_key": MASTER_KEY},
    }


def stored_cases(gateway: RunningGateway) -> list[BenchmarkCase]:
    url = gateway.loaded.database_url
    gateway.stop()
    engine = create_engine(normalize_url(url))
    try:
        with Session(engine) as session:
            return list(session.exec(select(BenchmarkCase).order_by(BenchmarkCase.id)))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_sampled_cases_stored(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(policy_config(fake_upstream.base_url, 1.0))
    client = gateway.client()

    client.chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "mail me at ann@example.com"}]
    )
    stream = client.chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "streamed question"}], stream=True
    )
    list(stream)
    client.chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "streamed question"}]
    )

    cases = stored_cases(gateway)
    assert len(cases) == 2, "the repeated question is stored once"
    first, second = cases
    assert first.source == "sampled"
    assert "ann@example.com" not in str(first.messages)
    assert first.expected is not None
    assert "ann@example.com" not in first.expected
    assert first.expected_model == "big"
    assert second.expected == "echo: streamed question"


def test_other_model_leaves_expected_empty(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(policy_config(fake_upstream.base_url, 1.0))
    gateway.state.routes.apply("bot", "small", None)

    gateway.client().chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "served by small"}]
    )

    (case,) = stored_cases(gateway)
    assert case.expected is None


def test_zero_rate_stores_nothing(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = start_gateway(policy_config(fake_upstream.base_url, 0.0))

    for index in range(5):
        gateway.client().chat.completions.create(
            model="bot", messages=[{"role": "user", "content": f"q {index}"}]
        )

    assert stored_cases(gateway) == []


def test_failed_request_not_sampled(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    config = policy_config(fake_upstream.base_url, 1.0)
    config["router_settings"] = {"num_retries": 0}
    gateway = start_gateway(config)
    fake_upstream.script("big-model", ["500"])

    with pytest.raises(openai.APIStatusError) as caught:
        gateway.client().chat.completions.create(
            model="bot", messages=[{"role": "user", "content": "fails"}]
        )

    assert caught.value.status_code == 502

    assert stored_cases(gateway) == []
