"""Prometheus metrics of one gateway process, on a registry of its own.

Label values are configured model names and status codes only, never text from a request, so
that a client cannot grow the number of series. A request for an unknown model is counted under
model="unknown".
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Every series the gateway exports."""

    def __init__(self) -> None:
        # Label children per (model, status), looked up once instead of on every request.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pareto_requests",
            "Requests answered, by served model and HTTP status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "pareto_request_errors",
            "Requests answered with an error, by model and error type.",
            ["model", "error_type"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pareto_request_latency_seconds",
            "Time from receiving a request to its last byte, by model and status.",
            ["model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "pareto_time_to_first_token_seconds",
            "Time from receiving a streaming request to its first chunk, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "pareto_tokens",
            "Tokens reported by upstreams, by model and kind (prompt, completion, cached).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "pareto_cost_usd",
            "Spend in USD computed from usage and per-token prices, by model.",
            ["model"],
            registry=self.registry,
        )
        self.upstream_failures = Counter(
            "pareto_upstream_failures",
            "Failed upstream attempts (retried or not), by deployment and kind.",
            ["deployment", "kind"],
            registry=self.registry,
        )
        self.recorder_dropped = Counter(
            "pareto_recorder_dropped_rows",
            "Request rows dropped because the recorder's queue was full.",
            registry=self.registry,
        )
        self.sampler_dropped = Counter(
            "pareto_sampler_dropped_cases",
            "Sampled requests dropped because the case sampler's queue was full.",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "pareto_requests_in_flight",
            "Forwarding requests being answered right now.",
            registry=self.registry,
        )
        self.recorder_queued = Gauge(
            "pareto_recorder_queued_rows",
            "Request rows waiting to be written to the database.",
            registry=self.registry,
        )

    def observe(
        self,
        model: str,
        status: int,
        latency_s: float,
        ttft_s: float | None,
        tokens: tuple[int, int, int],
        cost: float,
        error_type: str | None,
    ) -> None:
        """Record one finished request."""
        key = (model, status)
        children = self._children.get(key)
        if children is None:
            status_label = str(status)
            children = self._children[key] = (
                self.requests.labels(model, status_label),
                self.latency.labels(model, status_label),
            )
        children[0].inc()
        children[1].observe(latency_s)
        if ttft_s is not None:
            self.ttft.labels(model).observe(ttft_s)
        if error_type is not None:
            self.errors.labels(model, error_type).inc()
        prompt, completion, cached = tokens
        if prompt:
            self.tokens.labels(model, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(model, "completion").inc(completion)
        if cached:
            self.tokens.labels(model, "cached").inc(cached)
        if cost:
            self.cost.labels(model).inc(cost)

    def render(self) -> bytes:
        return generate_latest(self.registry)
