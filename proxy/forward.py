"""The retry loop: retries with backoff, then the group's next deployment, then fallbacks.

For a request naming model M, the loop tries every available deployment of M, the weighted pick
first. Each is tried `1 + max_retries` times on retryable failures (429, 408, 409, 5xx,
connection errors, timeouts, unusable 200s). Then each model of M's fallback list is tried the
same way. A non-retryable failure (a 400 for a too long prompt, say) ends the loop at once.
Nothing here runs after bytes have reached the client, so streams are retried only until their
first chunk arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson

from proxy import translated
from proxy.config import ParetoConfig
from proxy.deployments import Deployment, DeploymentGroups
from proxy.errors import ProxyError, UpstreamError, UpstreamRateLimitError, UpstreamTimeoutError
from proxy.masking import deployment_secrets, masked_failure
from proxy.upstream import JsonReply, UpstreamFailure, UpstreamStream, open_stream, post_json

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_SECONDS = 8.0
MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass(slots=True)
class Trace:
    """The attempts made for one request, for the request record and the log line."""

    deployment: Deployment | None = None
    attempts: int = 0
    fallback_used: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)


class Forwarder:
    """Send a request to the deployments of a model, following retries and fallbacks."""

    def __init__(
        self,
        config: ParetoConfig,
        groups: DeploymentGroups,
        session: aiohttp.ClientSession,
        rng: random.Random | None = None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self._groups = groups
        self._on_failure = on_failure
        self._session = session
        self._fallbacks = config.fallbacks()
        self._allowed_fails = config.router_settings.allowed_fails
        self._cooldown_time = config.router_settings.cooldown_time
        self._min_wait = config.router_settings.retry_after
        self._backoff = config.router_settings.retry_backoff_seconds
        self._drop_params = config.litellm_settings.drop_params
        self._rng = rng or random.Random()
        self._secrets = deployment_secrets(groups.all())

    async def call_json(
        self, model_name: str, payload: dict[str, Any], endpoint: str, trace: Trace
    ) -> JsonReply:
        """Forward a non-streaming request and return the first successful response."""

        async def attempt(deployment: Deployment) -> JsonReply:
            if not deployment.direct:
                return await translated.call_json(deployment, payload, endpoint, self._drop_params)
            body = upstream_body(deployment, payload)
            return await post_json(self._session, deployment, endpoint, body)

        return await self._run(model_name, trace, attempt)

    async def open_stream(
        self, model_name: str, payload: dict[str, Any], endpoint: str, trace: Trace
    ) -> tuple[UpstreamStream | translated.TranslatedStream, bytes]:
        """Open a stream and return it with its first chunk."""

        async def attempt(
            deployment: Deployment,
        ) -> tuple[UpstreamStream | translated.TranslatedStream, bytes]:
            if not deployment.direct:
                return await translated.open_stream(deployment, payload, self._drop_params)
            body = upstream_body(deployment, payload)
            return await open_stream(self._session, deployment, endpoint, body)

        return await self._run(model_name, trace, attempt)

    async def _run(
        self,
        model_name: str,
        trace: Trace,
        attempt: Callable[[Deployment], Awaitable[T]],
    ) -> T:
        last: UpstreamFailure | None = None
        chain = [model_name, *self._fallbacks.get(model_name, [])]
        for position, name in enumerate(chain):
            for deployment in self._groups.ordered(name):
                for retry in range(deployment.max_retries + 1):
                    if retry > 0 and last is not None:
                        await asyncio.sleep(self._wait(retry, last))
                    trace.attempts += 1
                    trace.deployment = deployment
                    trace.fallback_used = position > 0
                    try:
                        return await attempt(deployment)
                    except UpstreamFailure as caught:
                        failure = masked_failure(caught, self._secrets)
                        last = failure
                        self._note_failure(deployment, failure, trace)
                        if not failure.retryable:
                            raise client_error(failure, deployment) from failure
                    if deployment.cooling_down(time.monotonic()):
                        break
        if last is None:
            raise _all_cooling_down(model_name, self._groups.cooldown_remaining(model_name))
        raise client_error(last, trace.deployment)

    def _wait(self, retry: int, failure: UpstreamFailure) -> float:
        if failure.retry_after is not None:
            return self._retry_after(failure)
        exponential: float = min(MAX_BACKOFF_SECONDS, self._backoff * 2.0 ** (retry - 1))
        return max(self._min_wait, exponential * self._rng.uniform(0.5, 1.0))

    def _retry_after(self, failure: UpstreamFailure) -> float:
        wait: float = failure.retry_after or 0.0
        return max(self._min_wait, min(wait, MAX_RETRY_AFTER_SECONDS))

    def _note_failure(self, deployment: Deployment, failure: UpstreamFailure, trace: Trace) -> None:
        trace.failures.append(f"{deployment.id}: {failure.message}")
        if self._on_failure is not None:
            self._on_failure(deployment.id, failure.kind)
        logger.warning(
            "upstream attempt failed: model=%s deployment=%s kind=%s status=%s error=%s",
            deployment.model_name,
            deployment.id,
            failure.kind,
            failure.status,
            failure.message,
        )
        if not failure.retryable:
            return
        started = deployment.record_failure(
            time.monotonic(), self._allowed_fails, self._cooldown_time
        )
        if started:
            logger.warning(
                "deployment cooling down: deployment=%s seconds=%g",
                deployment.id,
                self._cooldown_time,
            )


def upstream_body(deployment: Deployment, payload: dict[str, Any]) -> bytes:
    """Serialize `payload` for `deployment`: its model name, its defaults where unset."""
    body = dict(payload)
    body["model"] = deployment.upstream_model
    for key, value in deployment.defaults.items():
        body.setdefault(key, value)
    try:
        return orjson.dumps(body)
    except TypeError:
        # An integer beyond 64 bits, kept exact by the body parser.
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def client_error(failure: UpstreamFailure, deployment: Deployment | None) -> ProxyError:
    """Turn the last upstream failure into the error the client receives."""
    if deployment is not None:
        # Failures of a stream that has started come here without passing the retry loop.
        failure = masked_failure(failure, deployment_secrets([deployment]))
    where = f"upstream '{deployment.id}'" if deployment else "the upstream"
    if failure.kind == "timeout":
        return UpstreamTimeoutError(
            f"The request timed out: {where} sent {failure.message}.", code="upstream_timeout"
        )
    if failure.kind == "connection":
        return UpstreamError(
            f"The request failed: {where} could not be reached ({failure.message}).",
            code="upstream_connection_error",
        )
    if failure.kind == "invalid_response":
        return UpstreamError(
            f"The request failed: {failure.message} ({where}).", code="upstream_invalid_response"
        )
    status = failure.status or 502
    if status == 429:
        headers = {}
        if failure.retry_after is not None:
            headers["retry-after"] = f"{failure.retry_after:g}"
        return UpstreamRateLimitError(
            f"Rate limited by {where}: {failure.message}",
            code=failure.code or "rate_limit_exceeded",
            headers=headers,
        )
    if status in (401, 403):
        return UpstreamError(
            f"{where} rejected the gateway's credentials (HTTP {status}): {failure.message}. "
            "Check the api_key of this deployment in the configuration.",
            code="upstream_authentication_error",
        )
    if status >= 500 or status in (408, 409):
        return UpstreamError(
            f"{where} failed with HTTP {status}: {failure.message}",
            code=f"upstream_status_{status}",
        )
    return ProxyError(
        failure.message,
        status=status,
        error_type=failure.error_type or "invalid_request_error",
        code=failure.code,
        param=failure.param,
    )


def _all_cooling_down(model_name: str, remaining: float) -> ProxyError:
    seconds = max(1, round(remaining + 0.5))
    return ProxyError(
        f"Every deployment of model '{model_name}' is cooling down after repeated failures. "
        f"Retry in {seconds} s.",
        status=503,
        error_type="upstream_error",
        code="deployments_cooling_down",
        headers={"retry-after": str(seconds)},
    )
