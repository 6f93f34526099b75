"""The live report at /ui: master key or session cookie, policy pages, login and errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from proxy.db import make_engine
from proxy.decisions import record_decision
from proxy.routes_ui import MAX_FORM_BYTES, policy_path
from proxy.ui_session import COOKIE_NAME, SESSION_SECONDS, issue_session, verify_session
from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway
from tests.proxy.test_admin_api import UNREACHABLE_DATABASE, admin_config
from tests.proxy.test_decisions import POLICY, make_decision

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> RunningGateway:
    return start_gateway(admin_config(fake_upstream.base_url))


@pytest.fixture
def open_gateway(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> RunningGateway:
    config = admin_config(fake_upstream.base_url)
    del config["general_settings"]
    return start_gateway(config)


def get(
    gateway: RunningGateway,
    path: str,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> httpx.Response:
    with httpx.Client(base_url=gateway.base_url, cookies=cookies, timeout=10) as client:
        return client.get(path, headers=headers or {})


def login(gateway: RunningGateway, key: str) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/ui/login", data={"key": key}, follow_redirects=False, timeout=10
    )


def assert_html(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert "Traceback" not in response.text
    assert MASTER_KEY not in response.text


# Authentication


@pytest.mark.parametrize("path", ["/ui", policy_path(POLICY), policy_path("nope")])
def test_ui_without_key_401(gateway: RunningGateway, path: str) -> None:
    response = get(gateway, path)

    assert response.status_code == 401
    assert_html(response)
    assert response.headers["www-authenticate"] == 'Bearer realm="pareto"'
    assert '<form method="post" action="/ui/login">' in response.text
    assert POLICY not in response.text


def test_ui_wrong_key_401(gateway: RunningGateway) -> None:
    response = get(gateway, "/ui", {"Authorization": "Bearer sk-wrong-key-1234"})

    assert response.status_code == 401
    assert_html(response)
    assert "Invalid API key" in response.text
    assert "sk-wrong-key-1234" not in response.text


def test_ui_with_key_lists_policies(gateway: RunningGateway) -> None:
    response = get(gateway, "/ui", AUTH)

    assert response.status_code == 200, response.text
    assert_html(response)
    assert f'<a href="{policy_path(POLICY)}">{POLICY}</a>, routes to big' in response.text
    assert f'<a href="{policy_path("second")}">second</a>, routes to small' in response.text
    assert "/ui/logout" in response.text


def test_ui_policy_page_with_key(gateway: RunningGateway, engine: Engine) -> None:
    decision_id = record_decision(engine, POLICY, make_decision())

    response = get(gateway, policy_path(POLICY), AUTH)

    assert response.status_code == 200, response.text
    assert_html(response)
    assert f"<h1>Policy {POLICY}</h1>" in response.text
    assert response.text.count('<g class="candidate') == 2
    assert f"Decision {decision_id} at " in response.text
    assert "served by the gateway" in response.text


def test_ui_policy_page_before_decision(gateway: RunningGateway) -> None:
    response = get(gateway, policy_path("second"), AUTH)

    assert response.status_code == 200, response.text
    assert "No decision yet" in response.text
    assert "<svg" not in response.text


def test_ui_unknown_policy_404(gateway: RunningGateway) -> None:
    response = get(gateway, policy_path("<nope>"), AUTH)

    assert response.status_code == 404
    assert_html(response)
    assert "The policy &#x27;&lt;nope&gt;&#x27; is not configured" in response.text
    assert "<nope>" not in response.text


def test_ui_database_unavailable_503(gateway: RunningGateway) -> None:
    working = gateway.state.engine
    gateway.state.engine = create_engine(UNREACHABLE_DATABASE)
    try:
        response = get(gateway, policy_path(POLICY), AUTH)
    finally:
        gateway.state.engine.dispose()
        gateway.state.engine = working

    assert response.status_code == 503
    assert_html(response)
    assert "The database could not be read." in response.text


# Login with a session cookie


def test_login_sets_signed_cookie(gateway: RunningGateway) -> None:
    response = login(gateway, MASTER_KEY)

    assert response.status_code == 303
    assert response.headers["location"] == "/ui"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert f"Max-Age={SESSION_SECONDS}" in cookie
    assert MASTER_KEY not in cookie


def test_login_cookie_opens_pages(gateway: RunningGateway) -> None:
    value = login(gateway, MASTER_KEY).cookies[COOKIE_NAME]

    index = get(gateway, "/ui", cookies={COOKIE_NAME: value})
    page = get(gateway, policy_path(POLICY), cookies={COOKIE_NAME: value})

    assert index.status_code == 200, index.text
    assert page.status_code == 200, page.text


def test_login_cookie_not_an_api_key(gateway: RunningGateway) -> None:
    value = login(gateway, MASTER_KEY).cookies[COOKIE_NAME]

    response = get(gateway, "/pareto/policies", cookies={COOKIE_NAME: value})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_login_wrong_key_401(gateway: RunningGateway) -> None:
    response = login(gateway, "sk-wrong-key-1234")

    assert response.status_code == 401
    assert_html(response)
    assert "set-cookie" not in response.headers
    assert "Invalid key." in response.text


def test_login_oversized_form_400(gateway: RunningGateway) -> None:
    response = login(gateway, "k" * (MAX_FORM_BYTES + 1))

    assert response.status_code == 400
    assert "set-cookie" not in response.headers


def test_tampered_cookie_401(gateway: RunningGateway) -> None:
    value = login(gateway, MASTER_KEY).cookies[COOKIE_NAME]
    expires, _, signature = value.partition(".")
    later = f"{int(expires) + 3600}.{signature}"

    response = get(gateway, "/ui", cookies={COOKIE_NAME: later})

    assert response.status_code == 401
    assert "The session has expired. Log in again." in response.text


def test_logout_clears_cookie(gateway: RunningGateway) -> None:
    value = login(gateway, MASTER_KEY).cookies[COOKIE_NAME]

    response = httpx.post(
        gateway.base_url + "/ui/logout",
        cookies={COOKIE_NAME: value},
        follow_redirects=False,
        timeout=10,
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
    assert response.headers["set-cookie"].startswith(f'{COOKIE_NAME}=""')
    assert "Max-Age=0" in response.headers["set-cookie"]


def test_logout_without_session_401(gateway: RunningGateway) -> None:
    response = httpx.post(gateway.base_url + "/ui/logout", follow_redirects=False, timeout=10)

    assert response.status_code == 401
    assert "Max-Age=0" in response.headers["set-cookie"]


def test_login_form_page(gateway: RunningGateway) -> None:
    response = get(gateway, "/ui/login")

    assert response.status_code == 200
    assert_html(response)
    assert 'type="password"' in response.text


# A gateway without a master key


def test_open_gateway_serves_ui(open_gateway: RunningGateway) -> None:
    index = get(open_gateway, "/ui")
    page = get(open_gateway, policy_path(POLICY))

    assert index.status_code == 200
    assert "has no master key" in index.text
    assert "/ui/logout" not in index.text
    assert page.status_code == 200


def test_open_gateway_login_redirects(open_gateway: RunningGateway) -> None:
    response = httpx.get(open_gateway.base_url + "/ui/login", follow_redirects=False, timeout=10)

    assert response.status_code == 303
    assert response.headers["location"] == "/ui"


# Session values


def test_session_valid_until_expiry() -> None:
    key = b"sk-one"
    value = issue_session(key, now=1000.0)

    assert verify_session(key, value, now=1000.0 + SESSION_SECONDS - 1)
    assert not verify_session(key, value, now=1000.0 + SESSION_SECONDS)


def test_session_other_key_rejected() -> None:
    value = issue_session(b"sk-one", now=time.time())

    assert not verify_session(b"sk-two", value, now=time.time())


@pytest.mark.parametrize("value", ["", ".", "abc.def", "123", "9" * 13 + ".00", "-5.00"])
def test_session_malformed_rejected(value: str) -> None:
    assert not verify_session(b"sk-one", value, now=0.0)
