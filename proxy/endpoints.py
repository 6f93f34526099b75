"""The forwarding endpoints, `POST /v1/chat/completions` and `POST /v1/embeddings`.

They are plain ASGI apps rather than FastAPI handlers: the hot path skips dependency injection
and response models, reads the body once, parses it once with orjson and sends the upstream's
bytes on unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from evaluator.sampler import should_sample
from proxy import body as bodies
from proxy.deployments import Deployment
from proxy.disconnect import CLIENT_CLOSED_REQUEST, DisconnectWatch
from proxy.errors import InvalidRequestError, ModelNotFoundError, ProxyError
from proxy.forward import Trace
from proxy.logs import REQUEST_LOGGER
from proxy.recorder import RequestRow
from proxy.sse import error_event
from proxy.state import AppState
from proxy.streaming import relay_stream
from proxy.usage import Usage

logger = logging.getLogger(REQUEST_LOGGER)

JSON_TYPE = (b"content-type", b"application/json")
INTERNAL_ERROR = ProxyError(
    "The gateway failed unexpectedly; the error is in its log.", code="internal_error"
)
SHUTDOWN_ERROR = ProxyError(
    "The gateway shut down before the response was complete. Retry the request.",
    status=503,
    code="gateway_shutting_down",
)


@dataclass(slots=True)
class Exchange:
    """One request in flight: what the record row and the log line need."""

    request_id: str
    endpoint: str
    started: float
    key_id: str | None = None
    requested_model: str | None = None
    target_model: str = ""
    policy: str | None = None
    decision_id: int | None = None
    sample: bool = False
    stream: bool = False
    status: int = 200
    error_type: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    ttft: float | None = None
    response_started: bool = False

    def headers(self, trace: Trace) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-pareto-request-id", self.request_id.encode())]
        if trace.deployment is not None:
            headers.append((b"x-pareto-model", trace.deployment.model_name.encode()))
            headers.append((b"x-pareto-upstream", trace.deployment.litellm_model.encode()))
        if self.policy is not None:
            headers.append((b"x-pareto-policy", self.policy.encode()))
            if self.decision_id is not None:
                headers.append((b"x-pareto-decision", str(self.decision_id).encode()))
        return headers


class ForwardingEndpoint:
    """Shared request handling of the two forwarding endpoints."""

    endpoint = "chat/completions"
    samples = False  # whether successful requests of a policy may become benchmark cases

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = Exchange(self.state.next_request_id(), self.endpoint, time.perf_counter())
        trace = Trace()
        self.state.in_flight += 1
        try:
            await self.handle(scope, receive, send, exchange, trace)
        finally:
            self.state.in_flight -= 1

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, exchange: Exchange, trace: Trace
    ) -> None:
        """Answer one request and record it, whatever happens to it."""
        try:
            exchange.key_id = self.state.authenticate(scope)
            raw = await bodies.read_body(scope, receive, self.state.max_body_bytes)
            payload = bodies.parse_object(raw)
            exchange.requested_model = bodies.model_of(payload)
            self.resolve(scope, exchange)
            self.check(payload)
            await self.forward(payload, exchange, trace, receive, send)
        except bodies.ClientDisconnected:
            exchange.status = CLIENT_CLOSED_REQUEST
            exchange.error_type = "client_disconnected"
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the graceful shutdown period
            # (`pareto serve --graceful-timeout`) ends. The client receives an error and the
            # request is recorded, instead of both vanishing with the process.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            logger.warning(
                "request cancelled by shutdown: request_id=%s model=%s",
                exchange.request_id,
                exchange.target_model or "-",
            )
            exchange.status = SHUTDOWN_ERROR.status
            exchange.error_type = SHUTDOWN_ERROR.code
            await send_shutdown_error(send, exchange, trace)
        except ProxyError as error:
            exchange.status = error.status
            exchange.error_type = error.code or error.error_type
            await send_error(send, error, exchange.headers(trace))
        except Exception as exc:
            logger.exception(
                "unexpected error: request_id=%s error=%s", exchange.request_id, type(exc).__name__
            )
            exchange.status = 500
            exchange.error_type = "internal_error"
            if not exchange.response_started:
                await send_error(send, INTERNAL_ERROR, exchange.headers(trace))
        self.finish(exchange, trace)

    def check(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def resolve(self, scope: Scope, exchange: Exchange) -> None:
        """Pick the model to call: the policy's current route, or the requested model."""
        requested = exchange.requested_model or ""
        routes = self.state.routes
        if routes:
            header = _header(scope, b"x-pareto-policy")
            policy = routes.policy_for(requested, header)
            if header is not None and policy is None:
                raise InvalidRequestError(
                    f"The x-pareto-policy header names '{_clip(header, 200)}', which is not a "
                    "configured policy.",
                    code="policy_not_found",
                    param="x-pareto-policy",
                )
            if policy is not None:
                route = routes.route(policy)
                exchange.policy = policy
                exchange.decision_id = route.decision_id
                exchange.target_model = route.model
                rate = routes.policy(policy).sample_rate
                exchange.sample = self.samples and should_sample(self.state.sample_rng, rate)
                return
        if requested not in self.state.groups:
            raise ModelNotFoundError(requested)
        exchange.target_model = requested

    async def forward(
        self,
        payload: dict[str, Any],
        exchange: Exchange,
        trace: Trace,
        receive: Receive,
        send: Send,
    ) -> None:
        """Call the upstream without streaming and send its response on, byte for byte."""
        forwarder = self.state.forwarder
        assert forwarder is not None, "the app's lifespan creates the forwarder"
        model = exchange.target_model
        with DisconnectWatch(receive) as watch:
            try:
                reply = await forwarder.call_json(model, payload, self.endpoint, trace)
            except asyncio.CancelledError:
                if not watch.disconnected:
                    raise
                watch.absorb()
                exchange.status = CLIENT_CLOSED_REQUEST
                exchange.error_type = "client_disconnected"
                return

        assert trace.deployment is not None
        self.account(exchange, trace.deployment, reply.data.get("usage"))
        if exchange.sample:
            self.offer_case(exchange, payload, _first_answer(reply.data), trace)
        headers = [JSON_TYPE, *exchange.headers(trace)]
        headers.append((b"x-pareto-cost-usd", format_cost(exchange.cost).encode()))
        exchange.response_started = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    def account(self, exchange: Exchange, deployment: Deployment, usage: Any) -> None:
        exchange.usage = Usage.from_dict(usage)
        exchange.cost = deployment.prices.cost(
            exchange.usage.prompt_tokens,
            exchange.usage.completion_tokens,
            exchange.usage.cached_tokens,
        )
        if exchange.usage.prompt_tokens or exchange.usage.completion_tokens:
            self.state.warn_unpriced(deployment)

    def offer_case(
        self, exchange: Exchange, payload: dict[str, Any], answer: str | None, trace: Trace
    ) -> None:
        """Hand a successful request of a policy to the case sampler (a queue append)."""
        sampler = self.state.sampler
        if sampler is None or exchange.policy is None or trace.deployment is None:
            return
        messages = payload.get("messages") or []
        served = trace.deployment.model_name
        sampler.offer(exchange.policy, messages, answer, served, exchange.request_id)

    def metric_label(self, exchange: Exchange, served: str | None) -> str:
        if served is not None:
            return served
        requested = exchange.requested_model
        return requested if requested in self.state.groups and requested else "unknown"

    def finish(self, exchange: Exchange, trace: Trace) -> None:
        """Count, log and queue the record row of a finished request."""
        latency = time.perf_counter() - exchange.started
        deployment = trace.deployment
        served = deployment.model_name if deployment else None
        usage = exchange.usage
        self.state.metrics.observe(
            self.metric_label(exchange, served),
            exchange.status,
            latency,
            exchange.ttft,
            (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens),
            exchange.cost,
            exchange.error_type,
        )
        writer = self.state.request_lines
        if writer is not None:
            writer.write(
                f"POST /v1/{self.endpoint} model={served or '-'} "
                f"upstream={deployment.id if deployment else '-'} status={exchange.status} "
                f"latency_ms={latency * 1000:.1f} request_id={exchange.request_id}"
            )
        else:
            logger.info(
                "POST /v1/%s model=%s upstream=%s status=%d latency_ms=%.1f request_id=%s",
                self.endpoint,
                served or "-",
                deployment.id if deployment else "-",
                exchange.status,
                latency * 1000,
                exchange.request_id,
            )
        recorder = self.state.recorder
        if recorder is None:
            return
        recorder.add(
            RequestRow(
                request_id=exchange.request_id,
                created_at=time.time(),
                key_id=exchange.key_id,
                endpoint=self.endpoint,
                requested_model=_clip(exchange.requested_model),
                served_model=served,
                upstream=deployment.id if deployment else None,
                status=exchange.status,
                error_type=exchange.error_type,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                cost_usd=exchange.cost,
                latency_ms=latency * 1000,
                ttft_ms=None if exchange.ttft is None else exchange.ttft * 1000,
                stream=exchange.stream,
                retries=trace.retries,
                fallback_used=trace.fallback_used,
                policy=exchange.policy,
                decision_id=exchange.decision_id,
            )
        )


class ChatCompletions(ForwardingEndpoint):
    endpoint = "chat/completions"
    samples = True

    def check(self, payload: dict[str, Any]) -> None:
        bodies.check_messages(payload)

    async def forward(
        self,
        payload: dict[str, Any],
        exchange: Exchange,
        trace: Trace,
        receive: Receive,
        send: Send,
    ) -> None:
        exchange.stream = bodies.stream_flag(payload)
        if not exchange.stream:
            await super().forward(payload, exchange, trace, receive, send)
            return
        client_wants_usage, options = bodies.stream_options(payload)
        upstream_payload = {**payload, "stream_options": options}
        await relay_stream(
            self, upstream_payload, client_wants_usage, exchange, trace, receive, send
        )


class Embeddings(ForwardingEndpoint):
    endpoint = "embeddings"

    def check(self, payload: dict[str, Any]) -> None:
        bodies.check_input(payload)


async def send_error(
    send: Send, error: ProxyError, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send `error` as an OpenAI error response."""
    headers = [JSON_TYPE, *(extra or [])]
    headers.extend((name.encode(), value.encode()) for name, value in error.headers.items())
    try:
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": error.body()})
    except OSError:
        return


async def send_shutdown_error(send: Send, exchange: Exchange, trace: Trace) -> None:
    """Send the error of a request cut off by shutdown: a response, or a stream's last event."""
    if not exchange.response_started:
        await send_error(send, SHUTDOWN_ERROR, exchange.headers(trace))
        return
    if not exchange.stream:
        return
    try:
        body = error_event(SHUTDOWN_ERROR.to_dict())
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        return


def format_cost(cost: float) -> str:
    """Format a USD amount without exponent notation (12 decimal places, trailing zeros cut)."""
    text = f"{cost:.12f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _clip(value: str | None, limit: int = 256) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit]


def _first_answer(data: dict[str, Any]) -> str | None:
    """Return the first choice's text, or its tool calls as JSON, from a chat completion."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    calls = message.get("tool_calls")
    return orjson.dumps(calls).decode() if calls else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None
