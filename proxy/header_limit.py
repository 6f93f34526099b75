"""The limit on the total size of a request's headers, checked before any route runs.

uvicorn 0.55 with its httptools parser sets no limit of its own: a request with an 8 MiB header
reached the app in a test. The gateway cannot stop the server from reading such a block, but it
returns 431 in the OpenAI envelope instead of serving the request, so an oversized header fails
clearly rather than in some later step.
"""

from __future__ import annotations

from itertools import chain

from starlette.types import Scope

from proxy.errors import HeadersTooLargeError

KIB = 1024


def header_bytes(scope: Scope) -> int:
    """Return the bytes of every header name and value of the request in `scope`."""
    return sum(map(len, chain.from_iterable(scope["headers"])))


def headers_too_large(limit: int) -> HeadersTooLargeError:
    """Build the 431 error for requests whose headers pass `limit` bytes."""
    return HeadersTooLargeError(
        f"The request headers are larger than the limit of {limit / KIB:g} KB "
        "(general_settings.max_header_size_kb). Send shorter header values.",
        code="headers_too_large",
    )
