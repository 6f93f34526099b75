"""An upstream that copies the credentials it receives into its responses, for key-leak tests.

The request's `model` picks the behaviour:

- `echo-401`: 401 whose OpenAI error message, code and param quote the Authorization header.
- `echo-500`: 500 with a plain-text body listing every request header and its value.
- `echo-400`: 400 whose error code is the bearer token followed by 300 characters and a NUL,
  longer than the request log's error column.
- `echo-header`: a normal answer that also carries the token in a response header and a cookie.
- anything else: a normal chat completion (streamed when asked) or embeddings answer.

`POST /v1/messages` plays Anthropic's Messages API and always answers 401 quoting `x-api-key`,
for the path through litellm. Every request's headers are kept in `received`.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from aiohttp import web

from tests.threaded_server import ThreadedApp


class LeakyUpstream:
    """The aiohttp app described in the module docstring, served from a thread."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/embeddings", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self.server = ThreadedApp(app)

    @property
    def base_url(self) -> str:
        return f"{self.server.base_url}/v1"

    def __enter__(self) -> LeakyUpstream:
        self.server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        headers = dict(request.headers)
        with self._lock:
            self.received.append(headers)
        authorization = headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ")
        model = str(body.get("model", ""))

        if model == "echo-401":
            message = f"Incorrect API key provided: {authorization}. Received {token}."
            error = {"message": message, "type": "invalid_request_error"}
            error |= {"code": f"bad_key_{token}", "param": token}
            return web.json_response({"error": error}, status=401)
        if model == "echo-500":
            listing = "\n".join(f"{name}: {value}" for name, value in headers.items())
            return web.Response(status=500, text=f"upstream crashed; request headers:\n{listing}")
        if model == "echo-400":
            code = token + "x" * 300 + "\x00"
            error = {"message": "bad request", "type": "invalid_request_error", "code": code}
            return web.json_response({"error": error}, status=400)

        extra = {"x-upstream-key": token, "set-cookie": f"session={token}"}
        reply_headers = extra if model == "echo-header" else {}
        if body.get("stream") is True:
            return await _stream(request, model, reply_headers)
        if request.path.endswith("/embeddings"):
            data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]
            answer: dict[str, Any] = {"object": "list", "data": data, "model": model}
        else:
            answer = _completion(model)
        return web.json_response(answer, headers=reply_headers)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        with self._lock:
            self.received.append(headers)
        key = headers.get("x-api-key", "")
        error = {"type": "authentication_error", "message": f"invalid x-api-key: {key}"}
        return web.json_response({"type": "error", "error": error}, status=401)


async def _stream(request: web.Request, model: str, headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
    await response.prepare(request)
    chunk = _completion(model)
    chunk["object"] = "chat.completion.chunk"
    chunk["choices"] = [{"index": 0, "delta": {"content": "fine"}, "finish_reason": "stop"}]
    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _completion(model: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": "fine"}
    return {
        "id": "chatcmpl-leaky",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
