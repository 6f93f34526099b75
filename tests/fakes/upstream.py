"""A local OpenAI-compatible upstream with injectable faults, for testing the gateway.

`FakeUpstream` runs an aiohttp server on 127.0.0.1 (a free port) in a background thread with its
own event loop, so synchronous tests and asyncio tests can both use it. It serves
`POST /v1/chat/completions` (plain and streamed), `POST /v1/embeddings` and `GET /v1/models`, and
keeps a `ReceivedRequest` record of every request.

The `model` field of the request body selects the behaviour, so one server can stand behind
several deployments of a test config:

- any name without the `fault-` prefix, such as `gpt-fake`: success. The content is
  `echo: <last user message text>`, with ` [images: N]` appended when that message has image
  parts, or the JSON string `{"echo": ...}` when `response_format` requests JSON. With `tools` the
  reply calls every function tool (or the one `tool_choice` names) with the arguments
  `{"city": "Paris", "unit": "celsius"}`. Token counts are whitespace-separated words.
- `fault-429`: 429 `rate_limit_error` with the header `retry-after: N`, where N is the
  `retry_after_seconds` knob (default 0).
- `fault-429-no-retry-after`: the same 429 without `retry-after`.
- `fault-500`, `fault-502`, `fault-503`: that status with a `server_error` body.
- `fault-400-context`: 400 with code `context_length_exceeded` and a message naming the
  8192-token limit.
- `fault-drop`: reads the request, then closes the connection without sending a response.
- `fault-reset-mid-response`: sends the status and headers of a 200 with a Content-Length, half
  of the non-streaming body, then closes the connection.
- `fault-hang`: never replies. The handler ends when the client disconnects (the record is then
  marked cancelled) or when the server stops (the connection is closed).
- `fault-cut-stream`: sends the first three chunks of the stream, then closes the connection
  without `data: [DONE]`. A non-streaming request gets `fault-reset-mid-response` instead.
- `fault-slow-drip`: sends the success body one byte every `drip_seconds` (default 1.0).
- `fault-not-json`: 200 with the body `<html>oops</html>` and content type `text/html`.
- `fault-no-choices`: 200 with a JSON object that lacks `choices` (`data` for embeddings).
- `fault-slow`: success after `slow_seconds` (default 0.5).
- any other `fault-...` name: 404 `model_not_found`.

`script(model, items)` overrides the behaviour of the next calls to one model. Items are the
fault names above without `fault-`, or `ok` for success.

Error faults send a JSON error body even for a streaming request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import dataclasses
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.fakes import replies
from tests.fakes.replies import InvalidRequestError, JSONObject, error_body

_log = logging.getLogger(__name__)

FAULT_PREFIX = "fault-"

# Behaviour names: the part of a fault model name after `fault-`, plus "ok" for success.
BEHAVIOURS = frozenset(
    {
        "ok",
        "429",
        "429-no-retry-after",
        "500",
        "502",
        "503",
        "400-context",
        "drop",
        "reset-mid-response",
        "hang",
        "cut-stream",
        "slow-drip",
        "not-json",
        "no-choices",
        "slow",
    }
)

LISTED_MODELS = (
    "gpt-fake",
    "text-embedding-fake",
    *sorted(FAULT_PREFIX + b for b in BEHAVIOURS - {"ok"}),
)

_CUT_STREAM_CHUNKS = 3
_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 10.0

# How long aiohttp waits for open handlers at shutdown before cancelling them. Every handler
# that waits also watches the stop event, so this is only a backstop.
_SHUTDOWN_TIMEOUT_SECONDS = 1.0

# (status, error type, code, message) for each fault that replies with an error body.
_ERROR_FAULTS: dict[str, tuple[int, str, str | None, str]] = {
    "429": (429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached (fault-429)."),
    "429-no-retry-after": (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        "Rate limit reached (fault-429-no-retry-after).",
    ),
    "500": (500, "server_error", None, "The fake upstream failed on purpose (fault-500)."),
    "502": (502, "server_error", None, "The fake upstream failed on purpose (fault-502)."),
    "503": (503, "server_error", None, "The fake upstream is overloaded on purpose (fault-503)."),
    "400-context": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        f"This model's maximum context length is {replies.CONTEXT_LIMIT_TOKENS} tokens, "
        "and the messages are longer. Shorten the messages and try again.",
    ),
}


@dataclasses.dataclass
class ReceivedRequest:
    """One request as the fake upstream received it, and how it ended.

    Times are `time.monotonic()` seconds. `cancelled` is True when the client disconnected
    before the response was complete. A connection that a fault closes on purpose does not count.
    """

    method: str
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    json: Any
    model: str | None
    received_at: float
    behaviour: str | None = None
    status: int | None = None
    cancelled: bool = False
    cancelled_at: float | None = None


class _Exchange:
    """One chat or embeddings request and the behaviour chosen to reply to it."""

    def __init__(
        self, upstream: FakeUpstream, request: web.Request, record: ReceivedRequest, endpoint: str
    ) -> None:
        self.upstream = upstream
        self.request = request
        self.record = record
        self.endpoint = endpoint
        self.body: JSONObject = record.json if isinstance(record.json, dict) else {}
        self.model = record.model or ""
        self.response: web.StreamResponse | None = None
        self.closed_by_server = False

    @property
    def streaming(self) -> bool:
        return self.endpoint == "chat" and self.body.get("stream") is True

    def note_disconnect(self) -> None:
        """Mark the record cancelled, unless the server itself closed or is stopping."""
        if self.closed_by_server or self.upstream._stopping():
            return
        self.upstream._update(self.record, cancelled=True, cancelled_at=time.monotonic())
        _log.debug(
            "Client disconnected before the response to %s %s (model %s) was complete",
            self.record.method,
            self.record.path,
            self.record.model,
        )

    async def run(self, behaviour: str) -> web.StreamResponse:
        if behaviour in _ERROR_FAULTS:
            return self._send_error_fault(behaviour)

        handlers = {
            "ok": self._send_success,
            "drop": self._drop,
            "reset-mid-response": self._reset_mid_response,
            "hang": self._hang,
            "cut-stream": self._cut_stream,
            "slow-drip": self._slow_drip,
            "not-json": self._send_not_json,
            "no-choices": self._send_no_choices,
            "slow": self._send_slow,
        }
        return await handlers[behaviour]()

    def send_json(
        self, status: int, payload: JSONObject, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.upstream._update(self.record, status=status)
        return web.json_response(payload, status=status, headers=headers)

    async def _prepare(self, response: web.StreamResponse) -> None:
        self.response = response
        await response.prepare(self.request)
        self.upstream._update(self.record, status=response.status)

    def _close_connection(self) -> web.StreamResponse:
        self.closed_by_server = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        # aiohttp finishes this response on the closed connection and ignores the failure.
        return self.response or web.Response()

    def _success_json(self) -> JSONObject:
        if self.endpoint == "embeddings":
            return replies.embeddings(self.body, self.model)
        return replies.completion(self.body, self.model, self.upstream.cached_tokens)

    def _success_stream(self) -> bytes:
        chunks = replies.completion_chunks(self.body, self.model, self.upstream.cached_tokens)
        return replies.sse_stream(chunks)

    def _send_error_fault(self, behaviour: str) -> web.Response:
        status, error_type, code, message = _ERROR_FAULTS[behaviour]
        param = "messages" if behaviour == "400-context" else None
        retry_after = f"{self.upstream.retry_after_seconds:g}"
        headers = {"retry-after": retry_after} if behaviour == "429" else None
        return self.send_json(status, error_body(message, error_type, code, param), headers)

    async def _send_success(self) -> web.StreamResponse:
        if await self.upstream._pause(self.upstream.latency_seconds):
            return self._close_connection()
        if not self.streaming:
            return self.send_json(200, self._success_json())

        chunks = replies.completion_chunks(self.body, self.model, self.upstream.cached_tokens)
        await self._prepare(_event_stream_response())
        if await self.upstream._pause(self.upstream.first_chunk_seconds):
            return self._close_connection()
        assert self.response is not None
        for chunk in chunks:
            await self.response.write(replies.sse_event(chunk))
        await self.response.write(replies.sse_event("[DONE]"))
        return self.response

    async def _send_slow(self) -> web.StreamResponse:
        if await self.upstream._pause(self.upstream.slow_seconds):
            return self._close_connection()
        return await self._send_success()

    async def _drop(self) -> web.StreamResponse:
        return self._close_connection()

    async def _hang(self) -> web.StreamResponse:
        await self.upstream._pause(None)
        return self._close_connection()

    async def _reset_mid_response(self) -> web.StreamResponse:
        payload = json.dumps(self._success_json()).encode()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(payload)
        await self._prepare(response)
        await response.write(payload[: len(payload) // 2])
        return self._close_connection()

    async def _cut_stream(self) -> web.StreamResponse:
        if not self.streaming:
            return await self._reset_mid_response()

        chunks = replies.completion_chunks(self.body, self.model, self.upstream.cached_tokens)
        response = _event_stream_response()
        await self._prepare(response)
        for chunk in chunks[:_CUT_STREAM_CHUNKS]:
            await response.write(replies.sse_event(chunk))
        return self._close_connection()

    async def _slow_drip(self) -> web.StreamResponse:
        if self.streaming:
            payload = self._success_stream()
            response = _event_stream_response()
        else:
            payload = json.dumps(self._success_json()).encode()
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            response.content_length = len(payload)

        await self._prepare(response)
        for offset in range(len(payload)):
            await response.write(payload[offset : offset + 1])
            if await self.upstream._pause(self.upstream.drip_seconds):
                return self._close_connection()
        return response

    async def _send_not_json(self) -> web.StreamResponse:
        self.upstream._update(self.record, status=200)
        return web.Response(status=200, text="<html>oops</html>", content_type="text/html")

    async def _send_no_choices(self) -> web.StreamResponse:
        if self.endpoint == "embeddings":
            return self.send_json(200, {"object": "list", "model": self.model})
        payload = {
            "id": replies.new_completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
        }
        return self.send_json(200, payload)


def _event_stream_response() -> web.StreamResponse:
    return web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )


class FakeUpstream:
    """An OpenAI-compatible server on 127.0.0.1 whose model names choose faults.

    Use it as a context manager (`with FakeUpstream() as upstream:` or `async with`), or call
    `start()` and `stop()`. Tests may change the knobs below at any time, and the next request
    reads them:

    - `latency_seconds`: delay before every success response (default 0).
    - `first_chunk_seconds`: delay between the headers and the first chunk of a stream (default 0).
    - `slow_seconds`: extra delay of `fault-slow` (default 0.5).
    - `drip_seconds`: delay between bytes of `fault-slow-drip` (default 1.0).
    - `retry_after_seconds`: the `retry-after` header value of `fault-429` (default 0).
    - `cached_tokens`: when set, usage includes `prompt_tokens_details.cached_tokens`.
    """

    def __init__(self, *, api_key: str | None = None) -> None:
        """Create a stopped server; with api_key set, requests need `Authorization: Bearer KEY`."""
        self.api_key = api_key
        self.latency_seconds = 0.0
        self.first_chunk_seconds = 0.0
        self.slow_seconds = 0.5
        self.drip_seconds = 1.0
        self.retry_after_seconds = 0.0
        self.cached_tokens: int | None = None

        self._lock = threading.Lock()
        self._records: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[str]] = {}

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._port is None:
            raise RuntimeError("The fake upstream is not running. Call start() first.")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the server, such as `http://127.0.0.1:PORT/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        """Start the server thread and return once the server is listening."""
        if self._thread is not None:
            raise RuntimeError("The fake upstream is already running.")

        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run_thread, args=(started,), name="fake-upstream", daemon=True
        )
        self._thread.start()
        done, _ = concurrent.futures.wait([started], timeout=_START_TIMEOUT_SECONDS)
        if not done:
            raise RuntimeError(
                f"The fake upstream did not start listening within {_START_TIMEOUT_SECONDS} s."
            )

        error = started.exception()
        if error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("The fake upstream failed to start.") from error
        self._port = started.result()
        return self

    def stop(self) -> None:
        """Close open connections, stop the server and wait for its thread.

        Does nothing when the server is not running.
        """
        thread = self._thread
        if thread is None:
            return

        assert self._loop is not None and self._stop_event is not None
        # The loop is already closed if the server thread ended on its own, and then there is
        # nothing left to stop.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._stop_event.set)
        thread.join(_STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            raise RuntimeError(f"The fake upstream did not stop within {_STOP_TIMEOUT_SECONDS} s.")
        self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def script(self, model: str, items: Iterable[str]) -> None:
        """Set the behaviours of the next calls to model, replacing any earlier script.

        Each item is a behaviour name: a fault name without `fault-` ("429", "drop", ...) or "ok".
        Once the items are used up, the model name's own behaviour applies again.
        """
        steps = deque(items)
        unknown = [item for item in steps if item not in BEHAVIOURS]
        if unknown:
            raise ValueError(
                f"Unknown script items {unknown!r} for model {model!r}. "
                f"Use one of {sorted(BEHAVIOURS)}."
            )
        with self._lock:
            self._scripts[model] = steps

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return [
                dataclasses.replace(record, json=copy.deepcopy(record.json))
                for record in self._records
            ]

    def requests_for(self, model: str) -> list[ReceivedRequest]:
        """A snapshot of the requests whose body named model."""
        return [record for record in self.requests if record.model == model]

    def reset(self) -> None:
        """Forget the received requests and every script. The knobs keep their values."""
        with self._lock:
            self._records.clear()
            self._scripts.clear()

    def _run_thread(self, started: concurrent.futures.Future[int]) -> None:
        asyncio.run(self._serve(started))

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        """Listen until stop() sets the stop event.

        The port, or the exception that prevented listening, goes to started.
        """
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        runner = web.AppRunner(
            self._make_app(),
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS,
            access_log=None,
        )
        try:
            await runner.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", 0))
                await web.SockSite(runner, sock).start()
            except BaseException:
                sock.close()
                raise
            port: int = sock.getsockname()[1]
        except Exception as exc:
            await runner.cleanup()
            started.set_exception(exc)
            return

        started.set_result(port)
        _log.debug("Fake upstream listening on 127.0.0.1:%d", port)
        try:
            await self._stop_event.wait()
        finally:
            await runner.cleanup()
            _log.debug("Fake upstream on 127.0.0.1:%d stopped", port)

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/v1/embeddings", self._handle_embeddings)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_route("*", "/{path:.*}", self._handle_unknown_path)
        return app

    def _stopping(self) -> bool:
        return self._stop_event is not None and self._stop_event.is_set()

    async def _pause(self, seconds: float | None) -> bool:
        """Sleep for seconds, or forever if None.

        Returns True as soon as the server starts stopping, and False after a full sleep.
        """
        assert self._stop_event is not None
        try:
            async with asyncio.timeout(seconds):
                await self._stop_event.wait()
        except TimeoutError:
            return False
        return True

    def _update(self, record: ReceivedRequest, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(record, name, value)

    def _add_record(self, request: web.Request, raw: bytes) -> ReceivedRequest:
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        model = parsed.get("model") if isinstance(parsed, dict) else None

        record = ReceivedRequest(
            method=request.method,
            path=request.path,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=raw,
            json=parsed,
            model=model if isinstance(model, str) else None,
            received_at=time.monotonic(),
        )
        with self._lock:
            self._records.append(record)
        return record

    def _take_behaviour(self, model: str) -> str | None:
        """Pop the model's next script item, or derive the behaviour from its name.

        Returns None for an unknown `fault-...` name.
        """
        with self._lock:
            steps = self._scripts.get(model)
            if steps:
                return steps.popleft()

        if not model.startswith(FAULT_PREFIX):
            return "ok"
        behaviour = model.removeprefix(FAULT_PREFIX)
        return behaviour if behaviour in BEHAVIOURS - {"ok"} else None

    def _check_api_key(self, request: web.Request) -> JSONObject | None:
        """Return a 401 error body when an API key is required and the request lacks it."""
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return error_body(
            "Invalid API key. Send `Authorization: Bearer KEY` with the fake upstream's key.",
            "invalid_request_error",
            "invalid_api_key",
        )

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_model_call(request, "chat")

    async def _handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_model_call(request, "embeddings")

    async def _handle_model_call(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        record = self._add_record(request, await request.read())
        exchange = _Exchange(self, request, record, endpoint)
        try:
            return await self._answer(exchange)
        except asyncio.CancelledError:
            exchange.note_disconnect()
            raise
        except ConnectionError:
            # A write failed because the client went away before the handler was cancelled.
            exchange.note_disconnect()
            return exchange.response or web.Response()

    async def _answer(self, exchange: _Exchange) -> web.StreamResponse:
        denied = self._check_api_key(exchange.request)
        if denied is not None:
            return exchange.send_json(401, denied)

        if not isinstance(exchange.record.json, dict):
            message = "The request body must be a JSON object."
            return exchange.send_json(400, error_body(message, "invalid_request_error", None))
        if exchange.record.model is None:
            message = "The request body is missing a `model` string."
            return exchange.send_json(
                400, error_body(message, "invalid_request_error", None, "model")
            )

        behaviour = self._take_behaviour(exchange.model)
        if behaviour is None:
            message = f"The model `{exchange.model}` does not exist on the fake upstream."
            return exchange.send_json(
                404, error_body(message, "invalid_request_error", "model_not_found", "model")
            )
        self._update(exchange.record, behaviour=behaviour)

        try:
            return await exchange.run(behaviour)
        except InvalidRequestError as exc:
            return exchange.send_json(
                400, error_body(str(exc), "invalid_request_error", None, exc.param)
            )

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        record = self._add_record(request, await request.read())
        exchange = _Exchange(self, request, record, "models")
        denied = self._check_api_key(request)
        if denied is not None:
            return exchange.send_json(401, denied)

        created = int(time.time())
        models = [
            {"id": name, "object": "model", "created": created, "owned_by": "fake-upstream"}
            for name in LISTED_MODELS
        ]
        return exchange.send_json(200, {"object": "list", "data": models})

    async def _handle_unknown_path(self, request: web.Request) -> web.StreamResponse:
        record = self._add_record(request, await request.read())
        exchange = _Exchange(self, request, record, "unknown")
        message = f"The fake upstream has no route {request.method} {request.path}."
        return exchange.send_json(404, error_body(message, "invalid_request_error", None))
