"""`GET /openapi.json`: the OpenAPI document of every route the gateway serves.

FastAPI's generated document would miss the two forwarding routes, which are plain ASGI apps
outside its routing (see `proxy.app.Gateway`), and would describe FastAPI's 422 validation
errors, which the gateway never returns. So the document is written by hand in `openapi.yaml`
beside this module; tests/proxy/test_openapi_fuzz.py checks it against the running gateway.
The route is public: the document is the same for every gateway and names nothing configured.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import yaml
from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()

DOCUMENT = "openapi.yaml"


def load_document() -> dict[str, Any]:
    """Read and parse the OpenAPI document shipped with the package."""
    text = resources.files("proxy").joinpath(DOCUMENT).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    return document


@router.get("/openapi.json")
async def openapi() -> Response:
    """Return the OpenAPI document as JSON (read on each request: it is rarely fetched)."""
    return Response(orjson.dumps(load_document()), media_type="application/json")
