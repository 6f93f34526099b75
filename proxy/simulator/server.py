"""The simulator's HTTP API, an aiohttp application.

Routes:

- ``POST /v1/chat/completions``: plain, or streamed as server-sent events with ``stream: true``
  (and a final usage chunk with ``stream_options.include_usage``).
- ``GET /v1/models`` and ``GET /v1/models/{model}``.
- ``GET /health``.

Every error, including unknown paths and methods, is OpenAI's error envelope with its status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy.simulator.catalog import Catalog
from proxy.simulator.completions import Usage, chunk, completion, new_id, parse_body, parse_request
from proxy.simulator.errors import SimulatedAPIError, error_body
from proxy.simulator.models import SimulatedModel

_log = logging.getLogger(__name__)

CHUNK_TOKENS = 3
MAX_BODY_BYTES = 32 * 1024 * 1024
OWNER = "pareto-simulator"


@dataclass(frozen=True)
class Simulation:
    """The handlers' shared state: the models, and the factor that divides every delay."""

    catalog: Catalog
    speed: float = 1.0


SIMULATION = web.AppKey("simulation", Simulation)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(catalog: Catalog, speed: float = 1.0) -> web.Application:
    """Build the aiohttp application serving `catalog`, with delays divided by `speed`."""
    if not speed > 0:
        raise ValueError(f"speed must be greater than 0, got {speed!r}")
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[SIMULATION] = Simulation(catalog, speed)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_get("/health", health)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SimulatedAPIError as exc:
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"Unknown request URL: {request.method} {request.path}."
            body = error_body(message, "invalid_request_error", "unknown_url")
        elif exc.status == 405:
            message = f"Method {request.method} is not allowed for {request.path}."
            body = error_body(message, "invalid_request_error", "method_not_allowed")
        else:
            body = error_body(exc.reason, "invalid_request_error")
        return web.json_response(body, status=exc.status)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:  # noqa: BLE001 - any bug becomes a 500 in the envelope
        _log.exception("The simulator failed on %s %s", request.method, request.path)
        body = error_body("The simulator failed unexpectedly; see its log.", "server_error")
        return web.json_response(body, status=500)


def _model_object(model: SimulatedModel) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": 0, "owned_by": OWNER}


async def list_models(request: web.Request) -> web.Response:
    catalog = request.app[SIMULATION].catalog
    return web.json_response({"object": "list", "data": [_model_object(m) for m in catalog]})


async def get_model(request: web.Request) -> web.Response:
    model = request.app[SIMULATION].catalog.get(request.match_info["model"])
    return web.json_response(_model_object(model))


async def health(request: web.Request) -> web.Response:
    catalog = request.app[SIMULATION].catalog
    return web.json_response({"status": "ok", "models": catalog.names()})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    simulation = request.app[SIMULATION]
    chat = parse_request(parse_body(await request.read()))
    model = simulation.catalog.get(chat.model)
    reply = model.reply(chat.messages)

    pieces = model.counter.pieces(reply.text)
    finish_reason = "stop"
    completion_tokens = reply.completion_tokens
    if chat.max_tokens is not None and len(pieces) > chat.max_tokens:
        pieces = pieces[: chat.max_tokens]
        finish_reason = "length"
        completion_tokens = chat.max_tokens
    if completion_tokens is None:
        completion_tokens = len(pieces)
    prompt_tokens = reply.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = model.counter.count_messages(chat.messages)
    usage = Usage(prompt_tokens, completion_tokens)
    timing = model.timing(reply, len(pieces)).scaled(simulation.speed)

    if not chat.stream:
        await asyncio.sleep(timing.total(len(pieces)))
        text = "".join(pieces)
        return web.json_response(completion(new_id(), chat.model, text, finish_reason, usage))

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    completion_id, created = new_id(), int(time.time())
    groups = [
        "".join(pieces[start : start + CHUNK_TOKENS])
        for start in range(0, len(pieces), CHUNK_TOKENS)
    ] or [""]
    loop = asyncio.get_running_loop()
    started = loop.time()
    interval = CHUNK_TOKENS * timing.per_token
    include_usage = chat.include_usage
    for index, text in enumerate(groups):
        await asyncio.sleep(max(0.0, started + timing.ttft + index * interval - loop.time()))
        delta = {"role": "assistant", "content": text} if index == 0 else {"content": text}
        await _send(
            response, chunk(completion_id, created, chat.model, delta, include_usage=include_usage)
        )
    # The reply is complete when its last token is due, as a plain reply is.
    await asyncio.sleep(max(0.0, started + timing.total(len(pieces)) - loop.time()))
    await _send(
        response,
        chunk(completion_id, created, chat.model, {}, finish_reason, include_usage=include_usage),
    )
    if chat.include_usage:
        await _send(response, chunk(completion_id, created, chat.model, None, usage=usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _send(response: web.StreamResponse, body: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(body).encode() + b"\n\n")
