"""Admin routes: each policy's route, its decisions and savings to date, and a run-now trigger.

Every route takes the master key, like `/v1/models`. A gateway configured without one is open.
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
    if policy is not None:
        _known_policy(state, policy)
    rows = await _read_database(list_decisions, _engine(state), policy, count)
    return JSONResponse({"object": "list", "data": [row.to_dict() for row in rows]})


@router.post("/pareto/policies/{policy}/evaluate")
async def evaluate_now(request: Request, policy: str) -> JSONResponse:
    """Start an evaluation run of a policy now, as its schedule would; answer 202 at once.

    The run ends with a decision like a scheduled run. 409 when this gateway is already
    evaluating the policy; the run's progress shows in the log and in `pareto eval show`.
    """
    state = _state(request)
    state.authenticate(request.scope)
    _known_policy(state, policy)
    if state.scheduler is None:
        raise ProxyError(
            "This gateway is not running evaluations yet. Retry in a moment.",
            status=503,
            code="evaluations_unavailable",
        )
    if not state.scheduler.start_now(policy):
        raise ProxyError(
            f"The policy '{policy}' is being evaluated already. "
            "Wait for its decision in GET /pareto/decisions.",
            status=409,
            error_type="invalid_request_error",
            code="evaluation_in_progress",
        )
    return JSONResponse({"object": "evaluation", "policy": policy, "status": "started"}, 202)


def _known_policy(state: AppState, policy: str) -> None:
    if policy not in state.routes:
        raise ProxyError(
            f"The policy '{policy[:200]}' is not configured on this gateway. "
            "GET /pareto/policies lists the configured policies.",
            status=404,
            error_type="invalid_request_error",
            code="policy_not_found",
            param="policy",
        )


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
