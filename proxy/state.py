"""The running gateway's shared objects, created by the app's lifespan and handed to routes."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Scope

from proxy.config import LoadedConfig
from proxy.deployments import Deployment, DeploymentGroups
from proxy.errors import AuthenticationError
from proxy.logs import RequestLineWriter
from proxy.metrics import Metrics
from proxy.retention import DEFAULT_FIRST_DELAY_SECONDS, DEFAULT_INTERVAL_SECONDS
from proxy.route_table import RouteTable

if TYPE_CHECKING:
    import aiohttp
    from sqlalchemy.engine import Engine

    from evaluator.sampler import CaseSampler
    from proxy.forward import Forwarder
    from proxy.recorder import Recorder
    from proxy.scheduler import EvaluationScheduler

logger = logging.getLogger(__name__)

MASTER_KEY_ID = "master"


@dataclass
class AppState:
    """Everything a request handler needs; nothing here is a module-level global."""

    loaded: LoadedConfig
    groups: DeploymentGroups
    metrics: Metrics
    max_body_bytes: int
    master_key: bytes | None
    secrets: list[str]
    routes: RouteTable = field(default_factory=lambda: RouteTable({}))
    metrics_require_auth: bool = True
    engine: Engine | None = None
    session: aiohttp.ClientSession | None = None
    forwarder: Forwarder | None = None
    recorder: Recorder | None = None
    unpriced_warned: set[str] = field(default_factory=set)
    usage_estimated_warned: set[str] = field(default_factory=set)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    sampler: CaseSampler | None = None
    in_flight: int = 0  # forwarding requests being answered right now
    request_lines: RequestLineWriter | None = None
    scheduler: EvaluationScheduler | None = None
    # Seconds from the start to the first retention prune, and between prunes.
    retention_first_delay: float = DEFAULT_FIRST_DELAY_SECONDS
    retention_interval: float = DEFAULT_INTERVAL_SECONDS
    sample_rng: random.Random = field(default_factory=random.Random)
    started_at: float = field(default_factory=time.time)
    # Request ids: a random per-process prefix and a counter, unique across replicas and
    # cheaper than uuid4 (whose os.urandom call showed up at 3% of request-path time).
    _id_prefix: str = field(default_factory=lambda: os.urandom(6).hex())
    _id_counter: itertools.count[int] = field(default_factory=itertools.count)

    def next_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):010x}"

    def authenticate(self, scope: Scope) -> str | None:
        """Check the bearer token against the master key; return the caller's key id.

        Without a configured master key the gateway is open and the key id is None.
        """
        if self.master_key is None:
            return None
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = token.strip()
                break
        if not presented:
            raise AuthenticationError(
                "Missing API key. Send 'Authorization: Bearer <key>' with the gateway's key.",
                code="missing_api_key",
            )
        if not hmac.compare_digest(presented, self.master_key):
            raise AuthenticationError(
                "Invalid API key. Use the gateway's key (general_settings.master_key), "
                "not a provider's.",
                code="invalid_api_key",
            )
        return MASTER_KEY_ID

    def warn_usage_estimated(self, deployment: Deployment, counter: str) -> None:
        """Log once per deployment that its streams carry no usage and are counted here."""
        if deployment.id in self.usage_estimated_warned:
            return
        self.usage_estimated_warned.add(deployment.id)
        logger.warning(
            "deployment %s streams no usage; its streamed requests are recorded with tokens "
            "counted by the gateway (%s), an estimate",
            deployment.id,
            counter,
        )

    def warn_unpriced(self, deployment: Deployment) -> None:
        """Log once per deployment that its calls are recorded at cost 0."""
        if deployment.prices.known or deployment.id in self.unpriced_warned:
            return
        self.unpriced_warned.add(deployment.id)
        logger.warning(
            "no price known for model %s (deployment %s): its cost is recorded as 0; "
            "set model_info.input_cost_per_token and output_cost_per_token",
            deployment.litellm_model,
            deployment.id,
        )
