"""The small routes: model listing, health probes and Prometheus metrics, with their auth rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICES = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres:db-pass-5e1d@127.0.0.1:1/none"


def models_config(api_base: str, **litellm_settings: Any) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("m", "gpt-fake", api_base, model_info=PRICES),
            deployment("team/chat", "gpt-fake", api_base),
            deployment("m", "gpt-fake", api_base, model_info=PRICES),
            deployment("e", "text-embedding-fake", api_base),
        ],
        "litellm_settings": litellm_settings,
        "general_settings": {"master_key": MASTER_KEY},
    }


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """One gateway for the tests that change no state: listing, auth and health."""
    database = tmp_path_factory.mktemp("admin") / "pareto.db"
    with (
        FakeUpstream() as upstream,
        RunningGateway(models_config(upstream.base_url), f"sqlite:///{database}") as running,
    ):
        yield running


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> RunningGateway:
    """A new gateway, for tests that count metrics or swap the database engine."""
    return start_gateway(models_config(fake_upstream.base_url))


def get(
    gateway: RunningGateway, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.get(gateway.base_url + path, headers=headers or {}, timeout=10)


def metrics_text(gateway: RunningGateway) -> str:
    response = get(gateway, "/metrics", AUTH)
    assert response.status_code == 200, response.text
    return response.text


def sample_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    """Return the value of the sample `name` with exactly `labels`, or None when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def assert_no_traceback(response: httpx.Response) -> None:
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


@pytest.mark.parametrize("path", ["/v1/models", "/models"])
def test_models_lists_names_once(shared_gateway: RunningGateway, path: str) -> None:
    response = get(shared_gateway, path, AUTH)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert [card["id"] for card in body["data"]] == ["m", "team/chat", "e"]
    assert {card["object"] for card in body["data"]} == {"model"}
    assert {card["owned_by"] for card in body["data"]} == {"pareto"}


@pytest.mark.parametrize("model_id", ["m", "team/chat", "e"])
def test_model_known(shared_gateway: RunningGateway, model_id: str) -> None:
    response = get(shared_gateway, f"/v1/models/{model_id}", AUTH)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == model_id
    assert response.json()["object"] == "model"


@pytest.mark.parametrize("model_id", ["gpt-unknown", "M", "team", "openai/gpt-fake"])
def test_model_unknown(shared_gateway: RunningGateway, model_id: str) -> None:
    response = get(shared_gateway, f"/v1/models/{model_id}", AUTH)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert_no_traceback(response)


@pytest.mark.parametrize(
    "path", ["/v1/models", "/models", "/v1/models/m", "/v1/models/gpt-unknown", "/metrics"]
)
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "missing_api_key", id="no-header"),
        pytest.param({"Authorization": "Bearer"}, "missing_api_key", id="bearer-only"),
        pytest.param({"Authorization": f"Basic {MASTER_KEY}"}, "missing_api_key", id="basic"),
        pytest.param({"Authorization": "Bearer sk-wrong"}, "invalid_api_key", id="wrong-key"),
        pytest.param(
            {"Authorization": f"Bearer {MASTER_KEY}x"}, "invalid_api_key", id="key-plus-char"
        ),
        pytest.param(
            {"Authorization": f"Bearer {MASTER_KEY[:-1]}"}, "invalid_api_key", id="key-prefix"
        ),
    ],
)
def test_key_required(
    shared_gateway: RunningGateway, path: str, headers: dict[str, str], code: str
) -> None:
    response = get(shared_gateway, path, headers)

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "authentication_error"
    assert MASTER_KEY not in response.text
    assert_no_traceback(response)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions", "/v1/embeddings"])
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "missing_api_key", id="no-header"),
        pytest.param({"Authorization": "Bearer sk-wrong"}, "invalid_api_key", id="wrong-key"),
    ],
)
def test_forwarding_key_required(
    shared_gateway: RunningGateway, path: str, headers: dict[str, str], code: str
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}

    response = httpx.post(shared_gateway.base_url + path, json=body, headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == "authentication_error"


def test_key_scheme_case_insensitive(shared_gateway: RunningGateway) -> None:
    response = get(shared_gateway, "/v1/models", {"Authorization": f"bearer {MASTER_KEY}"})

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/readiness"])
def test_health_open_without_key(shared_gateway: RunningGateway, path: str) -> None:
    response = get(shared_gateway, path)

    assert response.status_code == 200, response.text


def test_liveliness_body(shared_gateway: RunningGateway) -> None:
    assert get(shared_gateway, "/health/liveliness").json() == {"status": "alive"}


def test_readiness_each_database(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, database_url: str
) -> None:
    gateway = start_gateway(models_config(fake_upstream.base_url), database_url)

    response = get(gateway, "/health/readiness")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    assert response.json()["database"] == "connected"


@pytest.fixture
def broken_database(gateway: RunningGateway) -> Iterator[RunningGateway]:
    """Point the gateway's engine at a closed local port, and restore it afterwards."""
    original = gateway.state.engine
    broken = create_engine(UNREACHABLE_DATABASE)
    gateway.state.engine = broken
    yield gateway
    gateway.state.engine = original
    broken.dispose()


def test_readiness_database_down(broken_database: RunningGateway) -> None:
    response = get(broken_database, "/health/readiness")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["database"].startswith("unavailable: ")
    assert "127.0.0.1" in body["database"]
    assert "db-pass-5e1d" not in response.text
    assert_no_traceback(response)


def test_readiness_recovers(gateway: RunningGateway) -> None:
    original = gateway.state.engine
    broken = create_engine(UNREACHABLE_DATABASE)
    gateway.state.engine = broken
    try:
        down = get(gateway, "/health/readiness")
    finally:
        gateway.state.engine = original
        broken.dispose()

    up = get(gateway, "/health/readiness")

    assert down.status_code == 503
    assert up.status_code == 200


def test_liveliness_with_database_down(broken_database: RunningGateway) -> None:
    assert get(broken_database, "/health/liveliness").status_code == 200


def test_metrics_open_when_configured(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    config = models_config(fake_upstream.base_url, require_auth_for_metrics_endpoint=False)
    gateway = start_gateway(config)

    response = get(gateway, "/metrics")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "pareto_requests_total" in response.text


def test_metrics_with_key(gateway: RunningGateway) -> None:
    response = get(gateway, "/metrics", AUTH)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


def test_metrics_after_chat(gateway: RunningGateway) -> None:
    reply = gateway.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "one two three"}]
    )

    text = metrics_text(gateway)

    assert reply.usage is not None
    prompt, completion = reply.usage.prompt_tokens, reply.usage.completion_tokens
    assert 'pareto_requests_total{model="m",status="200"} 1.0' in text.splitlines()
    latency = {"model": "m", "status": "200"}
    assert sample_value(text, "pareto_request_latency_seconds_count", latency) == 1.0
    assert (sample_value(text, "pareto_request_latency_seconds_sum", latency) or 0) > 0
    inf_bucket = {**latency, "le": "+Inf"}
    assert sample_value(text, "pareto_request_latency_seconds_bucket", inf_bucket) == 1.0
    prompt_labels = {"model": "m", "kind": "prompt"}
    completion_labels = {"model": "m", "kind": "completion"}
    assert sample_value(text, "pareto_tokens_total", prompt_labels) == prompt
    assert sample_value(text, "pareto_tokens_total", completion_labels) == completion
    cost = sample_value(text, "pareto_cost_usd_total", {"model": "m"})
    assert cost == pytest.approx(prompt * 0.000001 + completion * 0.000002)


def test_metrics_count_each_request(gateway: RunningGateway) -> None:
    client = gateway.client()
    for _ in range(3):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

    text = metrics_text(gateway)

    assert 'pareto_requests_total{model="m",status="200"} 3.0' in text.splitlines()


def test_metrics_unknown_model(gateway: RunningGateway) -> None:
    name = "secret-project-model-7c2d"
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
        headers=AUTH,
        timeout=10,
    )

    text = metrics_text(gateway)

    assert response.status_code == 404
    assert 'pareto_requests_total{model="unknown",status="404"} 1.0' in text.splitlines()
    errors = {"model": "unknown", "error_type": "model_not_found"}
    assert sample_value(text, "pareto_request_errors_total", errors) == 1.0
    assert name not in text


def test_metrics_invalid_body_label(gateway: RunningGateway) -> None:
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        content=b'{"model": ["m"], "messages": []}',
        headers=AUTH,
        timeout=10,
    )

    text = metrics_text(gateway)

    assert response.status_code == 400
    assert 'pareto_requests_total{model="unknown",status="400"} 1.0' in text.splitlines()


def test_metrics_rejected_key_counted(gateway: RunningGateway) -> None:
    httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer sk-wrong"},
        timeout=10,
    )

    text = metrics_text(gateway)

    assert 'pareto_requests_total{model="unknown",status="401"} 1.0' in text.splitlines()
