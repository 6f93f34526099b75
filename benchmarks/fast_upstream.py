"""A minimal OpenAI-compatible upstream for load tests: one fixed chat completion, no framework.

It parses just enough HTTP/1.1 (keep-alive, Content-Length bodies) to answer every POST with the
same small JSON body, so that the time it spends per request is far below the gateway's.

    python benchmarks/fast_upstream.py PORT [--latency-ms N]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import uvloop

BODY = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
    b'"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"ok"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}'
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class FixedAnswer(asyncio.Protocol):
    """Answer each complete request on the connection with `RESPONSE`."""

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = _content_length(self._buffer[:head_end])
            request_end = head_end + 4 + length
            if len(self._buffer) < request_end:
                return
            self._buffer = self._buffer[request_end:]
            self._answer()

    def _answer(self) -> None:
        assert self._transport is not None
        if self._delay <= 0:
            self._transport.write(RESPONSE)
            return
        asyncio.get_running_loop().call_later(self._delay, self._write_later)

    def _write_later(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(RESPONSE)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def serve(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FixedAnswer(delay), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="TCP port on 127.0.0.1")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
