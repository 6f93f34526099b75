"""The live policy reports in a browser: `/ui` lists the policies, `/ui/policy/{name}` shows one.

The report is the page that `pareto report` writes, read from the database off the event loop.
With a master key configured, every page needs it: as `Authorization: Bearer KEY`, or through
the form at `/ui/login`, which sets an HttpOnly, SameSite=Strict session cookie signed with the
key (see `proxy.ui_session`). The key never appears in a URL or a page. Errors are HTML pages
with the matching status; a request without a valid key gets 401 and the login form.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from proxy.errors import AuthenticationError
from proxy.report.data import load_report
from proxy.report.layout import CONTENT_SECURITY_POLICY
from proxy.report.page import LiveLinks, render_report
from proxy.report.ui_pages import PolicyLink, render_error, render_index, render_login
from proxy.state import AppState
from proxy.ui_session import COOKIE_NAME, SESSION_SECONDS, issue_session, verify_session

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

INDEX_PATH = "/ui"
LOGIN_PATH = "/ui/login"
LOGOUT_PATH = "/ui/logout"
MAX_FORM_BYTES = 4096

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def policy_path(name: str) -> str:
    """Return the path of a policy's report page, with the name percent-encoded."""
    return f"{INDEX_PATH}/policy/{quote(name, safe='')}"


@router.get(INDEX_PATH)
async def ui_index(request: Request) -> Response:
    """List the configured policies with the model each routes to and a link to its report."""
    state = _state(request)
    denied = _deny(state, request)
    if denied is not None:
        return denied
    routes = state.routes
    links = [
        PolicyLink(name, routes.route(name).model, policy_path(name)) for name in routes.names()
    ]
    page = render_index(
        links, logout_action=_logout_action(state), open_gateway=state.master_key is None
    )
    return _html(page)


@router.get(INDEX_PATH + "/policy/{name:path}")
async def ui_policy(request: Request, name: str) -> Response:
    """Show the report of one policy, read from the database now."""
    state = _state(request)
    denied = _deny(state, request)
    if denied is not None:
        return denied
    if name not in state.routes:
        message = f"The policy '{name[:200]}' is not configured on this gateway."
        return _html(render_error(404, "Policy not found", message, INDEX_PATH), 404)
    if state.engine is None:
        message = "The gateway has not connected to its database yet. Retry in a moment."
        return _html(render_error(503, "Database not ready", message, INDEX_PATH), 503)

    try:
        report = await asyncio.to_thread(load_report, state.engine, name, state.routes.policy(name))
    except SQLAlchemyError as exc:
        first_line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        logger.warning("report of policy %s failed: database error: %s", name, first_line)
        message = "The database could not be read. Retry when it is reachable."
        return _html(render_error(503, "Database unavailable", message, INDEX_PATH), 503)
    links = LiveLinks(INDEX_PATH, _logout_action(state))
    return _html(render_report(report, links))


@router.get(LOGIN_PATH)
async def ui_login_form(request: Request) -> Response:
    """Show the login form, or go straight to the policy list on a gateway without a key."""
    if _state(request).master_key is None:
        return RedirectResponse(INDEX_PATH, status_code=303)
    return _html(render_login(LOGIN_PATH))


@router.post(LOGIN_PATH)
async def ui_login(request: Request) -> Response:
    """Check the posted master key and start a session cookie for the /ui pages."""
    state = _state(request)
    if state.master_key is None:
        return RedirectResponse(INDEX_PATH, status_code=303)
    form = await _read_form(request)
    if form is None:
        message = f"The login form is invalid or larger than {MAX_FORM_BYTES} bytes."
        return _html(render_login(LOGIN_PATH, message), 400)
    presented = form.get("key", [""])[0].strip().encode()
    if not presented or not hmac.compare_digest(presented, state.master_key):
        return _html(render_login(LOGIN_PATH, "Invalid key. Enter the master key."), 401)

    response = RedirectResponse(INDEX_PATH, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        issue_session(state.master_key, time.time()),
        max_age=SESSION_SECONDS,
        path=INDEX_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post(LOGOUT_PATH)
async def ui_logout(request: Request) -> Response:
    """End the browser's session and return to the login form.

    Like every /ui page it needs the key or a valid session, and answers 401 without one. Both
    answers clear the cookie.
    """
    state = _state(request)
    response = _deny(state, request) or RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE_NAME, path=INDEX_PATH, httponly=True, samesite="strict")
    return response


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.pareto
    return state


def _deny(state: AppState, request: Request) -> Response | None:
    """Return the 401 login page unless the request carries the master key or a session."""
    if state.master_key is None:
        return None
    if "authorization" in request.headers:
        try:
            state.authenticate(request.scope)
        except AuthenticationError as exc:
            return _unauthorized(exc.message)
        return None
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie is not None and verify_session(state.master_key, cookie, time.time()):
        return None
    return _unauthorized("The session has expired. Log in again." if cookie else None)


def _unauthorized(message: str | None) -> Response:
    response = _html(render_login(LOGIN_PATH, message), 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="pareto"'
    return response


def _logout_action(state: AppState) -> str | None:
    return LOGOUT_PATH if state.master_key is not None else None


async def _read_form(request: Request) -> dict[str, list[str]] | None:
    """Read an `application/x-www-form-urlencoded` body. Return None if invalid or too large."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        return parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None


def _html(page: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status, headers=SECURITY_HEADERS)
