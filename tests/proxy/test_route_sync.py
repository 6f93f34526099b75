"""Gateways follow the applied decisions in the database: at startup and while they run."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import Engine

from proxy.db import make_engine
from proxy.decisions import record_decision, record_pin
from proxy.policy_config import PolicyConfig
from proxy.route_sync import RouteSync, sync_interval
from proxy.route_table import Route, RouteTable
from tests.conftest import POSTGRES_URL, GatewayFactory, reset_postgres
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment
from tests.proxy.test_decisions import POLICY, make_decision

PARETO = Path(sys.executable).parent / "pareto"
SWITCH_LIMIT_SECONDS = 10.0
SYNC_SECONDS = "0.2"


def gateway_config(api_base: str, **routing: Any) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("big", "big-model", api_base),
            deployment("small", "small-model", api_base),
        ],
        "policies": {
            POLICY: {
                "reference": "big",
                "candidates": ["big", "small"],
                "judge": "checks",
                **routing,
            }
        },
        "general_settings": {"master_key": MASTER_KEY},
    }


def chat(gateway: RunningGateway, client: httpx.Client | None = None) -> httpx.Response:
    sender = client or httpx
    return sender.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": POLICY, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )


def serves_small(gateway: RunningGateway) -> bool:
    return chat(gateway).headers["x-pareto-model"] == "small"


def wait_for(condition: Callable[[], bool], limit: float = SWITCH_LIMIT_SECONDS) -> float:
    """Poll `condition` until it is true and return the seconds it took, failing after `limit`."""
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"condition still false after {limit} s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def fast_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETO_ROUTE_SYNC_SECONDS", SYNC_SECONDS)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


# The polling interval


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 2.0),
        ({"PARETO_ROUTE_SYNC_SECONDS": ""}, 2.0),
        ({"PARETO_ROUTE_SYNC_SECONDS": "0.5"}, 0.5),
    ],
)
def test_sync_interval_read(environ: dict[str, str], expected: float) -> None:
    assert sync_interval(environ) == expected


@pytest.mark.parametrize("value", ["0", "-1", "10", "30", "soon", "nan", "inf"])
def test_sync_interval_rejected(value: str) -> None:
    with pytest.raises(ValueError, match=f"Invalid PARETO_ROUTE_SYNC_SECONDS '{value}'"):
        sync_interval({"PARETO_ROUTE_SYNC_SECONDS": value})


# RouteSync against a database


def route_table(**routing: Any) -> RouteTable:
    config = PolicyConfig(reference="big", candidates=["big", "small"], judge="checks", **routing)
    return RouteTable({POLICY: config})


async def test_poll_applies_newest_decision(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.route_sync")
    routes = route_table()
    sync = RouteSync(engine, routes, 0.1)
    decision_id = record_decision(engine, POLICY, make_decision())

    assert await sync.poll() is True

    assert routes.route(POLICY) == Route("small", decision_id)
    assert f"route changed: policy={POLICY} model=big -> small" in caplog.text


async def test_poll_keeps_route_without_change(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    routes = route_table()
    sync = RouteSync(engine, routes, 0.1)
    record_decision(engine, POLICY, make_decision())
    await sync.poll()
    caplog.set_level(logging.INFO, logger="proxy.route_sync")

    await sync.poll()

    assert "route changed" not in caplog.text


async def test_load_applies_config_pin(engine: Engine) -> None:
    routes = route_table(mode="pinned", pin="small")
    record_decision(engine, POLICY, make_decision("small", small_mean=6.0))

    await RouteSync(engine, routes).load()

    assert routes.route(POLICY) == Route("small")


async def test_load_applies_config_pin_without_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = make_engine(f"sqlite:///{tmp_path / 'pareto.db'}")
    broken.dispose()  # close the pooled connection, which would keep the file open
    (tmp_path / "pareto.db").unlink()
    (tmp_path / "pareto.db").mkdir()  # a directory where the database file was
    routes = route_table(mode="pinned", pin="small")
    try:
        await RouteSync(broken, routes).load()
    finally:
        broken.dispose()

    assert "route sync failed (1 polls in a row)" in caplog.text
    assert routes.route(POLICY) == Route("small")


async def test_poll_survives_database_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.route_sync")
    path = tmp_path / "pareto.db"
    engine = make_engine(f"sqlite:///{path}")
    decision_id = record_decision(engine, POLICY, make_decision())
    routes = route_table()
    now = [100.0]
    sync = RouteSync(engine, routes, 0.1, clock=lambda: now[0])
    await sync.poll()
    engine.dispose()
    path.rename(tmp_path / "moved.db")
    path.mkdir()

    try:
        results = [await sync.poll() for _ in range(3)]
        now[0] += 61
        results.append(await sync.poll())
    finally:
        engine.dispose()

    assert results == [False, False, False, False]
    assert routes.route(POLICY) == Route("small", decision_id)
    failures = [r.getMessage() for r in caplog.records if "route sync failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].startswith(
        "route sync failed (1 polls in a row), keeping the current routes"
    )
    assert failures[1].startswith("route sync failed (4 polls in a row)")

    path.rmdir()
    (tmp_path / "moved.db").rename(path)
    try:
        assert await sync.poll() is True
    finally:
        engine.dispose()
    assert "route sync recovered after 4 failed polls" in caplog.text


async def test_poll_warns_once_on_removed_candidate(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.route_sync")
    decision_id = record_pin(engine, POLICY, "medium", "big")
    routes = route_table()
    sync = RouteSync(engine, routes)

    await sync.poll()
    await sync.poll()

    assert routes.route(POLICY) == Route("big")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"decision {decision_id} routes policy {POLICY} to medium" in warnings[0].getMessage()


async def test_run_polls_until_cancelled(engine: Engine) -> None:
    routes = route_table()
    task = asyncio.create_task(RouteSync(engine, routes, 0.05).run())
    decision_id = await asyncio.to_thread(record_decision, engine, POLICY, make_decision())
    for _ in range(100):
        if routes.route(POLICY).decision_id == decision_id:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert routes.route(POLICY) == Route("small", decision_id)


# A running gateway


@pytest.mark.usefixtures("fast_sync")
def test_gateway_applies_recorded_decision(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(gateway_config(fake_upstream.base_url))
    assert chat(gateway).headers["x-pareto-model"] == "big"

    decision_id = record_decision(engine, POLICY, make_decision())
    wait_for(lambda: gateway.state.routes.route(POLICY).decision_id == decision_id)
    response = chat(gateway)

    assert response.status_code == 200
    assert response.headers["x-pareto-model"] == "small"
    assert response.headers["x-pareto-decision"] == str(decision_id)
    assert fake_upstream.requests[-1].model == "small-model"


@pytest.mark.usefixtures("fast_sync")
def test_gateway_loads_decision_at_startup(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, engine: Engine
) -> None:
    decision_id = record_decision(engine, POLICY, make_decision())

    gateway = start_gateway(gateway_config(fake_upstream.base_url))
    response = chat(gateway)

    assert response.headers["x-pareto-model"] == "small"
    assert response.headers["x-pareto-decision"] == str(decision_id)


@pytest.mark.usefixtures("fast_sync")
def test_gateway_ignores_recommendation(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway(gateway_config(fake_upstream.base_url, mode="recommend"))

    record_decision(engine, POLICY, make_decision(mode="recommend"))
    time.sleep(3 * float(SYNC_SECONDS))  # three polls
    response = chat(gateway)

    assert response.headers["x-pareto-model"] == "big"
    assert "x-pareto-decision" not in response.headers


@pytest.mark.usefixtures("fast_sync")
def test_gateway_config_pin_holds(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, engine: Engine
) -> None:
    record_decision(engine, POLICY, make_decision("small", small_mean=6.0))
    gateway = start_gateway(gateway_config(fake_upstream.base_url, mode="pinned", pin="small"))
    assert chat(gateway).headers["x-pareto-model"] == "small"

    record_pin(engine, POLICY, "big", "small")
    time.sleep(3 * float(SYNC_SECONDS))  # three polls
    response = chat(gateway)

    assert response.headers["x-pareto-model"] == "small"
    assert "x-pareto-decision" not in response.headers


# Two gateways on one PostgreSQL database, switched by the CLI


class Traffic:
    """Sends requests to several gateways in turn from a thread until stopped."""

    def __init__(self, gateways: list[RunningGateway]) -> None:
        self.gateways = gateways
        self.statuses: list[int] = []
        self.models: list[str | None] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self._stop.is_set():
                for gateway in self.gateways:
                    try:
                        response = chat(gateway, client)
                    except httpx.HTTPError as exc:
                        self.errors.append(repr(exc))
                        continue
                    self.statuses.append(response.status_code)
                    self.models.append(response.headers.get("x-pareto-model"))


@pytest.mark.postgres
@pytest.mark.usefixtures("fast_sync")
def test_two_gateways_follow_cli_pin(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    reset_postgres()
    config = gateway_config(fake_upstream.base_url)
    gateways = [start_gateway(config, POSTGRES_URL), start_gateway(config, POSTGRES_URL)]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    environ = {**os.environ, "DATABASE_URL": POSTGRES_URL}
    command = [str(PARETO), "route", "--config", str(config_path), "--policy", POLICY]

    with Traffic(gateways) as traffic:
        wait_for(lambda: len(traffic.statuses) >= 10)
        done = subprocess.run(
            [*command, "--model", "small"], env=environ, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        recorded = time.monotonic()
        for gateway in gateways:
            wait_for(functools.partial(serves_small, gateway))
        switch_seconds = time.monotonic() - recorded
        wait_for(lambda: len(traffic.statuses) >= 40)

    assert switch_seconds < SWITCH_LIMIT_SECONDS
    assert traffic.errors == []
    assert set(traffic.statuses) == {200}
    assert set(traffic.models) == {"big", "small"}
    decision_id = done.stdout.split("(decision ")[1].split(")")[0]
    for gateway in gateways:
        response = chat(gateway)
        assert response.headers["x-pareto-decision"] == decision_id
