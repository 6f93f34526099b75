"""Measure how close an evaluation run comes to the ideal time set by upstream latency alone.

Runs the real evaluation code (`evaluator.runner.run_evaluation` with the gateway's Forwarder
and `GatewayModelCaller`, the checks judge, SQLite in a temporary directory) on 200 cases x 4
candidate models at concurrency 16, against a local streaming upstream that waits 200 ms before
each response. The ideal time is calls / concurrency x latency = 800 / 16 x 0.2 s = 10 s.

A second run against the same upstream without the wait measures the evaluator's own cost
per call. The upstream is a separate process, so its CPU time does not count as the
evaluator's.

    python benchmarks/eval_throughput.py [--cases 200] [--models 4] [--concurrency 16]
                                         [--latency-ms 200]

Prints the figures and exits 1 when elapsed / ideal exceeds the target (1.15).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from sqlmodel import Session

from evaluator.runner import RunSummary, run_evaluation
from evaluator.tables import BenchmarkCase
from proxy.config import LoadedConfig, parse_config
from proxy.db import make_engine
from proxy.deployments import build_groups
from proxy.forward import Forwarder
from proxy.model_caller import GatewayModelCaller
from proxy.upstream import new_session

TARGET_RATIO = 1.15
RUN_TIMEOUT_SECONDS = 300.0
POLICY = "bench"


# ---------------------------------------------------------------------------
# The upstream: a streamed chat completion after a fixed delay (run with --serve)
# ---------------------------------------------------------------------------

_EVENTS = (
    b'data: {"id":"c","object":"chat.completion.chunk","model":"bench","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":"The answer is 42."}}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","model":"bench","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","model":"bench","choices":[],'
    b'"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}}\n\n'
    b"data: [DONE]\n\n"
)
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
    + str(len(_EVENTS)).encode()
    + b"\r\n\r\n"
    + _EVENTS
)


class _StreamedAnswer(asyncio.Protocol):
    """Reply to each complete request on a keep-alive connection with `_RESPONSE`, delayed."""

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            request_end = head_end + 4 + _content_length(self._buffer[:head_end])
            if len(self._buffer) < request_end:
                return
            self._buffer = self._buffer[request_end:]
            asyncio.get_running_loop().call_later(self._delay, self._reply)

    def _reply(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_RESPONSE)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def _serve(latency_ms: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _StreamedAnswer(latency_ms / 1000), "127.0.0.1", 0, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


def _start_upstream(latency_ms: float) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"the upstream did not start: {line!r}")
    return process, int(line)


# ---------------------------------------------------------------------------
# The measured run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    elapsed_seconds: float
    cpu_seconds: float
    summary: RunSummary


def _config(port: int, models: int, concurrency: int, database_url: str) -> LoadedConfig:
    names = [f"model-{index}" for index in range(models)]
    model_list = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": f"http://127.0.0.1:{port}/v1",
                "api_key": "sk-bench",
            },
            "model_info": {"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7},
        }
        for name in names
    ]
    raw = {
        "model_list": model_list,
        "router_settings": {"num_retries": 0},
        "general_settings": {"database_url": database_url},
        "policies": {POLICY: {"reference": names[0], "candidates": names, "judge": "checks"}},
        "evaluation": {"concurrency": concurrency, "budget_usd": 100.0, "freshness_hours": 0},
    }
    return parse_config(raw, {})


def _add_cases(database_url: str, count: int) -> None:
    engine = make_engine(database_url)
    now = datetime.now(UTC)
    rows = [
        BenchmarkCase(
            policy=POLICY,
            source="imported",
            content_hash=f"bench-{index}",
            messages=[{"role": "user", "content": f"Question {index}: what is 6 x 7?"}],
            expected="42",
            checks=[{"type": "number", "value": 42}],
            created_at=now,
        )
        for index in range(count)
    ]
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()
    engine.dispose()


async def _measure(loaded: LoadedConfig) -> Measurement:
    engine = make_engine(loaded.database_url)
    session = new_session()
    try:
        caller = GatewayModelCaller(Forwarder(loaded.config, build_groups(loaded.config), session))
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = await asyncio.wait_for(
            run_evaluation(engine, loaded, caller, POLICY, trigger="cli"), RUN_TIMEOUT_SECONDS
        )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        await session.close()
        engine.dispose()
    return Measurement(elapsed, cpu, summary)


def _run_once(
    directory: Path, name: str, latency_ms: float, args: argparse.Namespace
) -> Measurement:
    upstream, port = _start_upstream(latency_ms)
    try:
        database_url = f"sqlite:///{directory / name}.db"
        _add_cases(database_url, args.cases)
        loaded = _config(port, args.models, args.concurrency, database_url)
        return asyncio.run(_measure(loaded))
    finally:
        upstream.terminate()
        upstream.wait(10)


def _check_run(measurement: Measurement, calls: int) -> None:
    summary = measurement.summary
    if summary.status != "completed" or summary.calls != calls:
        raise RuntimeError(f"the run ended {summary.status} after {summary.calls} of {calls} calls")
    for aggregate in summary.report.aggregates:
        if aggregate.errors or aggregate.pass_rate != 1.0:
            raise RuntimeError(f"{aggregate.model}: {aggregate.errors} errors, not all passed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="number of cases (default 200)")
    parser.add_argument("--models", type=int, default=4, help="candidate models (default 4)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight (16)")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="upstream wait (200)")
    parser.add_argument("--serve", action="store_true", help="run only the upstream")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.latency_ms))
        return 0

    calls = args.cases * args.models
    ideal = calls / args.concurrency * args.latency_ms / 1000
    with tempfile.TemporaryDirectory(prefix="pareto-eval-bench-") as directory:
        slow = _run_once(Path(directory), "slow", args.latency_ms, args)
        fast = _run_once(Path(directory), "fast", 0.0, args)
    _check_run(slow, calls)
    _check_run(fast, calls)

    ratio = slow.elapsed_seconds / ideal
    figures = {
        "calls": calls,
        "concurrency": args.concurrency,
        "upstream_latency_ms": args.latency_ms,
        "elapsed_seconds": round(slow.elapsed_seconds, 3),
        "ideal_seconds": round(ideal, 3),
        "ratio": round(ratio, 4),
        "target_ratio": TARGET_RATIO,
        "overhead_per_call_ms": round((slow.elapsed_seconds - ideal) / calls * 1000, 3),
        "zero_latency_elapsed_seconds": round(fast.elapsed_seconds, 3),
        "zero_latency_wall_per_call_ms": round(fast.elapsed_seconds / calls * 1000, 3),
        "zero_latency_cpu_per_call_ms": round(fast.cpu_seconds / calls * 1000, 3),
    }
    print(json.dumps(figures, indent=2))
    if ratio > TARGET_RATIO:
        print(f"target missed: elapsed / ideal {ratio:.3f} > {TARGET_RATIO}", file=sys.stderr)
        return 1
    print(f"target met: elapsed / ideal {ratio:.3f} <= {TARGET_RATIO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
