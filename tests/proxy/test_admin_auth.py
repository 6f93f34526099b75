"""Every route the app serves needs the master key, except the few that are public by design.

The table of routes is read from the app itself, so a route added later is covered without
editing this file: it needs the key unless it is added to `PUBLIC`. Each protected route is
called without a key, with a wrong key and with the right key, and the wrong key must go through
`hmac.compare_digest`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from proxy.app import create_app
from proxy.config import parse_config
from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment
from tests.proxy.app_routes import served_routes

POLICY = "support"
WRONG_KEY = MASTER_KEY[:-1] + "x"
# Routes anyone may call: the probes, the API description, and the login form, its submission
# (which checks the key it receives) and the logout of the /ui pages.
PUBLIC = frozenset(
    {
        ("GET", "/health/liveliness"),
        ("GET", "/health/readiness"),
        ("GET", "/openapi.json"),
        ("GET", "/ui/login"),
        ("POST", "/ui/login"),
        ("POST", "/ui/logout"),
    }
)
# Values for path parameters, so that no route returns 404.
PATH_VALUES = {"{model_id:path}": "m", "{name:path}": POLICY, "{policy}": POLICY}
BODIES = {
    "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/embeddings": {"model": "e", "input": "hi"},
    "/embeddings": {"model": "e", "input": "hi"},
}


def auth_config(api_base: str, **litellm_settings: Any) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("m", "gpt-fake", api_base),
            deployment("e", "text-embedding-fake", api_base),
        ],
        "litellm_settings": litellm_settings,
        "general_settings": {"master_key": MASTER_KEY},
        "policies": {
            POLICY: {"reference": "m", "candidates": ["m"], "judge": "checks", "sample_rate": 0}
        },
    }


def routes_with_values() -> list[tuple[str, str]]:
    """Return (method, path) of every route of the app, path parameters filled in."""
    config = auth_config("http://127.0.0.1:9/v1")
    app = create_app(parse_config(yaml.safe_load(yaml.safe_dump(config)), {}))
    routes = []
    for method, path in served_routes(app):
        for name, value in PATH_VALUES.items():
            path = path.replace(name, value)
        assert "{" not in path, f"add a value for the parameter of {path} to PATH_VALUES"
        routes.append((method, path))
    return routes


ROUTES = routes_with_values()
PROTECTED = [route for route in ROUTES if route not in PUBLIC]
# The /ui pages return an HTML login form; every other route uses the OpenAI envelope.
HTML_PREFIX = "/ui"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    database = tmp_path_factory.mktemp("auth") / "pareto.db"
    with (
        FakeUpstream() as upstream,
        RunningGateway(auth_config(upstream.base_url), f"sqlite:///{database}") as running,
    ):
        yield running


def call(gateway: RunningGateway, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    body = BODIES.get(path)
    return httpx.request(
        method,
        gateway.base_url + path,
        json=body,
        headers=headers,
        timeout=20,
        follow_redirects=False,
    )


def test_route_table_complete() -> None:
    paths = {path for _, path in ROUTES}

    assert {"/v1/chat/completions", "/v1/embeddings", "/metrics", "/pareto/policies"} <= paths
    assert "/pareto/decisions" in paths
    assert ("GET", "/health/liveliness") in ROUTES
    assert ("GET", "/openapi.json") in ROUTES


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("key", [None, WRONG_KEY], ids=["no-key", "wrong-key"])
def test_protected_route_rejects(
    gateway: RunningGateway, method: str, path: str, key: str | None
) -> None:
    response = call(gateway, method, path, key)

    assert response.status_code == 401, response.text
    assert MASTER_KEY not in response.text
    if not path.startswith(HTML_PREFIX):
        error = response.json()["error"]
        assert error["type"] == "authentication_error"
        assert error["code"] == ("missing_api_key" if key is None else "invalid_api_key")


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_protected_route_accepts_key(gateway: RunningGateway, method: str, path: str) -> None:
    response = call(gateway, method, path, MASTER_KEY)

    assert response.status_code not in (401, 403), response.text
    assert response.status_code < 500, response.text
    assert MASTER_KEY not in response.text


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_wrong_key_compared_in_constant_time(
    gateway: RunningGateway, method: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(first: Any, second: Any) -> bool:
        compared.append((first, second))
        return original(first, second)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(secrets, "compare_digest", spy)

    response = call(gateway, method, path, WRONG_KEY)

    assert response.status_code == 401
    assert (WRONG_KEY.encode(), MASTER_KEY.encode()) in compared


@pytest.mark.parametrize(
    "path", sorted(path for method, path in PUBLIC & set(ROUTES) if method == "GET")
)
def test_public_route_open(gateway: RunningGateway, path: str) -> None:
    response = call(gateway, "GET", path, None)

    assert response.status_code == 200, response.text


def test_metrics_public_when_configured(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    config = auth_config(fake_upstream.base_url, require_auth_for_metrics_endpoint=False)
    gateway = start_gateway(config)

    metrics = call(gateway, "GET", "/metrics", None)
    policies = call(gateway, "GET", "/pareto/policies", None)

    assert metrics.status_code == 200
    assert "pareto_requests_in_flight" in metrics.text
    assert policies.status_code == 401
