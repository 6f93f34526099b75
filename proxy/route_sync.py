"""Keep a gateway's in-memory route table in step with the applied decisions in the database.

Every gateway on one database polls the newest applied decision of each policy every
`PARETO_ROUTE_SYNC_SECONDS` (default 2, below 10) and swaps the routes that differ. A decision
recorded by the evaluator, or by `pareto route` on another machine, so reaches every replica
within one interval plus one query. Each poll reads the newest row of every policy
instead of the rows after the last id seen, because PostgreSQL may commit a lower id after a
higher one.

The requests themselves never read the database: they read the route table, which keeps its
last routes while the database is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from proxy.decisions import AppliedRoute, latest_applied, resolve_route
from proxy.policy_config import PolicyConfig
from proxy.route_table import Route, RouteTable

logger = logging.getLogger(__name__)

INTERVAL_ENV = "PARETO_ROUTE_SYNC_SECONDS"
DEFAULT_INTERVAL_SECONDS = 2.0
MAX_INTERVAL_SECONDS = 10.0
FAILURE_LOG_SECONDS = 60.0


def sync_interval(environ: Mapping[str, str]) -> float:
    """Read the polling interval in seconds from `PARETO_ROUTE_SYNC_SECONDS`.

    Raises ValueError naming the value when it is not a number above 0 and below 10.
    """
    text = environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < MAX_INTERVAL_SECONDS:
        raise ValueError(
            f"Invalid {INTERVAL_ENV} {text!r}: expected a number of seconds above 0 and below "
            f"{MAX_INTERVAL_SECONDS:g}, such as {DEFAULT_INTERVAL_SECONDS:g}."
        )
    return seconds


def resolve_routes(
    policies: Mapping[str, PolicyConfig], applied: Mapping[str, AppliedRoute]
) -> dict[str, Route]:
    """Return the route of every configured policy, ignoring decisions of unknown policies."""
    return {name: resolve_route(config, applied.get(name)) for name, config in policies.items()}


class RouteSync:
    """Applies the newest applied decisions to a route table, once or on a schedule."""

    def __init__(
        self,
        engine: Engine,
        routes: RouteTable,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._routes = routes
        self._policies = {name: routes.policy(name) for name in routes.names()}
        self.interval = interval
        self._clock = clock
        self._failures = 0
        self._last_failure_log = -FAILURE_LOG_SECONDS
        self._stale_warned: set[int] = set()

    async def load(self) -> None:
        """Apply the stored decisions at startup, or only the configuration's pins on failure."""
        if not await self.poll():
            self._apply(resolve_routes(self._policies, {}))

    async def run(self) -> None:
        """Poll every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.poll()

    async def poll(self) -> bool:
        """Read the applied decisions and apply the routes that changed. Return False on failure.

        A database error is logged and leaves every route as it is.
        """
        try:
            applied = await asyncio.to_thread(latest_applied, self._engine)
        except (SQLAlchemyError, OSError) as exc:
            self._log_failure(exc)
            return False
        if self._failures:
            logger.info("route sync recovered after %d failed polls", self._failures)
            self._failures = 0
        self._warn_stale(applied)
        self._apply(resolve_routes(self._policies, applied))
        return True

    def _apply(self, routes: Mapping[str, Route]) -> None:
        for policy, route in routes.items():
            replaced = self._routes.apply(policy, route.model, route.decision_id)
            if replaced is not None:
                logger.info(
                    "route changed: policy=%s model=%s -> %s decision=%s -> %s",
                    policy,
                    replaced.model,
                    route.model,
                    replaced.decision_id,
                    route.decision_id,
                )

    def _warn_stale(self, applied: Mapping[str, AppliedRoute]) -> None:
        for policy, route in applied.items():
            config = self._policies.get(policy)
            if config is None or route.model in config.candidates:
                continue
            if route.decision_id in self._stale_warned:
                continue
            self._stale_warned.add(route.decision_id)
            logger.warning(
                "decision %d routes policy %s to %s, which is not one of its candidates in "
                "the configuration, so the policy stays on its reference model %s",
                route.decision_id,
                policy,
                route.model,
                config.reference,
            )

    def _log_failure(self, exc: BaseException) -> None:
        self._failures += 1
        now = self._clock()
        if self._failures > 1 and now - self._last_failure_log < FAILURE_LOG_SECONDS:
            return
        self._last_failure_log = now
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        logger.warning(
            "route sync failed (%d polls in a row), keeping the current routes: %s: %s",
            self._failures,
            type(exc).__name__,
            message,
        )
