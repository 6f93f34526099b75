"""The app factory: routes, OpenAI-shaped error handlers and the lifespan that owns resources."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.engine import make_url
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from evaluator.sampler import CaseSampler
from proxy import logs
from proxy.config import LoadedConfig
from proxy.db import make_engine, normalize_url
from proxy.deployments import build_groups
from proxy.endpoints import ChatCompletions, Embeddings, send_error
from proxy.errors import ProxyError, error_body
from proxy.forward import Forwarder
from proxy.header_limit import KIB, header_bytes, headers_too_large
from proxy.masking import deployment_secrets
from proxy.metrics import Metrics
from proxy.openapi import router as openapi_router
from proxy.recorder import Recorder
from proxy.retention import RetentionSettings, RetentionTask
from proxy.route_sync import RouteSync, sync_interval
from proxy.route_table import RouteTable
from proxy.routes import router
from proxy.routes_admin import router as admin_router
from proxy.routes_ui import router as ui_router
from proxy.sampling import sampling_policies
from proxy.scheduler import EvaluationScheduler
from proxy.state import AppState
from proxy.upstream import new_session

logger = logging.getLogger(__name__)

JSON = "application/json"


def build_state(loaded: LoadedConfig) -> AppState:
    """Build the request-independent objects that need no I/O."""
    config = loaded.config
    warnings: list[str] = []
    groups = build_groups(config, warnings)
    for warning in warnings:
        logger.warning("config: %s", warning)
    master = config.general_settings.master_key
    secrets = deployment_secrets(groups.all())
    if master is not None:
        secrets.append(master.get_secret_value())
    url = make_url(normalize_url(loaded.database_url))
    if url.password:
        secrets.append(url.password)
    return AppState(
        loaded=loaded,
        groups=groups,
        metrics=Metrics(),
        max_body_bytes=int(config.general_settings.max_request_size_mb * 1_048_576),
        master_key=master.get_secret_value().encode() if master is not None else None,
        secrets=secrets,
        metrics_require_auth=config.litellm_settings.require_auth_for_metrics_endpoint,
        routes=RouteTable(config.policies),
    )


class Gateway:
    """The ASGI app: the forwarding endpoints directly, everything else through FastAPI.

    The two forwarding routes skip FastAPI's middleware stack, which cost about 15% of
    throughput on the request path. They return their own errors in the OpenAI envelope.
    """

    def __init__(self, api: FastAPI, hot_routes: dict[str, ASGIApp]) -> None:
        self.api = api
        self.state: AppState = api.state.pareto
        self._hot_routes = hot_routes
        limit = self.state.loaded.config.general_settings.max_header_size_kb
        self._max_header_bytes = int(limit * KIB)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and header_bytes(scope) > self._max_header_bytes:
            await send_error(send, headers_too_large(self._max_header_bytes))
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._hot_routes.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.api(scope, receive, send)


def create_app(loaded: LoadedConfig, state: AppState | None = None) -> Gateway:
    """Create the gateway app for a validated configuration."""
    app_state = state or build_state(loaded)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(app_state)
        try:
            yield
        finally:
            await _stop(app_state)

    app = FastAPI(
        title="Pareto",
        summary="OpenAI-compatible LLM gateway",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # proxy.openapi serves the hand-written document, which includes the forwarding routes.
        openapi_url=None,
    )
    app.state.pareto = app_state
    hot_routes: dict[str, ASGIApp] = {}
    chat = ChatCompletions(app_state)
    embeddings = Embeddings(app_state)
    for prefix in ("/v1", ""):
        for path, endpoint in (
            (f"{prefix}/chat/completions", chat),
            (f"{prefix}/embeddings", embeddings),
        ):
            app.router.routes.append(Route(path, endpoint, methods=["POST"]))
            hot_routes[path] = endpoint
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(openapi_router)
    app.include_router(ui_router)
    _install_error_handlers(app)
    return Gateway(app, hot_routes)


LOG_FLUSH_SECONDS = 0.5
GC_YOUNG_THRESHOLD = 50_000
GIL_SWITCH_SECONDS = 0.001


async def _flush_logs_periodically() -> None:
    while True:
        await asyncio.sleep(LOG_FLUSH_SECONDS)
        logs.flush_handlers()


async def _start(state: AppState) -> None:
    loaded = state.loaded
    # Read before anything opens, so that an invalid value stops the start with nothing to close.
    route_sync_seconds = sync_interval(os.environ)
    state.engine = make_engine(loaded.database_url)
    state.session = new_session()
    failures = state.metrics.upstream_failures
    state.forwarder = Forwarder(
        loaded.config,
        state.groups,
        state.session,
        on_failure=lambda deployment, kind: failures.labels(deployment, kind).inc(),
    )
    state.recorder = Recorder(
        state.engine,
        max_queue=loaded.config.general_settings.request_log_max_queue,
        on_drop=state.metrics.recorder_dropped.inc,
    )
    state.recorder.start()
    state.request_lines = logs.request_line_writer()
    if loaded.config.policies:
        state.sampler = CaseSampler(
            state.engine,
            sampling_policies(loaded.config),
            on_drop=lambda count: state.metrics.sampler_dropped.inc(count),
        )
        state.sampler.start()
    state.background.append(asyncio.create_task(_flush_logs_periodically(), name="log-flush"))
    retention_days = loaded.config.general_settings.retention_days
    if retention_days is not None:
        retention = RetentionTask(
            state.engine,
            RetentionSettings(
                retention_days, loaded.config.general_settings.retention_include_imported
            ),
            state.retention_first_delay,
            state.retention_interval,
        )
        state.background.append(asyncio.create_task(retention.run(), name="retention"))
    if state.routes:
        route_sync = RouteSync(state.engine, state.routes, route_sync_seconds)
        await route_sync.load()
        state.background.append(asyncio.create_task(route_sync.run(), name="route-sync"))
        state.scheduler = EvaluationScheduler(state)
        state.scheduler.start()
    # Objects that live as long as the process (modules, config, app) leave the collector's
    # view, so full collections stay short. Before this they added milliseconds to p99 latency.
    gc.collect()
    gc.freeze()
    # A request allocates hundreds of short-lived containers, nearly all freed by reference
    # counting. Collecting the young generation every 50,000 allocations instead of every 700
    # raised throughput by about 7% in benchmarks/proxy_overhead.py.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    # The recorder and sampler threads run Python code between database calls. A shorter GIL
    # switch interval (the default is 5 ms) bounds how long a request waits behind them.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    if state.master_key is None:
        logger.warning("general_settings.master_key is not set: the gateway accepts any caller")
    logger.info(
        "gateway started: models=%d deployments=%d database=%s",
        len(state.groups.names()),
        len(state.groups.all()),
        make_url(normalize_url(loaded.database_url)).render_as_string(hide_password=True),
    )


async def _stop(state: AppState) -> None:
    if state.scheduler is not None:
        await state.scheduler.stop()
    for task in state.background:
        task.cancel()
    await asyncio.gather(*state.background, return_exceptions=True)
    state.background.clear()
    if state.sampler is not None:
        await state.sampler.stop()
    if state.recorder is not None:
        await state.recorder.stop()
        logger.info("request rows written: %d", state.recorder.written)
    if state.session is not None:
        await state.session.close()
    if state.engine is not None:
        state.engine.dispose()
    logger.info("gateway stopped")
    logging.shutdown()


def _install_error_handlers(app: FastAPI) -> None:
    async def proxy_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return Response(exc.body(), exc.status, headers=exc.headers, media_type=JSON)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = "Unknown route. The gateway serves the OpenAI API under /v1."
            body = error_body(404, message, "invalid_request_error", "not_found")
        elif exc.status_code == 405:
            message = "Method not allowed on this route."
            body = error_body(405, message, "invalid_request_error", "method_not_allowed")
        else:
            body = error_body(exc.status_code, str(exc.detail), "invalid_request_error")
        return Response(body, exc.status_code, headers=exc.headers, media_type=JSON)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"Invalid request: {where}: {first.get('msg', 'invalid value')}"
        return Response(error_body(400, message, "invalid_request_error"), 400, media_type=JSON)

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.error(
            "unexpected error: path=%s error=%s",
            request.url.path,
            type(exc).__name__,
            exc_info=exc,
        )
        message = "The gateway failed unexpectedly; the error is in its log."
        return Response(
            error_body(500, message, "api_error", "internal_error"), 500, media_type=JSON
        )

    app.add_exception_handler(ProxyError, proxy_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
