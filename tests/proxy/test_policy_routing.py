"""Requests that belong to a policy are served by the policy's current route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> RunningGateway:
    base = fake_upstream.base_url
    config = {
        "model_list": [
            deployment("big", "big-model", base),
            deployment("small", "small-model", base),
        ],
        "policies": {
            "support-bot": {
                "match_models": ["gpt-legacy"],
                "reference": "big",
                "candidates": ["big", "small"],
                "judge": "checks",
            }
        },
        "general_settings": {"master_key": MASTER_KEY},
    }
    return start_gateway(config)


def chat(gateway: RunningGateway, model: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}", **headers},
    )


def last_row(gateway: RunningGateway) -> dict[str, Any]:
    gateway.flush()
    assert gateway.state.engine is not None
    with gateway.state.engine.connect() as connection:
        result = connection.exec_driver_sql(
            "SELECT policy, decision_id, served_model FROM request_log ORDER BY id DESC LIMIT 1"
        )
        return dict(result.one()._mapping)


@pytest.mark.parametrize(
    ("model", "headers"),
    [
        pytest.param("support-bot", {}, id="policy-name"),
        pytest.param("gpt-legacy", {}, id="matched-model"),
        pytest.param("small", {"x-pareto-policy": "support-bot"}, id="header"),
    ],
)
def test_policy_request_served_by_route(
    gateway: RunningGateway, fake_upstream: FakeUpstream, model: str, headers: dict[str, str]
) -> None:
    response = chat(gateway, model, **headers)

    assert response.status_code == 200
    assert response.headers["x-pareto-policy"] == "support-bot"
    assert response.headers["x-pareto-model"] == "big"
    assert "x-pareto-decision" not in response.headers
    assert fake_upstream.requests[-1].model == "big-model"
    assert last_row(gateway) == {
        "policy": "support-bot",
        "decision_id": None,
        "served_model": "big",
    }


def test_route_switch_applies(gateway: RunningGateway, fake_upstream: FakeUpstream) -> None:
    gateway.state.routes.apply("support-bot", "small", 7)

    response = chat(gateway, "support-bot")

    assert response.headers["x-pareto-model"] == "small"
    assert response.headers["x-pareto-decision"] == "7"
    assert fake_upstream.requests[-1].model == "small-model"
    assert last_row(gateway)["decision_id"] == 7


def test_plain_model_not_in_policy(gateway: RunningGateway) -> None:
    response = chat(gateway, "small")

    assert response.status_code == 200
    assert "x-pareto-policy" not in response.headers
    assert last_row(gateway)["policy"] is None


def test_unknown_policy_header_rejected(gateway: RunningGateway) -> None:
    response = chat(gateway, "small", **{"x-pareto-policy": "nope"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "policy_not_found"
    assert response.json()["error"]["param"] == "x-pareto-policy"


def test_models_list_policies(gateway: RunningGateway) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    listed = httpx.get(f"{gateway.base_url}/v1/models", headers=headers).json()["data"]
    policy = httpx.get(f"{gateway.base_url}/v1/models/support-bot", headers=headers)

    assert [card["id"] for card in listed] == ["big", "small", "support-bot"]
    assert listed[-1]["owned_by"] == "pareto-policy"
    assert policy.status_code == 200
    assert policy.json()["id"] == "support-bot"
