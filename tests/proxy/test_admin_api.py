"""The admin API: GET /pareto/policies and GET /pareto/decisions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from proxy.db import make_engine
from proxy.decisions import record_decision, record_pin
from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment
from tests.proxy.test_decisions import POLICY, make_decision

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICES = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/none"


def admin_config(api_base: str, **routing: Any) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("big", "big-model", api_base, model_info=PRICES),
            deployment("small", "small-model", api_base, model_info=PRICES),
        ],
        "policies": {
            POLICY: {
                "reference": "big",
                "candidates": ["big", "small"],
                "judge": "checks",
                **routing,
            },
            "second": {"reference": "small", "candidates": ["small"], "judge": "checks"},
        },
        "general_settings": {"master_key": MASTER_KEY},
    }


@pytest.fixture(autouse=True)
def fast_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETO_ROUTE_SYNC_SECONDS", "0.1")


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> RunningGateway:
    return start_gateway(admin_config(fake_upstream.base_url))


def get(
    gateway: RunningGateway, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.get(
        gateway.base_url + path, headers=AUTH if headers is None else headers, timeout=10
    )


def policies_by_name(gateway: RunningGateway) -> dict[str, dict[str, Any]]:
    response = get(gateway, "/pareto/policies")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    return {item["policy"]: item for item in body["data"]}


def wait_for_decision(gateway: RunningGateway, decision_id: int) -> None:
    deadline = time.monotonic() + 10
    while gateway.state.routes.route(POLICY).decision_id != decision_id:
        assert time.monotonic() < deadline, f"decision {decision_id} not applied within 10 s"
        time.sleep(0.05)


def chat(gateway: RunningGateway) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": POLICY, "messages": [{"role": "user", "content": "three words here"}]},
        headers=AUTH,
        timeout=10,
    )


# Authentication


@pytest.mark.parametrize("path", ["/pareto/policies", "/pareto/decisions"])
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "missing_api_key", id="missing"),
        pytest.param({"Authorization": "Bearer sk-wrong-key-1234"}, "invalid_api_key", id="wrong"),
    ],
)
def test_admin_requires_master_key(
    gateway: RunningGateway, path: str, headers: dict[str, str], code: str
) -> None:
    response = get(gateway, path, headers)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["error"]["code"] == code


# GET /pareto/policies


def test_policies_before_any_decision(gateway: RunningGateway) -> None:
    policies = policies_by_name(gateway)

    assert set(policies) == {POLICY, "second"}
    item = policies[POLICY]
    assert item["model"] == "big"
    assert item["decision_id"] is None
    assert item["mode"] == "auto"
    assert item["pinned_by"] is None
    assert item["reference"] == "big"
    assert item["candidates"] == ["big", "small"]
    assert item["last_decision"] is None
    assert item["savings"]["requests"] == 0
    assert item["savings"]["saved_usd"] == 0
    assert item["savings"]["method"].startswith("no estimate: no evaluation decision")


def test_policies_after_decision(gateway: RunningGateway, engine: Engine) -> None:
    decision_id = record_decision(engine, POLICY, make_decision(), run_id=4)
    wait_for_decision(gateway, decision_id)
    assert chat(gateway).status_code == 200
    assert chat(gateway).status_code == 200
    gateway.flush()

    item = policies_by_name(gateway)[POLICY]

    assert item["model"] == "small"
    assert item["decision_id"] == decision_id
    last = item["last_decision"]
    assert last["id"] == decision_id
    assert last["run_id"] == 4
    assert last["applied"] is True
    assert last["reason"] == make_decision().reason
    assert [row["model"] for row in last["candidates"]] == ["small", "big"]
    assert set(last["candidates"][0]) >= {
        "cost_per_request_usd",
        "quality_mean",
        "quality_low",
        "quality_high",
        "latency_p95_ms",
        "error_rate",
        "on_frontier",
        "eligible",
        "ineligible_reasons",
    }
    savings = item["savings"]
    assert savings["requests"] == 2
    assert savings["spend_usd"] > 0
    # The decision measured big at 5 times small's cost per request.
    assert savings["reference_usd"] == pytest.approx(5 * savings["spend_usd"])
    assert savings["saved_usd"] == pytest.approx(4 * savings["spend_usd"])
    assert savings["saved_share"] == pytest.approx(0.8)
    assert f"from decision {decision_id}'s candidate table" in savings["method"]
    assert savings["by_model"] == [
        {
            "model": "small",
            "requests": 2,
            "spend_usd": pytest.approx(savings["spend_usd"]),
            "reference_usd": pytest.approx(savings["reference_usd"]),
        }
    ]


def test_policies_operator_pin(gateway: RunningGateway, engine: Engine) -> None:
    record_decision(engine, POLICY, make_decision())
    pin_id = record_pin(engine, POLICY, "big", "small")
    wait_for_decision(gateway, pin_id)

    item = policies_by_name(gateway)[POLICY]

    assert item["model"] == "big"
    assert item["mode"] == "pinned"
    assert item["pinned_by"] == "operator"
    assert item["last_decision"]["reason"] == "pinned by operator"
    assert item["last_decision"]["candidates"] == []


def test_policies_config_pin(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(admin_config(fake_upstream.base_url, mode="pinned", pin="small"))

    item = policies_by_name(gateway)[POLICY]

    assert item["model"] == "small"
    assert item["mode"] == "pinned"
    assert item["pinned_by"] == "config"


# GET /pareto/decisions


def test_decisions_newest_first(gateway: RunningGateway, engine: Engine) -> None:
    first = record_decision(engine, POLICY, make_decision())
    second = record_decision(engine, "second", make_decision())
    third = record_decision(engine, POLICY, make_decision("small", mode="recommend"))

    everything = get(gateway, "/pareto/decisions").json()
    of_policy = get(gateway, f"/pareto/decisions?policy={POLICY}").json()
    limited = get(gateway, f"/pareto/decisions?policy={POLICY}&limit=1").json()

    assert everything["object"] == "list"
    assert [row["id"] for row in everything["data"]] == [third, second, first]
    assert [row["id"] for row in of_policy["data"]] == [third, first]
    assert [row["id"] for row in limited["data"]] == [third]
    newest = of_policy["data"][0]
    assert newest["applied"] is False
    assert newest["mode"] == "recommend"
    assert newest["source"] == "evaluation"
    assert len(newest["candidates"]) == 2


def test_decisions_empty(gateway: RunningGateway) -> None:
    response = get(gateway, "/pareto/decisions?limit=1000")

    assert response.status_code == 200
    assert response.json() == {"object": "list", "data": []}


@pytest.mark.parametrize("limit", ["0", "1001", "-5", "ten", ""])
def test_decisions_invalid_limit(gateway: RunningGateway, limit: str) -> None:
    response = get(gateway, f"/pareto/decisions?limit={limit}")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "limit"
    assert error["message"] == (f"Invalid limit '{limit}': expected a whole number from 1 to 1000.")


def test_decisions_unknown_policy(gateway: RunningGateway) -> None:
    response = get(gateway, "/pareto/decisions?policy=nope")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "policy_not_found"
    assert error["param"] == "policy"
    assert "'nope' is not configured" in error["message"]


def test_decisions_database_unavailable(gateway: RunningGateway) -> None:
    working = gateway.state.engine
    gateway.state.engine = create_engine(UNREACHABLE_DATABASE)
    try:
        response = get(gateway, "/pareto/decisions")
    finally:
        gateway.state.engine.dispose()
        gateway.state.engine = working

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.json()["error"]["message"].startswith("The database could not be read: ")
