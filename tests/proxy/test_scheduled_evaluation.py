"""The loop in one gateway: traffic, a scheduled evaluation, a decision and a route switch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from evaluator.cases import import_cases, parse_row
from proxy.db import make_engine
from proxy.eval_lock import EvaluationLock
from tests.conftest import POSTGRES_URL, GatewayFactory, reset_postgres
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

EXPENSIVE = {"input_cost_per_token": 0.00001, "output_cost_per_token": 0.00003}
CHEAP = {"input_cost_per_token": 0.0000002, "output_cost_per_token": 0.0000006}


def loop_config(base_url: str, mode: str = "auto", **policy: Any) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("expensive", "expensive-model", base_url, model_info=EXPENSIVE),
            deployment("cheap", "cheap-model", base_url, model_info=CHEAP),
        ],
        "policies": {
            "bot": {
                "reference": "expensive",
                "candidates": ["expensive", "cheap"],
                "sample_rate": 0.0,
                "judge": "checks",
                "schedule": "every 1s",
                "min_quality": 8.0,
                "min_quality_ratio": 0.95,
                "min_cases": 10,
                "max_latency_p95_ms": 4000,
                "max_error_rate": 0.02,
                "mode": mode,
                **policy,
            }
        },
        "evaluation": {"concurrency": 4, "budget_usd": 1.0},
        "general_settings": {"master_key": MASTER_KEY},
    }


def import_questions(database_url: str, count: int = 12) -> None:
    rows = [
        parse_row(
            {
                "input": f"question {index}",
                "checks": [{"type": "contains", "value": f"question {index}"}],
            }
        )
        for index in range(count)
    ]
    engine = make_engine(database_url)
    try:
        import_cases(engine, "bot", rows)
    finally:
        engine.dispose()


class Traffic:
    """Requests to the policy in a loop from a thread, remembering every status and model."""

    def __init__(self, gateway: RunningGateway) -> None:
        self._gateway = gateway
        self._stop = threading.Event()
        self.results: list[tuple[int, str | None]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        client = self._gateway.client(timeout=10)
        with client:
            while not self._stop.is_set():
                try:
                    raw = client.chat.completions.with_raw_response.create(
                        model="bot", messages=[{"role": "user", "content": "hi"}]
                    )
                except openai.APIStatusError as exc:
                    self.results.append((exc.status_code, None))
                else:
                    self.results.append((raw.status_code, raw.headers.get("x-pareto-model")))
                time.sleep(0.01)

    def served_by(self, model: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.results and self.results[-1][1] == model:
                return True
            time.sleep(0.05)
        return False


def admin_get(gateway: RunningGateway, path: str) -> Any:
    response = httpx.get(
        f"{gateway.base_url}{path}", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_scheduled_run_switches_route(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, sqlite_url: str
) -> None:
    import_questions(sqlite_url)
    gateway = start_gateway(loop_config(fake_upstream.base_url))

    with Traffic(gateway) as traffic:
        switched = traffic.served_by("cheap", timeout=20)
        time.sleep(0.3)

    assert switched, "the route did not switch to the cheaper model within 20 s"
    statuses = {status for status, _ in traffic.results}
    assert statuses == {200}, f"failed requests during the switch: {statuses}"
    models = [model for _, model in traffic.results]
    assert models[0] == "expensive"
    assert models[-1] == "cheap"

    decisions = admin_get(gateway, "/pareto/decisions?policy=bot&limit=5")["data"]
    assert decisions, "no decision visible through the API"
    newest = decisions[0]
    assert newest["chosen_model"] == "cheap"
    assert "cheap" in newest["reason"]


@pytest.mark.postgres
def test_second_gateway_follows_switch(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_postgres()
    import_questions(POSTGRES_URL)
    monkeypatch.setenv("PARETO_ROUTE_SYNC_SECONDS", "1")
    config = loop_config(fake_upstream.base_url)
    evaluating = start_gateway(config, POSTGRES_URL)
    follower_config = loop_config(fake_upstream.base_url)
    del follower_config["policies"]["bot"]["schedule"]
    follower = start_gateway(follower_config, POSTGRES_URL)

    with Traffic(evaluating) as first, Traffic(follower) as second:
        assert first.served_by("cheap", timeout=20), "the evaluating gateway did not switch"
        switched_at = time.monotonic()
        assert second.served_by("cheap", timeout=10), "the second gateway did not follow"
        lag = time.monotonic() - switched_at

    print(f"second gateway followed the switch {lag:.1f} s later")
    assert {status for status, _ in first.results + second.results} == {200}


def test_decision_visible_in_cli(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, sqlite_url: str, tmp_path: Path
) -> None:
    import_questions(sqlite_url)
    config = loop_config(fake_upstream.base_url)
    gateway = start_gateway(config)
    with Traffic(gateway) as traffic:
        assert traffic.served_by("cheap", timeout=20)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    result = subprocess.run(
        [str(Path(sys.executable).with_name("pareto")), "decisions", "--config", str(config_path),
         "--policy", "bot", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["data"]
    assert rows[0]["chosen_model"] == "cheap"
    assert rows[0]["candidates"], "the CLI shows the candidate table"


def test_recommend_mode_records_only(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, sqlite_url: str
) -> None:
    import_questions(sqlite_url)
    gateway = start_gateway(loop_config(fake_upstream.base_url, mode="recommend"))

    deadline = time.monotonic() + 20
    decisions: list[Any] = []
    while time.monotonic() < deadline and not decisions:
        decisions = admin_get(gateway, "/pareto/decisions?policy=bot&limit=5")["data"]
        time.sleep(0.2)
    reply = gateway.client().chat.completions.with_raw_response.create(
        model="bot", messages=[{"role": "user", "content": "hi"}]
    )

    assert decisions, "no decision was recorded within 20 s"
    assert decisions[0]["chosen_model"] == "cheap"
    assert decisions[0]["applied"] is False
    assert reply.headers["x-pareto-model"] == "expensive"


def test_pinned_mode_holds(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, sqlite_url: str
) -> None:
    import_questions(sqlite_url)
    gateway = start_gateway(loop_config(fake_upstream.base_url, mode="pinned", pin="expensive"))

    deadline = time.monotonic() + 20
    decisions: list[Any] = []
    while time.monotonic() < deadline and not decisions:
        decisions = admin_get(gateway, "/pareto/decisions?policy=bot&limit=5")["data"]
        time.sleep(0.2)
    reply = gateway.client().chat.completions.with_raw_response.create(
        model="bot", messages=[{"role": "user", "content": "hi"}]
    )

    assert decisions, "no decision was recorded within 20 s"
    assert decisions[0]["chosen_model"] == "expensive"
    assert reply.headers["x-pareto-model"] == "expensive"


LOCK_HOLDER = """
import sys, time
from proxy.db import make_engine
from proxy.eval_lock import EvaluationLock
from proxy.eval_lock import EvaluationLock
lock = EvaluationLock(make_engine(sys.argv[1]), "bot")
print("acquired" if lock.acquire() else "busy", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_lock_one_process_at_a_time(backend: str, sqlite_url: str) -> None:
    if backend == "postgres":
        reset_postgres()
    url = sqlite_url if backend == "sqlite" else POSTGRES_URL
    engine = make_engine(url)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"

        second = EvaluationLock(engine, "bot")
        other_policy = EvaluationLock(engine, "other")
        assert not second.acquire(), "a second process took a lock that is held"
        assert other_policy.acquire(), "another policy's lock must stay free"
        other_policy.release()

        holder.kill()
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not second.acquire() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.acquired, "the lock of a killed process was not released"
        second.release()
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
        engine.dispose()


def admin_post(gateway: RunningGateway, path: str, key: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}{path}", headers={"Authorization": f"Bearer {key}"})


def test_evaluate_now_decides_without_waiting_for_the_schedule(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, sqlite_url: str
) -> None:
    import_questions(sqlite_url)
    fake_upstream.latency_seconds = 0.05  # the run lasts long enough to ask twice
    gateway = start_gateway(loop_config(fake_upstream.base_url, schedule="every 6h"))

    started = admin_post(gateway, "/pareto/policies/bot/evaluate")
    again = admin_post(gateway, "/pareto/policies/bot/evaluate")

    assert started.status_code == 202, started.text
    assert started.json() == {"object": "evaluation", "policy": "bot", "status": "started"}
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "evaluation_in_progress"
    deadline = time.monotonic() + 20
    decisions: list[dict[str, Any]] = []
    while not decisions and time.monotonic() < deadline:
        decisions = admin_get(gateway, "/pareto/decisions?policy=bot")["data"]
        time.sleep(0.1)
    assert decisions, "no decision within 20 s of the run-now request"
    assert decisions[0]["chosen_model"] == "cheap"
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            triggers = connection.exec_driver_sql("SELECT trigger FROM eval_run").scalars().all()
    finally:
        engine.dispose()
    assert triggers == ["api"]


def test_evaluate_now_errors(fake_upstream: FakeUpstream, start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(loop_config(fake_upstream.base_url, schedule="every 6h"))

    unknown = admin_post(gateway, "/pareto/policies/nope/evaluate")
    no_key = admin_post(gateway, "/pareto/policies/bot/evaluate", key="wrong")
    wrong_method = httpx.get(
        f"{gateway.base_url}/pareto/policies/bot/evaluate",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "policy_not_found"
    assert no_key.status_code == 401
    assert "error" in no_key.json()
    assert wrong_method.status_code == 405
