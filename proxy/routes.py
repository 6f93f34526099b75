"""The gateway's small routes: model listing, health checks and metrics."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from proxy.db import ping
from proxy.errors import ModelNotFoundError
from proxy.state import AppState

router = APIRouter()

READINESS_TIMEOUT_SECONDS = 3.0


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.pareto
    return state


def _model_card(name: str, created: int, owner: str = "pareto") -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(request: Request) -> JSONResponse:
    """List the configured model names, then the policy names."""
    state = _state(request)
    state.authenticate(request.scope)
    created = int(state.started_at)
    data = [_model_card(name, created) for name in state.groups.names()]
    # Policies are callable by name too, so clients that list models before calling find them.
    data += [_model_card(name, created, "pareto-policy") for name in state.routes.names()]
    return JSONResponse({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}")
@router.get("/models/{model_id:path}", include_in_schema=False)
async def get_model(request: Request, model_id: str) -> JSONResponse:
    """Describe one configured model."""
    state = _state(request)
    state.authenticate(request.scope)
    if model_id in state.routes:
        return JSONResponse(_model_card(model_id, int(state.started_at), "pareto-policy"))
    if model_id not in state.groups:
        raise ModelNotFoundError(model_id)
    return JSONResponse(_model_card(model_id, int(state.started_at)))


@router.get("/health/liveliness")
async def liveliness() -> JSONResponse:
    """Return 200 as long as the process serves requests."""
    return JSONResponse({"status": "alive"})


@router.get("/health/readiness")
async def readiness(request: Request) -> JSONResponse:
    """Report whether the database responds and takes request rows; 503 when it does not."""
    state = _state(request)
    queued = state.recorder.queued if state.recorder else 0
    if state.engine is None:
        return JSONResponse({"status": "not ready", "database": "not connected"}, 503)
    recorder = state.recorder
    if recorder is not None and not recorder.database_ok:
        # A locked SQLite file still answers a query but rejects writes until the lock goes.
        reason = f"request rows cannot be written: {recorder.last_error}"
        body = {"status": "not ready", "database": f"unavailable: {reason}", "queued_rows": queued}
        return JSONResponse(body, 503)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await asyncio.to_thread(ping, state.engine)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        body = {"status": "not ready", "database": f"unavailable: {reason}", "queued_rows": queued}
        return JSONResponse(body, 503)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    body = {"status": "ready", "database": "connected", "database_ms": elapsed_ms}
    body["queued_rows"] = queued
    return JSONResponse(body)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Export Prometheus metrics (master key required unless configured public)."""
    state = _state(request)
    if state.metrics_require_auth:
        state.authenticate(request.scope)
    if state.recorder is not None:
        state.metrics.recorder_queued.set(state.recorder.queued)
    state.metrics.in_flight.set(state.in_flight)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
