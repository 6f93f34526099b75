"""An OpenAI-compatible chat upstream with the latency of a real model, for load tests.

Each answer waits a time to first token drawn uniformly from --ttft-ms, then produces
--tokens tokens at --token-ms each: a stream sends one chunk per token as it is produced, a
plain request gets the whole completion at the end. Usage is reported in both forms.

    python benchmarks/load_upstream.py PORT [--ttft-ms 50-200] [--tokens 20] [--token-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import uvloop
from aiohttp import web

MODEL = "load-model"


def parse_range(text: str) -> tuple[float, float]:
    """Parse "50-200" (or "100") into a (low, high) pair of milliseconds."""
    low, _, high = text.partition("-")
    bounds = (float(low), float(high or low))
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH milliseconds, got {text!r}")
    return bounds


class ModelLatency:
    """The upstream's timing: a random time to first token, then a fixed time per token."""

    def __init__(self, ttft_ms: tuple[float, float], tokens: int, token_ms: float) -> None:
        self.ttft_ms = ttft_ms
        self.tokens = tokens
        self.token_seconds = token_ms / 1000
        self._rng = random.Random(0)

    def first_token_seconds(self) -> float:
        return self._rng.uniform(*self.ttft_ms) / 1000


def make_app(latency: ModelLatency) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": latency.tokens,
            "total_tokens": prompt_tokens + latency.tokens,
        }
        envelope = {"id": "chatcmpl-load", "created": int(time.time()), "model": MODEL}
        await asyncio.sleep(latency.first_token_seconds())
        if not body.get("stream"):
            await asyncio.sleep(latency.tokens * latency.token_seconds)
            message = {"role": "assistant", "content": " ".join(["word"] * latency.tokens)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            reply = {**envelope, "object": "chat.completion", "choices": [choice], "usage": usage}
            return web.json_response(reply)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {**envelope, "object": "chat.completion.chunk"}
        for number in range(latency.tokens):
            if number:
                await asyncio.sleep(latency.token_seconds)
            delta = {"content": "word "} if number else {"role": "assistant", "content": "word "}
            choices = [{"index": 0, "delta": delta, "finish_reason": None}]
            await response.write(_event({**chunk, "choices": choices}))
        finish = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
        await response.write(_event({**chunk, "choices": finish}))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(_event({**chunk, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def _event(data: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--ttft-ms", type=parse_range, default=(50.0, 200.0), help="time to first token, LOW-HIGH"
    )
    parser.add_argument("--tokens", type=int, default=20, help="completion tokens per response")
    parser.add_argument("--token-ms", type=float, default=10.0, help="milliseconds per token")
    args = parser.parse_args()
    latency = ModelLatency(args.ttft_ms, args.tokens, args.token_ms)
    web.run_app(
        make_app(latency),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
        backlog=1024,
    )


if __name__ == "__main__":
    main()
