"""Relaying a streamed chat completion to the client as its events arrive.

The upstream is retried only until its first chunk: after that, bytes have reached the client
and a failure ends the stream with a final `data: {"error": ...}` event, recorded as failed.
The deployment's `stream_timeout` bounds the wait for each complete event, so an upstream that
sends a byte now and then without finishing an event times out too (status 408).
A client that disconnects cancels the upstream call at once (recorded with status 499).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Send

from proxy.disconnect import CLIENT_CLOSED_REQUEST, DisconnectWatch
from proxy.errors import UpstreamError
from proxy.forward import Trace, client_error
from proxy.sse import AnswerCollector, SseRelay, error_event
from proxy.tokens import encoding_counter, encoding_for_model
from proxy.upstream import UpstreamFailure

if TYPE_CHECKING:
    from proxy.deployments import Deployment
    from proxy.endpoints import ChatCompletions, Exchange
    from proxy.state import AppState

EVENT_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def relay_stream(
    owner: ChatCompletions,
    payload: dict[str, Any],
    client_wants_usage: bool,
    exchange: Exchange,
    trace: Trace,
    receive: Receive,
    send: Send,
) -> None:
    """Open the upstream stream (with retries), then relay it event by event."""
    forwarder = owner.state.forwarder
    assert forwarder is not None, "the app's lifespan creates the forwarder"
    model = exchange.target_model

    with DisconnectWatch(receive) as watch:
        try:
            stream, first = await forwarder.open_stream(model, payload, owner.endpoint, trace)
        except asyncio.CancelledError:
            if not watch.disconnected:
                raise
            watch.absorb()
            exchange.status = CLIENT_CLOSED_REQUEST
            exchange.error_type = "client_disconnected"
            return

        assert trace.deployment is not None, "an open stream has a deployment"
        prices = trace.deployment.prices
        # For a priced deployment the events are kept, so that a stream without usage can still
        # be priced by counting its tokens once it has ended (see `estimated_usage`).
        priced = prices.input > 0 or prices.output > 0
        relay = SseRelay(hide_usage=not client_wants_usage, keep_events=priced)
        answer = AnswerCollector() if exchange.sample else None
        try:
            start = [*EVENT_STREAM_HEADERS, *exchange.headers(trace)]
            exchange.response_started = True
            await send({"type": "http.response.start", "status": 200, "headers": start})
            await _send_chunk(send, relay.feed(first), answer)
            exchange.ttft = time.perf_counter() - exchange.started
            event_timeout = trace.deployment.stream_timeout
            last_event = time.monotonic()
            async for chunk in stream.chunks():
                events = relay.feed(chunk)
                now = time.monotonic()
                if events:
                    last_event = now
                elif now - last_event > event_timeout:
                    raise UpstreamFailure("timeout", f"no complete event for {event_timeout:g} s")
                await _send_chunk(send, events, answer)
                if relay.saw_done:
                    break  # the reply is complete, so the rest of the upstream body adds nothing
            await _send_chunk(send, relay.flush(), answer)
            if not relay.saw_done:
                raise UpstreamFailure(
                    "connection", "the stream ended before its final [DONE] event"
                )
            if answer is not None:
                owner.offer_case(exchange, payload, answer.text(), trace)
                answer = None
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamFailure as failure:
            error = client_error(failure, trace.deployment)
            if not isinstance(error, UpstreamError):
                error = UpstreamError(error.message, code=error.code)
            exchange.status = error.status
            exchange.error_type = error.code or error.error_type
            await _finish_with_error(send, error.to_dict())
        except asyncio.CancelledError:
            if not watch.disconnected:
                raise
            watch.absorb()
            _closed_by_client(owner, exchange, payload, relay, answer, trace)
        except OSError:
            _closed_by_client(owner, exchange, payload, relay, answer, trace)
        finally:
            stream.close()
            usage = relay.usage
            if usage is None and relay.kept:
                usage = estimated_usage(owner.state, trace.deployment, payload, relay.kept)
            owner.account(exchange, trace.deployment, usage)


def estimated_usage(
    state: AppState, deployment: Deployment, payload: dict[str, Any], events: list[bytes]
) -> dict[str, int]:
    """Count a finished stream's tokens with tiktoken, for an upstream that reported none.

    Runs once per such stream, after its last byte was sent. One warning per deployment states
    that its recorded tokens are estimates.
    """
    answer = AnswerCollector()
    for event in events:
        answer.add(event)
    counter = encoding_counter(encoding_for_model(deployment.upstream_model))
    messages = payload.get("messages")
    prompt = counter.count_messages(messages) if isinstance(messages, list) else 0
    state.warn_usage_estimated(deployment, counter.name)
    return {"prompt_tokens": prompt, "completion_tokens": counter.count(answer.text())}


def _closed_by_client(
    owner: ChatCompletions,
    exchange: Exchange,
    payload: dict[str, Any],
    relay: SseRelay,
    answer: AnswerCollector | None,
    trace: Trace,
) -> None:
    """Record a stream whose client went away: 499, unless it received the whole reply.

    The `openai` client closes the connection as soon as it reads `[DONE]`, which can come
    before the gateway's last write. Such a stream was delivered whole and counts as a success.
    """
    if not relay.saw_done:
        exchange.status = CLIENT_CLOSED_REQUEST
        exchange.error_type = "client_disconnected"
    elif answer is not None:
        owner.offer_case(exchange, payload, answer.text(), trace)


async def _send_chunk(send: Send, data: bytes, answer: AnswerCollector | None) -> None:
    if not data:
        return
    if answer is not None:
        answer.add(data)
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _finish_with_error(send: Send, body: dict[str, Any]) -> None:
    try:
        await send({"type": "http.response.body", "body": error_event(body), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        return
