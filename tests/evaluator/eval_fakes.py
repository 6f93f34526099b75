"""Fakes for evaluation tests: a chat server with rule-based models, and a policy with cases.

`ModelServer` runs aiohttp on 127.0.0.1 (a free port unless `port` is set) in a background
thread, so synchronous tests, asyncio tests and `pareto` subprocesses can all use it. Each
upstream model name has a `Behaviour`: a function from the request's messages to the reply
text, a latency and fixed token counts (so that each call of a model costs the same). Streamed
requests get server-sent events with a final usage chunk; others get one JSON completion.

Every request is recorded as a `Call` (model and last user message), `fail_next` makes the
next calls of a model answer with an HTTP status such as 429, and `hold` keeps requests whose
last user message is listed waiting until `release()` or the server stops.

`eval_config` and `add_cases` set up the policy "qa": a strong model that always answers right,
a weak one that is right on even questions only, and a judge model, each with its own price.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from evaluator.tables import BenchmarkCase
from proxy.config import LoadedConfig, parse_config
from proxy.deployments import build_groups
from proxy.forward import Forwarder
from proxy.model_caller import GatewayModelCaller
from proxy.upstream import new_session
from tests.gateway import deployment

Messages = list[dict[str, Any]]


@dataclass
class Behaviour:
    """How one upstream model replies: the text, the delay before it, and the token counts."""

    answer: Callable[[Messages], str]
    latency_seconds: float = 0.0
    prompt_tokens: int = 100
    completion_tokens: int = 10


@dataclass(frozen=True)
class Call:
    """One chat request as the server received it."""

    model: str
    prompt: str
    messages: Messages
    status: int


def last_user_text(messages: Messages) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


@dataclass
class ModelServer:
    """The server, used as a context manager. `behaviours` may change between requests."""

    behaviours: dict[str, Behaviour]
    held_prompts: set[str] = field(default_factory=set)
    _calls: list[Call] = field(default_factory=list)
    _failures: dict[str, deque[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _release: asyncio.Event | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, model: str) -> list[Call]:
        return [call for call in self.calls if call.model == model]

    def fail_next(self, model: str, statuses: Iterable[int]) -> None:
        """Fail the next calls of `model` with these HTTP statuses, one each, in order."""
        with self._lock:
            self._failures[model] = deque(statuses)

    def hold(self, prompts: Iterable[str]) -> None:
        """Keep requests with these last user messages waiting until `release()`."""
        self.held_prompts = set(prompts)

    def release(self) -> None:
        self.held_prompts = set()
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def __enter__(self) -> Self:
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve_thread, args=(started,), daemon=True)
        self._thread.start()
        self.port = started.result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._loop is not None
        assert self._stop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve_thread(self, started: concurrent.futures.Future[int]) -> None:
        asyncio.run(self._serve(started))

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", self.port))
        await web.SockSite(runner, sock).start()
        started.set_result(sock.getsockname()[1])
        try:
            await self._stop.wait()
        finally:
            self._release.set()
            await runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model"))
        messages: Messages = body.get("messages") or []
        prompt = last_user_text(messages)
        status = self._next_status(model)
        with self._lock:
            self._calls.append(Call(model, prompt, messages, status))

        if status != 200:
            error = {"message": f"status {status} on purpose", "type": "rate_limit_error"}
            return web.json_response({"error": error}, status=status)
        behaviour = self.behaviours.get(model)
        if behaviour is None:
            error = {"message": f"unknown model {model}", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=404)

        if prompt in self.held_prompts:
            assert self._release is not None
            await self._release.wait()
        if behaviour.latency_seconds:
            await asyncio.sleep(behaviour.latency_seconds)
        text = behaviour.answer(messages)
        if body.get("stream"):
            return await self._stream(request, model, text, behaviour)
        return web.json_response(_completion(model, text, behaviour))

    def _next_status(self, model: str) -> int:
        with self._lock:
            queue = self._failures.get(model)
            return queue.popleft() if queue else 200

    async def _stream(
        self, request: web.Request, model: str, text: str, behaviour: Behaviour
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-eval", "object": "chat.completion.chunk", "model": model}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": _usage(behaviour)},
        ]
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _usage(behaviour: Behaviour) -> dict[str, int]:
    return {
        "prompt_tokens": behaviour.prompt_tokens,
        "completion_tokens": behaviour.completion_tokens,
        "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens,
    }


def _completion(model: str, text: str, behaviour: Behaviour) -> dict[str, Any]:
    return {
        "id": "chatcmpl-eval",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": _usage(behaviour),
    }


# ---------------------------------------------------------------------------
# A policy "qa" with a strong model, a weak model and a judge, and its cases
# ---------------------------------------------------------------------------

POLICY = "qa"
STRONG_PRICES = {"input_cost_per_token": 1e-5, "output_cost_per_token": 3e-5}
WEAK_PRICES = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
JUDGE_PRICES = {"input_cost_per_token": 2e-6, "output_cost_per_token": 2e-6}
# Every call uses 100 prompt and 10 completion tokens (see `Behaviour`).
STRONG_CALL_USD = 100 * 1e-5 + 10 * 3e-5
WEAK_CALL_USD = 100 * 1e-6 + 10 * 2e-6
JUDGE_CALL_USD = 100 * 2e-6 + 10 * 2e-6

_NUMBER = re.compile(r"question (\d+)")


def question_number(messages: Messages) -> int:
    """Return N of the "question N" that the messages ask (a judge's messages quote it)."""
    text = "\n".join(str(message.get("content")) for message in messages)
    match = _NUMBER.search(text)
    assert match is not None, text
    return int(match.group(1))


def strong_answer(messages: Messages) -> str:
    return f"answer {question_number(messages)}"


def weak_answer(messages: Messages) -> str:
    """Right on even questions, wrong on odd ones."""
    number = question_number(messages)
    return f"answer {number}" if number % 2 == 0 else f"wrong {number}"


def model_behaviours(
    strong_latency: float = 0.05, weak_latency: float = 0.0
) -> dict[str, Behaviour]:
    return {
        "strong-up": Behaviour(strong_answer, strong_latency),
        "weak-up": Behaviour(weak_answer, weak_latency),
    }


def eval_config(
    api_base: str,
    database_url: str,
    *,
    judge: str = "checks",
    concurrency: int = 4,
    budget_usd: float = 5.0,
    freshness_hours: float = 24.0,
    judge_retries: int = 2,
) -> dict[str, Any]:
    """A configuration with models strong, weak and judge, and the policy "qa"."""
    return {
        "model_list": [
            deployment("strong", "strong-up", api_base, model_info=STRONG_PRICES),
            deployment("weak", "weak-up", api_base, model_info=WEAK_PRICES),
            deployment("judge", "judge-up", api_base, model_info=JUDGE_PRICES),
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"database_url": database_url},
        "policies": {
            POLICY: {"reference": "strong", "candidates": ["strong", "weak"], "judge": judge}
        },
        "evaluation": {
            "judge_model": "judge",
            "concurrency": concurrency,
            "budget_usd": budget_usd,
            "freshness_hours": freshness_hours,
            "judge_retries": judge_retries,
        },
    }


def load(config: dict[str, Any]) -> LoadedConfig:
    return parse_config(config, {})


def add_cases(
    engine: Engine,
    count: int,
    *,
    expected: bool = True,
    checks: bool = True,
    scores: Callable[[int], dict[str, float]] | None = None,
    policy: str = POLICY,
) -> list[int]:
    """Insert cases "question 0" .. "question N-1" whose right answer is "answer N"."""
    rows = [
        BenchmarkCase(
            policy=policy,
            source="imported",
            content_hash=f"hash-{policy}-{number}",
            messages=[{"role": "user", "content": f"question {number}"}],
            expected=f"answer {number}" if expected else None,
            checks=[{"type": "contains", "value": f"answer {number}"}] if checks else None,
            scores=scores(number) if scores else None,
            created_at=datetime.now(UTC),
        )
        for number in range(count)
    ]
    with Session(engine, expire_on_commit=False) as session:
        session.add_all(rows)
        session.commit()
    return [row.id for row in rows if row.id is not None]


@asynccontextmanager
async def gateway_caller(loaded: LoadedConfig) -> AsyncIterator[GatewayModelCaller]:
    """Yield the caller that `pareto eval run` uses: the gateway's Forwarder on a new session."""
    session = new_session()
    try:
        yield GatewayModelCaller(Forwarder(loaded.config, build_groups(loaded.config), session))
    finally:
        await session.close()
