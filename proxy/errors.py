"""Errors the gateway returns to clients, in the OpenAI error envelope.

Hierarchy::

    ProxyError                      any error returned as {"error": {...}} with an HTTP status
    ├── InvalidRequestError         400: the request body or a parameter is invalid
    ├── AuthenticationError         401: missing or wrong master key
    ├── ModelNotFoundError          404: the model is not configured
    ├── RequestTooLargeError        413: the body exceeds the configured limit
    ├── HeadersTooLargeError        431: the request headers exceed the configured limit
    └── UpstreamError               the upstream call failed after retries and fallbacks
        ├── UpstreamTimeoutError    408: no response within the configured timeout
        └── UpstreamRateLimitError  429: every attempt was rate limited

Messages are sentences that name the bad value and, where there is one, the fix. They never
contain a key or a request body.
"""

from __future__ import annotations

from typing import Any

import orjson


class ProxyError(Exception):
    """An error returned to the client with `status` and an OpenAI-shaped body."""

    status: int = 500
    error_type: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.to_dict())


class InvalidRequestError(ProxyError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationError(ProxyError):
    status = 401
    error_type = "authentication_error"


class ModelNotFoundError(ProxyError):
    status = 404
    error_type = "invalid_request_error"

    def __init__(self, model: str) -> None:
        shown = model if len(model) <= 200 else model[:200] + "..."
        super().__init__(
            f"The model '{shown}' does not exist on this gateway. "
            "GET /v1/models lists the configured models.",
            code="model_not_found",
            param="model",
        )


class RequestTooLargeError(ProxyError):
    status = 413
    error_type = "invalid_request_error"


class HeadersTooLargeError(ProxyError):
    status = 431
    error_type = "invalid_request_error"


class UpstreamError(ProxyError):
    status = 502
    error_type = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    status = 408
    error_type = "timeout_error"


class UpstreamRateLimitError(UpstreamError):
    status = 429
    error_type = "rate_limit_error"


def error_body(status: int, message: str, error_type: str, code: str | None = None) -> bytes:
    """Serialize an OpenAI error envelope for errors raised outside `ProxyError`."""
    return ProxyError(message, status=status, error_type=error_type, code=code).body()
