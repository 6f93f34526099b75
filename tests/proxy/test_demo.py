"""`pareto demo` end to end: a switch away from the most expensive model, savings, a report."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlmodel import Session

from proxy.cli import main
from proxy.db import make_engine
from proxy.tables import RequestLog

DEMO_SPEED = "8"  # latencies and the latency ceiling divided by 8: the shortened schedule
ROOT = Path(__file__).resolve().parents[2]


def demo_prices() -> dict[str, float]:
    """Each demo model's cost of 1,000 input plus 1,000 output tokens, from config/demo.yaml."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"))
    return {
        entry["model_name"]: 1000 * entry["model_info"]["input_cost_per_token"]
        + 1000 * entry["model_info"]["output_cost_per_token"]
        for entry in config["model_list"]
    }


def slowest_persona() -> str:
    """The demo persona with the longest time to first token, from config/demo-models.yaml."""
    personas = yaml.safe_load((ROOT / "config" / "demo-models.yaml").read_text(encoding="utf-8"))
    slowest: str = max(personas["models"], key=lambda persona: persona["ttft_ms"])["name"]
    return slowest


@pytest.mark.slow
def test_demo_switches_to_a_cheaper_model(tmp_path: Path) -> None:
    environ = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    completed = subprocess.run(
        [sys.executable, "-m", "proxy", "demo", "--workdir", str(tmp_path), "--speed", DEMO_SPEED],
        capture_output=True,
        text=True,
        timeout=240,
        env=environ,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, completed.stderr[-3000:]

    prices = demo_prices()
    most_expensive = max(prices, key=prices.__getitem__)
    switch = re.search(r"^Decision: (\S+) -> (\S+) \(applied, mode auto\)$", out, re.MULTILINE)
    assert switch, out
    assert switch.group(1) == most_expensive
    chosen = switch.group(2)
    assert chosen != most_expensive
    assert prices[chosen] < prices[most_expensive]

    reason = re.search(r"^Reason: (.+)$", out, re.MULTILINE)
    assert reason and chosen in reason.group(1)
    assert "simulated, not real LLMs" in out
    saved = re.search(r"^Saved per request: (\d+)%\.$", out, re.MULTILINE)
    assert saved and int(saved.group(1)) > 0
    monthly = re.search(r"\$([\d,]+\.\d\d) per 30 days", out)
    assert monthly and float(monthly.group(1).replace(",", "")) > 0
    assert "Failed requests" not in out
    for model in prices:
        assert re.search(rf"^  {re.escape(model)}\s+\$", out, re.MULTILINE), f"{model} missing"
    # The latency ceiling shrinks with --speed, so the slowest persona stays excluded by it.
    slowest = slowest_persona()
    row = re.search(rf"^  {re.escape(slowest)}\s.*$", out, re.MULTILINE)
    assert row and "p95 latency" in row.group(0) and "> " in row.group(0), out

    report = tmp_path / "pareto-report.html"
    assert f"Report: {report}" in out
    page = report.read_text(encoding="utf-8")
    assert "<svg" in page
    assert chosen in page

    engine = create_engine(f"sqlite:///{tmp_path / 'pareto.db'}")
    try:
        with engine.connect() as connection:
            decision = connection.execute(
                text("SELECT previous_model, chosen_model, applied FROM routing_decision")
            ).one()
            served_after = connection.execute(
                text(
                    "SELECT served_model, count(*) FROM request_log "
                    "WHERE policy = 'support' AND decision_id IS NOT NULL GROUP BY served_model"
                )
            ).all()
            sampled = connection.execute(
                text("SELECT count(*) FROM benchmark_case WHERE source = 'sampled'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert tuple(decision) == (most_expensive, chosen, True)
    assert [model for model, _count in served_after] == [chosen]
    assert sampled >= 60


def test_demo_reports_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"

    code = main(["demo", "--config", str(missing), "--workdir", str(tmp_path)])

    assert code == 2
    assert f"{missing} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("speed", ["0", "-1", "fast", "5000"])
def test_demo_rejects_bad_speed(speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--speed", speed])

    assert exited.value.code == 2
    assert "--speed" in capsys.readouterr().err


def test_demo_refuses_a_database_with_an_earlier_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'used.db'}"
    engine = make_engine(url)
    with Session(engine) as session:
        session.add(
            RequestLog(
                request_id="r1",
                created_at=datetime.now(UTC),
                endpoint="chat/completions",
                status=200,
                policy="support",
            )
        )
        session.commit()
    engine.dispose()
    for name in ("DATABASE_URL", "PARETO_DEMO_UPSTREAM", "PARETO_DEMO_KEY"):
        monkeypatch.delenv(name, raising=False)

    code = main(["demo", "--db", url, "--workdir", str(tmp_path / "run")])

    assert code == 1
    err = capsys.readouterr().err
    assert "already contains 1 request and 0 decisions of policy support" in err
    assert not (tmp_path / "run" / "gateway.log").exists()


def test_demo_reports_an_unusable_database_in_one_line(tmp_path: Path) -> None:
    url = "postgresql://nobody:hunter2secret@127.0.0.1:1/none"
    completed = subprocess.run(
        [sys.executable, "-m", "proxy", "demo", "--db", url, "--speed", "50"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "cannot be used" in errors[0]
    assert "Traceback" not in completed.stderr
    assert "hunter2secret" not in completed.stderr


@pytest.mark.slow
def test_sigterm_stops_the_demo_and_its_gateway(tmp_path: Path) -> None:
    environ = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "proxy", "demo", "--workdir", str(tmp_path), "--speed", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    gateway_url = None
    assert demo.stderr is not None
    for line in demo.stderr:
        found = re.search(r"Pareto gateway on (http://127\.0\.0\.1:\d+)", line)
        if found:
            gateway_url = found.group(1)
            break
    assert gateway_url, "the demo did not start its gateway"
    assert httpx.get(f"{gateway_url}/health/liveliness", timeout=5).status_code == 200

    demo.send_signal(signal.SIGTERM)
    _out, err = demo.communicate(timeout=60)

    assert demo.returncode == 130
    assert "interrupted" in err
    assert "Traceback" not in err
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{gateway_url}/health/liveliness", timeout=2)
