"""SIGTERM with requests in flight: they finish within the grace period, and every row is kept.

`pareto serve` runs as a subprocess in front of a paced upstream whose streams send one content
chunk every `interval` seconds, so a test can signal the gateway while a stream is half sent.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.gateway import MASTER_KEY, deployment
from tests.proxy.serve_process import ServeFactory, ServeProcess, serve, write_config
from tests.threaded_server import ThreadedApp

__all__ = ["serve"]

GRACE_SECONDS = 10.0


@dataclass
class Pacing:
    """What the paced upstream sends: `chunks` content chunks `interval` seconds apart."""

    chunks: int
    interval: float
    plain_delay: float  # seconds before a non-streaming answer
    finished: list[str] = field(default_factory=list)  # "stream" or "plain", as each completes


def paced_app(pacing: Pacing) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        base = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "model": "paced"}
        usage = {"prompt_tokens": 3, "completion_tokens": pacing.chunks, "total_tokens": 0}
        if not body.get("stream"):
            await asyncio.sleep(pacing.plain_delay)
            message = {"role": "assistant", "content": "done"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            reply = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            pacing.finished.append("plain")
            return web.json_response(reply)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for number in range(pacing.chunks):
            delta = {"role": "assistant", "content": f"part{number} "}
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(pacing.interval)
        last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(last)}\n\n".encode())
        await response.write(
            f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
        )
        await response.write(b"data: [DONE]\n\n")
        pacing.finished.append("stream")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
def pacing() -> Pacing:
    return Pacing(chunks=6, interval=0.4, plain_delay=1.5)


@pytest.fixture
def upstream(pacing: Pacing) -> Iterator[ThreadedApp]:
    with ThreadedApp(paced_app(pacing)) as running:
        yield running


def start_gateway(
    serve: ServeFactory, tmp_path: Path, upstream: ThreadedApp, grace_seconds: float
) -> tuple[ServeProcess, Path]:
    config = {
        "model_list": [deployment("m", "paced", f"{upstream.base_url}/v1")],
        "general_settings": {"master_key": MASTER_KEY},
    }
    database = tmp_path / "pareto.db"
    served = serve(
        write_config(tmp_path / "config.yaml", config),
        f"sqlite:///{database}",
        "--graceful-timeout",
        f"{grace_seconds:g}",
    )
    served.wait_ready()
    return served, database


class Client(threading.Thread):
    """One chat request from a thread: the status, the data lines and when each arrived."""

    def __init__(self, base_url: str, stream: bool) -> None:
        super().__init__(daemon=True)
        self._url = f"{base_url}/v1/chat/completions"
        self._stream = stream
        self.first_line = threading.Event()
        self.status = 0
        self.lines: list[str] = []
        self.body = b""
        self.error: Exception | None = None

    def run(self) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        try:
            with httpx.stream(
                "POST",
                self._url,
                json={**body, "stream": self._stream},
                headers=headers,
                timeout=30,
            ) as response:
                self.status = response.status_code
                if not self._stream:
                    self.body = response.read()
                    return
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.lines.append(line[len("data: ") :])
                        self.first_line.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.first_line.set()


def request_rows(database: Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(database)
    try:
        return connection.execute(
            "SELECT status, error_type, stream FROM request_log ORDER BY stream"
        ).fetchall()
    finally:
        connection.close()


def wait_in_flight(served: ServeProcess, count: int) -> None:
    """Wait until the gateway reports `count` requests in flight."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(
            f"{served.base_url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}
        ).text
        if f"pareto_requests_in_flight {count:.1f}" in metrics:
            return
        time.sleep(0.02)
    raise AssertionError(f"the gateway never had {count} requests in flight")


@pytest.mark.slow
def test_sigterm_drains_stream_and_plain(
    serve: ServeFactory, tmp_path: Path, upstream: ThreadedApp, pacing: Pacing
) -> None:
    served, database = start_gateway(serve, tmp_path, upstream, GRACE_SECONDS)
    streamed = Client(served.base_url, stream=True)
    plain = Client(served.base_url, stream=False)
    streamed.start()
    plain.start()
    assert streamed.first_line.wait(10)
    wait_in_flight(served, 2)

    served.terminate()
    signalled = time.monotonic()
    code = served.wait(timeout=GRACE_SECONDS + 10)
    exited_after = time.monotonic() - signalled
    streamed.join(10)
    plain.join(10)

    log = served.log()
    assert code == 0, log
    assert streamed.error is None
    assert plain.error is None
    assert streamed.status == 200
    assert streamed.lines[-1] == "[DONE]"
    contents = [json.loads(line)["choices"] for line in streamed.lines[:-1]]
    texts = [choices[0]["delta"].get("content") for choices in contents if choices]
    assert texts[: pacing.chunks] == [f"part{number} " for number in range(pacing.chunks)]
    assert plain.status == 200
    assert json.loads(plain.body)["choices"][0]["message"]["content"] == "done"
    assert sorted(pacing.finished) == ["plain", "stream"]
    # The stream had about 2 s left when the signal came; the gateway waited for it.
    assert 1.0 < exited_after < GRACE_SECONDS, log
    assert request_rows(database) == [(200, None, 0), (200, None, 1)]
    assert "request rows written: 2" in log
    assert "timeout graceful shutdown exceeded" not in log


@pytest.mark.slow
def test_sigterm_grace_exceeded_records_cut_requests(
    serve: ServeFactory, tmp_path: Path, upstream: ThreadedApp, pacing: Pacing
) -> None:
    pacing.chunks, pacing.interval, pacing.plain_delay = 40, 0.5, 30.0
    served, database = start_gateway(serve, tmp_path, upstream, grace_seconds=1.0)
    streamed = Client(served.base_url, stream=True)
    plain = Client(served.base_url, stream=False)
    streamed.start()
    plain.start()
    assert streamed.first_line.wait(10)
    wait_in_flight(served, 2)

    served.terminate()
    signalled = time.monotonic()
    code = served.wait(timeout=15)
    exited_after = time.monotonic() - signalled
    streamed.join(10)
    plain.join(10)

    log = served.log()
    assert code == 0, log
    assert exited_after < 5, f"the process took {exited_after:.1f} s to exit after a 1 s grace"
    assert "Cancel 2 running task(s), timeout graceful shutdown exceeded" in log
    assert log.count("request cancelled by shutdown: request_id=") == 2
    assert streamed.status == 200
    last = json.loads(streamed.lines[-1])
    assert last["error"]["code"] == "gateway_shutting_down"
    assert "[DONE]" not in streamed.lines
    assert plain.status == 503
    assert json.loads(plain.body)["error"]["code"] == "gateway_shutting_down"
    assert request_rows(database) == [
        (503, "gateway_shutting_down", 0),
        (503, "gateway_shutting_down", 1),
    ]
    assert "request rows written: 2" in log
    assert "Traceback" not in log
