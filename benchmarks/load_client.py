"""The load generator of benchmarks/load.py: N connections sending chat requests for T seconds.

Each connection sends one request after another, alternating streamed and plain ones, so the
mix is half and half. No request starts after the deadline and every started request is
waited for, so every request sent has an outcome. Prints one JSON object:

    {"sent": ..., "ok": ..., "errors": {"kind": count}, "seconds": ...,
     "p50_ms": ..., "p99_ms": ..., "stream_ttft_p50_ms": ...}

Latency is from sending the request to the last byte of the answer.

    python benchmarks/load_client.py URL --key KEY [--connections 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import uvloop

REQUEST_TIMEOUT_SECONDS = 60.0


@dataclass
class Tally:
    """The measurements of every connection, merged."""

    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def percentile(values: list[float], percent: float) -> float | None:
    """Nearest-rank percentile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def one_request(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], number: int, stream: bool
) -> tuple[float, float | None, str | None]:
    """Send one request; return its latency, time to first chunk and error kind (None if ok)."""
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": f"load request {number}"}],
        "stream": stream,
    }
    started = time.perf_counter()
    first: float | None = None
    async with session.post(url, json=body, headers=headers) as response:
        if response.status != 200:
            await response.read()
            return time.perf_counter() - started, None, f"status {response.status}"
        if not stream:
            reply = await response.json()
            error = None if reply.get("choices") else "no choices"
            return time.perf_counter() - started, None, error
        last = b""
        async for line in response.content:
            if first is None:
                first = time.perf_counter() - started
            if line.strip():
                last = line.strip()
        error = None if last == b"data: [DONE]" else "stream not finished"
        return time.perf_counter() - started, first, error


async def connection(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    index: int,
    deadline: float,
    tally: Tally,
) -> None:
    number = 0
    while time.monotonic() < deadline:
        stream = (index + number) % 2 == 0
        tally.sent += 1
        try:
            seconds, ttft, error = await one_request(session, url, headers, number, stream)
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
        else:
            if error is not None:
                tally.errors[error] += 1
            else:
                tally.latencies_ms.append(seconds * 1000)
                if ttft is not None:
                    tally.ttfts_ms.append(ttft * 1000)
        number += 1


async def run(url: str, key: str, connections: int, seconds: float) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {key}"}
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *(connection(session, url, headers, i, deadline, tally) for i in range(connections))
        )
        elapsed = time.monotonic() - started
    return {
        "sent": tally.sent,
        "ok": len(tally.latencies_ms),
        "errors": dict(tally.errors),
        "seconds": elapsed,
        "p50_ms": percentile(tally.latencies_ms, 50),
        "p99_ms": percentile(tally.latencies_ms, 99),
        "stream_ttft_p50_ms": percentile(tally.ttfts_ms, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the chat completions URL of the gateway")
    parser.add_argument("--key", required=True, help="the gateway's master key")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send requests")
    args = parser.parse_args()
    result = uvloop.run(run(args.url, args.key, args.connections, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
