"""The `pareto policies`, `pareto decisions` and `pareto route` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import Engine

from proxy.cli import main
from proxy.db import make_engine
from proxy.decisions import (
    get_decision,
    latest_applied,
    list_decisions,
    record_decision,
    record_pin,
)
from tests.gateway import deployment
from tests.proxy.test_decisions import POLICY, add_requests, make_decision

PARETO = Path(sys.executable).parent / "pareto"
# The commands never call a model, so nothing listens here.
API_BASE = "http://127.0.0.1:9/v1"


def cli_config(**routing: Any) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("big", "big-model", API_BASE),
            deployment("small", "small-model", API_BASE),
        ],
        "policies": {
            POLICY: {
                "reference": "big",
                "candidates": ["big", "small"],
                "judge": "checks",
                **routing,
            },
        },
    }


@pytest.fixture
def config_path(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cli_config()), encoding="utf-8")
    return path


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# pareto policies


def test_policies_table_default_route(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "policies", "--config", str(config_path))

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{POLICY}: routes to big (default)"
    assert lines[1] == "  mode: auto"
    assert lines[2] == "  reference: big"
    assert lines[3] == "  candidates: big, small"
    assert lines[4].startswith("  savings to date: $0.0000 over 0 requests")
    assert lines[5].startswith("    method: no estimate: ")
    assert lines[6] == "  last decision: none yet"


def test_policies_table_after_decision(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    decision_id = record_decision(engine, POLICY, make_decision())
    add_requests(engine, POLICY, "small", [0.002, 0.002])

    code, out, err = run(capsys, "policies", "--config", str(config_path))

    assert code == 0, err
    assert f"{POLICY}: routes to small (decision {decision_id})" in out
    assert (
        "  savings to date: $0.0160 (80%) over 2 requests: spent $0.0040, the reference model "
        "would have cost $0.0200"
    ) in out
    assert f"from decision {decision_id}'s candidate table" in out
    assert f"    decision {decision_id} of {POLICY} at " in out
    assert ": big -> small, mode auto, evaluation, applied" in out
    header = next(line for line in out.splitlines() if "cost/request" in line)
    assert header.split() == [
        "model",
        "cost/request",
        "quality",
        "mean",
        "[low,",
        "high]",
        "p95",
        "latency",
        "error",
        "rate",
        "cases",
        "frontier",
        "eligible",
    ]
    small_row = next(line for line in out.splitlines() if line.strip().startswith("small "))
    assert small_row.split() == [
        "small",
        "$0.002000",
        "8.60",
        "[8.30,",
        "8.90]",
        "1000",
        "ms",
        "0.0%",
        "50",
        "yes",
        "yes",
    ]


def test_policies_operator_pin(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    pin_id = record_pin(engine, POLICY, "small", "big")

    code, out, _ = run(capsys, "policies", "--config", str(config_path))

    assert code == 0
    assert f"{POLICY}: routes to small (decision {pin_id})" in out
    assert "  mode: pinned, pinned by operator" in out


def test_policies_json(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    decision_id = record_decision(engine, POLICY, make_decision())

    code, out, err = run(capsys, "policies", "--config", str(config_path), "--json")

    assert code == 0, err
    body = json.loads(out)
    assert body["object"] == "list"
    (item,) = body["data"]
    assert item["policy"] == POLICY
    assert item["model"] == "small"
    assert item["decision_id"] == decision_id
    assert item["mode"] == "auto"
    assert item["pinned_by"] is None
    assert item["last_decision"]["id"] == decision_id
    assert len(item["last_decision"]["candidates"]) == 2
    assert set(item["savings"]) == {
        "requests",
        "spend_usd",
        "reference_usd",
        "saved_usd",
        "saved_share",
        "method",
        "by_model",
    }


def test_policies_none_configured(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    config = cli_config()
    del config["policies"]
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    code, out, _ = run(capsys, "policies", "--config", str(path))

    assert code == 0
    assert out == "No policies are configured.\n"


# pareto decisions


def test_decisions_table(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    first = record_decision(engine, POLICY, make_decision())
    second = record_decision(
        engine, POLICY, make_decision("small", small_mean=6.0, mode="recommend")
    )

    code, out, err = run(capsys, "decisions", "--config", str(config_path))

    assert code == 0, err
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].startswith(f"decision {second} of {POLICY} at ")
    assert ": small -> big, mode recommend, evaluation, not applied" in blocks[0]
    assert blocks[1].startswith(f"decision {first} of {POLICY} at ")
    assert "\nreason: " in blocks[0]
    assert "no: quality" in blocks[0]  # small's ineligible reason in the eligible column


def test_decisions_filters(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    record_decision(engine, POLICY, make_decision())
    newest = record_pin(engine, POLICY, "big", "small")
    record_pin(engine, "retired-policy", "small", None)

    code, out, _ = run(
        capsys, "decisions", "--config", str(config_path), "--policy", POLICY, "--limit", "1"
    )

    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"decision {newest} of {POLICY} at ")
    assert lines[0].endswith(": small -> big, mode pinned, operator, applied")
    assert lines[1] == "reason: pinned by operator"


def test_decisions_json(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    decision_id = record_decision(engine, POLICY, make_decision(), run_id=8)

    code, out, _ = run(capsys, "decisions", "--config", str(config_path), "--json")

    assert code == 0
    body = json.loads(out)
    assert body["data"] == [row.to_dict() for row in list_decisions(engine)]
    assert body["data"][0]["id"] == decision_id
    assert body["data"][0]["run_id"] == 8


def test_decisions_none(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "decisions", "--config", str(config_path))

    assert code == 0
    assert out == "No decisions are stored yet.\n"


def test_decisions_unknown_policy(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "decisions", "--config", str(config_path), "--policy", "nope")

    assert code == 2
    assert out == ""
    assert err == f"error: unknown policy 'nope': the configured policies are {POLICY}.\n"


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_decisions_invalid_limit(
    config_path: Path, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["decisions", "--config", str(config_path), "--limit", limit])

    assert exited.value.code == 2
    assert (
        f"invalid limit '{limit}': expected a whole number from 1 to 1000"
        in capsys.readouterr().err
    )


# pareto route


def test_route_pin(config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "route", "--config", str(config_path), "--policy", POLICY, "--model", "small"
    )

    assert code == 0, err
    applied = latest_applied(engine)[POLICY]
    assert applied.model == "small"
    assert applied.operator_pin
    stored = get_decision(engine, applied.decision_id)
    assert stored is not None
    assert stored.previous_model == "big"
    assert stored.reason == "pinned by operator"
    assert out.startswith(f"{POLICY}: pinned to small (decision {applied.decision_id}). ")
    assert "within one route sync interval" in out


def test_route_release(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    record_decision(engine, POLICY, make_decision())
    record_pin(engine, POLICY, "big", "small")

    code, out, err = run(
        capsys, "route", "--config", str(config_path), "--policy", POLICY, "--auto"
    )

    assert code == 0, err
    applied = latest_applied(engine)[POLICY]
    assert applied.model == "small"
    assert applied.source == "operator"
    assert not applied.operator_pin
    assert out.startswith(
        f"{POLICY}: pin released, the policy routes to small (decision {applied.decision_id}). "
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--policy", POLICY, "--model", "medium"],
            f"error: model 'medium' is not a candidate of policy '{POLICY}': choose one of big, "
            "small.\n",
            id="not-candidate",
        ),
        pytest.param(
            ["--policy", "nope", "--model", "small"],
            f"error: unknown policy 'nope': the configured policies are {POLICY}.\n",
            id="unknown-policy",
        ),
        pytest.param(
            ["--policy", POLICY, "--auto"],
            f"error: Policy '{POLICY}' is not pinned by an operator, so there is nothing to "
            "release.\n",
            id="release-unpinned",
        ),
    ],
)
def test_route_errors(
    config_path: Path,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, "route", "--config", str(config_path), *arguments)

    assert code == 2
    assert out == ""
    assert err == message
    assert list_decisions(engine) == []


@pytest.mark.parametrize("target", [["--model", "big"], ["--auto"]])
def test_route_config_pin_rejected(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: list[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    path = tmp_path / "pinned.yaml"
    path.write_text(yaml.safe_dump(cli_config(mode="pinned", pin="small")), encoding="utf-8")

    code, _, err = run(capsys, "route", "--config", str(path), "--policy", POLICY, *target)

    assert code == 2
    assert err.startswith("error: ")
    assert "pinned to small in the configuration file" in err
    assert len(err.splitlines()) == 1


def test_route_needs_model_or_auto(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["route", "--config", str(config_path), "--policy", POLICY])

    assert exited.value.code == 2
    assert "one of the arguments --model --auto is required" in capsys.readouterr().err


# Errors shared by the commands


def test_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model_list: []\n", encoding="utf-8")

    code, out, err = run(capsys, "policies", "--config", str(path))

    assert code == 2
    assert out == ""
    assert err.startswith(f"error: invalid configuration {path}: model_list")
    assert len(err.splitlines()) == 1


def test_unreachable_database(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:db-pass-77c1@127.0.0.1:1/none")

    code, _, err = run(capsys, "decisions", "--config", str(config_path))

    assert code == 2
    assert err.startswith(
        "error: cannot open the database postgresql+psycopg://postgres:***@127.0.0.1:1/none: "
    )
    assert "db-pass-77c1" not in err
    assert len(err.splitlines()) == 1


def test_console_script_exit_code(config_path: Path, sqlite_url: str) -> None:
    done = subprocess.run(
        [str(PARETO), "route", "--config", str(config_path), "--policy", POLICY, "--model", "x"],
        env={"DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: model 'x' is not a candidate")
