"""The demo's steps, from simulated models to a switched route, with a progress display."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import make_url
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from evaluator.annotate import annotate_cases
from evaluator.cases import CaseRow, count_cases
from evaluator.tables import EvalResult, EvalRun
from proxy.config import LoadedConfig, load_config
from proxy.db import make_engine
from proxy.decisions import StoredDecision, list_decisions
from proxy.demo.gateway_process import GatewayProcess
from proxy.demo.spend import PhaseSpend, monthly_savings, phase_spend, saved_share
from proxy.demo.traffic import Outcome, Traffic
from proxy.report.data import load_report
from proxy.report.page import render_report
from proxy.sampling import sampling_policies
from proxy.simulator.catalog import build_catalog
from proxy.simulator.dataset import SupportConversation, load_dataset
from proxy.simulator.personas import load_persona_specs
from proxy.simulator.runner import ThreadedSimulator
from proxy.tables import RequestLog, RoutingDecision

UPSTREAM_ENV = "PARETO_DEMO_UPSTREAM"
KEY_ENV = "PARETO_DEMO_KEY"
SAMPLING_TIMEOUT_SECONDS = 30.0
DECISION_TIMEOUT_SECONDS = 300.0
ROUTE_TIMEOUT_SECONDS = 15.0
DECISION_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.2


class DemoError(RuntimeError):
    """Raised when a step of the demo fails; the message names the step and the cause."""


@dataclass(frozen=True)
class DemoOptions:
    """The demo's input files, its output folder and database, and the simulated speed."""

    config: Path
    models: Path
    workdir: Path
    database_url: str | None = None
    speed: float = 1.0
    concurrency: int = 8


@dataclass(frozen=True)
class DemoResult:
    """The demo's measurements, for the summary and for tests."""

    policy: str
    decision: dict[str, Any]
    before: PhaseSpend
    after: PhaseSpend
    requests_per_second: float
    monthly_savings_usd: float
    failed_requests: int
    database_url: str
    gateway_log: Path
    report: Path

    @property
    def saved_share(self) -> float:
        return saved_share(self.before, self.after)

    @property
    def switched(self) -> bool:
        return bool(self.decision["applied"]) and (
            self.decision["chosen_model"] != self.decision["previous_model"]
        )


def run_demo(options: DemoOptions, console: Console) -> DemoResult:
    """Run every step and return what was measured. Raises `DemoError` when a step fails."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    database_url = options.database_url or f"sqlite:///{options.workdir / 'pareto.db'}"
    specs = load_persona_specs(options.models)
    conversations = list(load_dataset(specs[0].dataset).conversations)
    catalog = build_catalog(config=options.models)

    with ThreadedSimulator(catalog, speed=options.speed) as simulator:
        os.environ[UPSTREAM_ENV] = simulator.base_url
        os.environ.setdefault(KEY_ENV, "sk-demo-" + secrets.token_urlsafe(16))
        os.environ["DATABASE_URL"] = database_url
        config_path = _scaled_config(options)
        loaded = load_config(config_path)
        policy, model = _policy_and_model(loaded)
        console.print(
            f"Simulated models on {simulator.base_url}: {', '.join(catalog.names())}. "
            "They are not real LLMs: each answers the bundled support dataset with a fixed "
            "share of flawed replies."
        )
        log_path = options.workdir / "gateway.log"
        engine = make_engine(database_url)
        try:
            _require_empty(engine, policy, database_url)
            with GatewayProcess(config_path, log_path, {}) as gateway:
                console.print(f"Pareto gateway on {gateway.base_url} (log: {log_path})")
                result = _loop(
                    options, console, gateway, engine, loaded, policy, model, conversations
                )
            report = options.workdir / "pareto-report.html"
            page = render_report(load_report(engine, policy, loaded.config.policies[policy]))
            report.write_text(page, encoding="utf-8")
            return DemoResult(
                **result, database_url=database_url, gateway_log=log_path, report=report
            )
        finally:
            engine.dispose()


def _loop(
    options: DemoOptions,
    console: Console,
    gateway: GatewayProcess,
    engine: Engine,
    loaded: LoadedConfig,
    policy: str,
    model: str,
    conversations: list[SupportConversation],
) -> dict[str, Any]:
    key = os.environ[KEY_ENV]
    traffic = Traffic(gateway.base_url, key, model, options.concurrency)
    messages = [conversation.messages for conversation in conversations]
    try:
        with _progress(console) as progress:
            started = time.monotonic()
            first = _send(progress, traffic, messages, f"Traffic to {model}, before")
            # Scaled back to real latencies, so that --speed does not inflate the projection.
            rate = len(first) / ((time.monotonic() - started) * options.speed)
            _wait_for_cases(progress, engine, policy, len(conversations))
            _annotate(progress, engine, loaded, policy, conversations)
            decision = _evaluate(progress, gateway, engine, policy, key)
            _wait_for_route(gateway, key, policy, decision.chosen_model)
            second = _send(progress, traffic, messages, f"Traffic to {model}, after")
    finally:
        traffic.close()
    gateway.stop()  # SIGTERM writes every queued request row before the spend is read
    before = phase_spend(engine, policy, None)
    after = phase_spend(engine, policy, decision.id)
    return {
        "policy": policy,
        "decision": decision.to_dict(),
        "before": before,
        "after": after,
        "requests_per_second": rate,
        "monthly_savings_usd": monthly_savings(before, after, rate),
        "failed_requests": sum(not outcome.ok for outcome in first + second),
    }


def _scaled_config(options: DemoOptions) -> Path:
    """Return the gateway's configuration, with latency ceilings divided by `--speed`.

    The simulated latencies are divided by the speed factor, so the ceilings must shrink with
    them. Otherwise a model too slow at real speed would pass them and the decision would change.
    """
    if options.speed == 1:
        return options.config
    raw = yaml.safe_load(options.config.read_text(encoding="utf-8"))
    for policy in (raw.get("policies") or {}).values():
        ceiling = policy.get("max_latency_p95_ms")
        if isinstance(ceiling, int | float) and not isinstance(ceiling, bool):
            policy["max_latency_p95_ms"] = ceiling / options.speed
    scaled = options.workdir / f"demo-speed-{options.speed:g}.yaml"
    scaled.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return scaled


def _require_empty(engine: Engine, policy: str, database_url: str) -> None:
    """Raise `DemoError` if the database contains an earlier run of the policy.

    The earlier requests and decisions would mix into the before and after figures.
    """
    with Session(engine) as session:
        requests = session.exec(select(func.count()).where(RequestLog.policy == policy)).one()
        decisions = session.exec(select(func.count()).where(RoutingDecision.policy == policy)).one()
    if requests or decisions:
        shown = make_url(database_url).render_as_string(hide_password=True)
        raise DemoError(
            f"the database {shown} already contains {_count(requests, 'request')} and "
            f"{_count(decisions, 'decision')} of policy {policy} from an earlier run; run the "
            "demo on an empty database (a new --workdir, or another --db)"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _policy_and_model(loaded: LoadedConfig) -> tuple[str, str]:
    """Return the demo's one policy and the model its application requests (the reference)."""
    policies = loaded.config.policies
    if len(policies) != 1:
        raise DemoError(f"the demo configuration must define one policy, not {len(policies)}")
    name, config = next(iter(policies.items()))
    return name, config.reference


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        yield progress


def _send(
    progress: Progress, traffic: Traffic, messages: list[list[dict[str, Any]]], label: str
) -> list[Outcome]:
    task = progress.add_task(label, total=len(messages))
    return traffic.send(messages, on_done=lambda _outcome: progress.advance(task))


def _wait_for_cases(progress: Progress, engine: Engine, policy: str, expected: int) -> None:
    """Wait until the sampler has stored a case per conversation, or its count stops growing."""
    task = progress.add_task("Cases sampled from the traffic", total=expected)
    deadline = time.monotonic() + SAMPLING_TIMEOUT_SECONDS
    stored = 0
    while time.monotonic() < deadline:
        stored = count_cases(engine).get(policy, {}).get("sampled", 0)
        progress.update(task, completed=stored)
        if stored >= expected:
            return
        time.sleep(POLL_SECONDS)
    if stored == 0:
        raise DemoError("no case was sampled from the traffic; see the gateway log")


def _annotate(
    progress: Progress,
    engine: Engine,
    loaded: LoadedConfig,
    policy: str,
    conversations: list[SupportConversation],
) -> None:
    """Attach each conversation's criteria and checks to its sampled case."""
    rows = [
        CaseRow(
            messages=conversation.messages,
            criteria=conversation.criteria,
            checks=conversation.checks,
            tags=list(conversation.tags) or None,
        )
        for conversation in conversations
    ]
    task = progress.add_task("Criteria attached to the cases", total=len(rows))
    redactor = sampling_policies(loaded.config)[policy].redactor
    result = annotate_cases(engine, policy, rows, redactor)
    progress.update(task, completed=result.updated + result.unchanged)


def _evaluate(
    progress: Progress, gateway: GatewayProcess, engine: Engine, policy: str, key: str
) -> StoredDecision:
    """Ask the gateway to evaluate now and wait for the run's decision."""
    response = httpx.post(
        f"{gateway.base_url}/pareto/policies/{policy}/evaluate",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10.0,
    )
    if response.status_code != 202:
        raise DemoError(f"the evaluation did not start: {response.status_code} {response.text}")
    task = progress.add_task("Candidate calls evaluated", total=None)
    deadline = time.monotonic() + DECISION_TIMEOUT_SECONDS
    ended: float | None = None
    while time.monotonic() < deadline:
        run = _newest_run(engine, policy)
        if run is not None:
            done, total = _run_progress(engine, run)
            progress.update(task, completed=done, total=total)
            decisions = list_decisions(engine, policy, 1)
            if decisions and decisions[0].run_id == run.id:
                return decisions[0]
            if run.status != "running":
                ended = ended or time.monotonic()
                # The decision is written right after the run ends; allow it a moment.
                if time.monotonic() - ended > DECISION_GRACE_SECONDS:
                    raise DemoError(
                        f"evaluation run {run.id} ended {run.status} without a decision: "
                        f"{run.error or 'see ' + str(gateway.log_path)}"
                    )
        time.sleep(POLL_SECONDS)
    raise DemoError(f"no decision within {DECISION_TIMEOUT_SECONDS:g} s; see {gateway.log_path}")


def _newest_run(engine: Engine, policy: str) -> EvalRun | None:
    with Session(engine) as session:
        query = select(EvalRun).where(EvalRun.policy == policy).order_by(col(EvalRun.id).desc())
        return session.exec(query.limit(1)).first()


def _run_progress(engine: Engine, run: EvalRun) -> tuple[int, int]:
    total = len(run.models) * len(run.case_ids)
    with Session(engine) as session:
        done = session.exec(
            select(func.count()).where(EvalResult.run_id == run.id, EvalResult.status != "pending")
        ).one()
    return int(done), total


def _wait_for_route(gateway: GatewayProcess, key: str, policy: str, model: str) -> None:
    """Wait until the gateway routes the policy to `model`."""
    deadline = time.monotonic() + ROUTE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{gateway.base_url}/pareto/policies",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10.0,
        )
        if response.status_code == 200 and _routed_model(response.json(), policy) == model:
            return
        time.sleep(POLL_SECONDS)
    raise DemoError(
        f"the gateway did not route {policy} to {model} within {ROUTE_TIMEOUT_SECONDS:g} s"
    )


def _routed_model(body: dict[str, Any], policy: str) -> str | None:
    for item in body.get("data", []):
        if item.get("policy") == policy:
            model = item.get("model")
            return model if isinstance(model, str) else None
    return None
