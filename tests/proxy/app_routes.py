"""The routes a gateway app serves, for tests that must cover every route, later ones included."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from proxy.app import Gateway


def served_routes(app: Gateway) -> list[tuple[str, str]]:
    """Return (method, path) of every route of `app`, HEAD left out, in the order served.

    FastAPI 0.165 keeps an included router as one entry that points to the router, so the
    walk follows those entries into the routes they hold.
    """
    return sorted(set(_walk(app.api.routes, "")), key=lambda item: (item[1], item[0]))


def _walk(routes: Iterable[Any], prefix: str) -> Iterable[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            inner_prefix = prefix + getattr(route.include_context, "prefix", "")
            yield from _walk(included.routes, inner_prefix)
            continue
        path = prefix + getattr(route, "path", "")
        for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"}):
            yield method, path
