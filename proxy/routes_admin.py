"""Read-only admin routes: each policy's route, its decisions and its savings to date.

Both routes take the master key, like `/v1/models`. A gateway configured without one is open.
Errors use the OpenAI error envelope.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from proxy.decisions import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, describe_policies, list_decisions
from proxy.errors import InvalidRequestError, ProxyError
from proxy.state import AppState

router = APIRouter()

P = ParamSpec("P")
T = TypeVar("T")


@router.get("/pareto/policies")
async def get_policies(request: Request) -> JSONResponse:
    """Describe every policy: its route in this gateway, last decision and savings to date."""
    state = _state(request)
    state.authenticate(request.scope)
    engine = _engine(state)
    routes = state.routes
    current = {name: routes.route(name) for name in routes.names()}
    configs = {name: routes.policy(name) for name in routes.names()}
    data = await _read_database(describe_policies, engine, configs, current)
    return JSONResponse({"object": "list", "data": data})


@router.get("/pareto/decisions")
async def get_decisions(
    request: Request, policy: str | None = None, limit: str | None = None
) -> JSONResponse:
    """List stored decisions, newest first, with their whole candidate tables."""
    state = _state(request)
    state.authenticate(request.scope)
    count = _parse_limit(limit)
    if policy is not None and policy not in state.routes:
        raise ProxyError(
            f"The policy '{policy[:200]}' is not configured on this gateway. "
            "GET /pareto/policies lists the configured policies.",
            status=404,
            error_type="invalid_request_error",
            code="policy_not_found",
            param="policy",
        )
    rows = await _read_database(list_decisions, _engine(state), policy, count)
    return JSONResponse({"object": "list", "data": [row.to_dict() for row in rows]})


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.pareto
    return state


def _engine(state: AppState) -> Engine:
    if state.engine is None:
        raise ProxyError(
            "The gateway has not connected to its database yet. Retry in a moment.",
            status=503,
            code="database_unavailable",
        )
    return state.engine


def _parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIST_LIMIT
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise InvalidRequestError(
            f"Invalid limit '{text[:50]}': expected a whole number from 1 to {MAX_LIST_LIMIT}.",
            code="invalid_limit",
            param="limit",
        )
    return value


async def _read_database(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except SQLAlchemyError as exc:
        first_line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ProxyError(
            f"The database could not be read: {first_line}. Retry when it is reachable.",
            status=503,
            code="database_unavailable",
        ) from exc
