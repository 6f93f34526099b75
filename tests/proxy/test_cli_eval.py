"""`pareto eval run` and `pareto eval show`, called in-process against a local model server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from evaluator import run_store
from proxy.cli import main
from proxy.db import make_engine
from tests.evaluator.eval_fakes import (
    POLICY,
    STRONG_CALL_USD,
    ModelServer,
    add_cases,
    eval_config,
    model_behaviours,
)

RUN_KEYS = [
    "id",
    "policy",
    "status",
    "trigger",
    "models",
    "cases",
    "budget_usd",
    "spent_usd",
    "started_at",
    "finished_at",
    "message",
]
MODEL_KEYS = [
    "model",
    "cases",
    "scored_cases",
    "score_mean",
    "score_low",
    "score_high",
    "confidence",
    "pass_rate",
    "cost_per_request_usd",
    "latency_p50_ms",
    "latency_p95_ms",
    "ttft_mean_ms",
    "errors",
    "error_rate",
    "reused",
    "interrupted",
    "judge_errors",
]


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer(model_behaviours(strong_latency=0.0)) as running:
        yield running


def write_config(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


@pytest.fixture
def config_path(tmp_path: Path, server: ModelServer, sqlite_url: str) -> str:
    return write_config(tmp_path, eval_config(server.base_url, sqlite_url))


@pytest.fixture
def with_cases(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    add_cases(engine, 4)
    engine.dispose()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(stderr: str, text: str) -> None:
    assert stderr.startswith("error: ")
    assert stderr.strip().count("\n") == 0, stderr
    assert text in stderr
    assert "Traceback" not in stderr


# ---------------------------------------------------------------------------
# eval run
# ---------------------------------------------------------------------------


@pytest.mark.usefixtures("with_cases")
def test_run_prints_table(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    code, out, err = run_cli(capsys, "eval", "run", "--config", config_path, "--policy", POLICY)
    lines = out.splitlines()

    assert code == 0, err
    assert lines[0].startswith("run 1 of policy qa: completed, spent $0.00568 of $5.00")
    assert lines[2].split() == [
        "model",
        "cases",
        "score",
        "90%",
        "interval",
        "pass",
        "USD/request",
        "p50",
        "ms",
        "p95",
        "ms",
        "TTFT",
        "ms",
        "errors",
    ]
    assert lines[3].split()[:6] == ["strong", "4", "10.00", "10.00-10.00", "100%", "0.001300"]
    assert lines[4].split()[:5] == ["weak", "4", "5.50", lines[4].split()[3], "50%"]
    assert lines[3].split()[-2:] == ["0", "(0%)"]
    assert "this invocation started a new run: 8 model calls" in out


@pytest.mark.usefixtures("with_cases")
def test_run_with_models_and_limit(
    capsys: pytest.CaptureFixture[str], config_path: str, server: ModelServer
) -> None:
    code, out, _ = run_cli(
        capsys,
        "eval",
        "run",
        "--config",
        config_path,
        "--policy",
        POLICY,
        "--models",
        " weak ,",
        "--limit",
        "2",
    )

    assert code == 0
    assert "2 cases x 1 models" in out
    assert [call.model for call in server.calls] == ["weak-up", "weak-up"]


@pytest.mark.usefixtures("with_cases")
def test_run_budget_exhausted(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    code, out, _ = run_cli(
        capsys,
        "eval",
        "run",
        "--config",
        config_path,
        "--policy",
        POLICY,
        "--budget-usd",
        str(STRONG_CALL_USD * 1.5),
    )

    assert code == 0
    assert ": budget_exhausted, spent $" in out
    assert "The budget of $0.00195 ran out after $0.00142 was spent" in out


@pytest.mark.usefixtures("with_cases")
def test_run_shows_progress_on_terminal(
    capsys: pytest.CaptureFixture[str], config_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    code, _, err = run_cli(capsys, "eval", "run", "--config", config_path, "--policy", POLICY)

    assert code == 0
    assert "calls" in err
    assert "judging" in err


@pytest.mark.usefixtures("with_cases")
def test_run_no_progress_option(
    capsys: pytest.CaptureFixture[str], config_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    code, _, err = run_cli(
        capsys, "eval", "run", "--config", config_path, "--policy", POLICY, "--no-progress"
    )

    assert code == 0
    assert err == ""


@pytest.mark.usefixtures("with_cases")
def test_run_continues_dead_run(
    capsys: pytest.CaptureFixture[str], config_path: str, sqlite_url: str
) -> None:
    engine = make_engine(sqlite_url)
    case_ids, _left_out = run_store.policy_case_ids(engine, POLICY, None)
    run_store.create_run(
        engine, policy=POLICY, trigger="cli", models=["weak"], case_ids=case_ids, budget_usd=1.0
    )
    engine.dispose()
    code, out, err = run_cli(
        capsys, "eval", "run", "--config", config_path, "--policy", POLICY, "--limit", "1"
    )

    assert code == 0
    assert err.startswith("note: run 1 was continued with the models, cases and budget")
    assert "4 cases x 1 models" in out
    assert "this invocation continued a stopped run: 4 model calls" in out


def test_run_unknown_policy(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    code, out, err = run_cli(capsys, "eval", "run", "--config", config_path, "--policy", "nope")

    assert code == 2
    assert out == ""
    assert_one_error_line(err, "policy 'nope' is not in the configuration")


@pytest.mark.usefixtures("with_cases")
def test_run_unknown_model(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    code, _, err = run_cli(
        capsys, "eval", "run", "--config", config_path, "--policy", POLICY, "--models", "a,weak"
    )

    assert code == 2
    assert_one_error_line(err, "'a' is not a candidate of policy 'qa'")


def test_run_without_cases(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    code, _, err = run_cli(capsys, "eval", "run", "--config", config_path, "--policy", POLICY)

    assert code == 2
    assert err == "error: policy qa has no cases; import some with `pareto cases import`.\n"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--limit", "0", "--limit must be a whole number of cases of at least 1, got '0'"),
        ("--limit", "ten", "--limit must be a whole number"),
        ("--limit", "2.5", "--limit must be a whole number"),
        ("--budget-usd", "-1", "--budget-usd must be a positive number of USD, got '-1'"),
        ("--budget-usd", "0", "--budget-usd must be a positive number"),
        ("--budget-usd", "nan", "--budget-usd must be a positive number"),
        ("--budget-usd", "lots", "--budget-usd must be a positive number"),
        ("--models", " , ", "--models must name at least one candidate"),
    ],
)
def test_run_invalid_option(
    capsys: pytest.CaptureFixture[str], config_path: str, option: str, value: str, message: str
) -> None:
    code, _, err = run_cli(
        capsys, "eval", "run", "--config", config_path, "--policy", POLICY, option, value
    )

    assert code == 2
    assert_one_error_line(err, message)


def test_run_invalid_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(
        capsys, "eval", "run", "--config", str(tmp_path / "missing.yaml"), "--policy", POLICY
    )

    assert code == 2
    assert "file not found" in err
    assert "Traceback" not in err


def test_run_database_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, server: ModelServer
) -> None:
    unreachable = "postgresql://postgres@127.0.0.1:1/none"
    path = write_config(tmp_path, eval_config(server.base_url, unreachable))
    code, _, err = run_cli(capsys, "eval", "run", "--config", path, "--policy", POLICY)

    assert code == 1
    assert_one_error_line(err, "the database failed")


# ---------------------------------------------------------------------------
# eval show
# ---------------------------------------------------------------------------


@pytest.mark.usefixtures("with_cases")
def test_show_repeats_run_table(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    _, run_out, _ = run_cli(capsys, "eval", "run", "--config", config_path, "--policy", POLICY)
    code, show_out, _ = run_cli(capsys, "eval", "show", "--config", config_path)

    assert code == 0
    assert run_out.startswith(show_out.rstrip("\n"))
    for args in (["1"], ["--policy", POLICY], ["1", "--policy", POLICY]):
        assert run_cli(capsys, "eval", "show", "--config", config_path, *args)[1] == show_out


@pytest.mark.usefixtures("with_cases")
def test_show_json(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    run_cli(capsys, "eval", "run", "--config", config_path, "--policy", POLICY)
    code, out, _ = run_cli(capsys, "eval", "show", "--config", config_path, "--json")
    report = json.loads(out)

    assert code == 0
    assert list(report) == ["run", "models"]
    assert list(report["run"]) == RUN_KEYS
    assert report["run"]["status"] == "completed"
    assert report["run"]["trigger"] == "cli"
    assert [model["model"] for model in report["models"]] == ["strong", "weak"]
    for model in report["models"]:
        assert list(model) == MODEL_KEYS
    strong = report["models"][0]
    assert strong["score_mean"] == 10.0
    assert strong["pass_rate"] == 1.0
    assert strong["cost_per_request_usd"] == pytest.approx(STRONG_CALL_USD)


def test_show_without_runs(capsys: pytest.CaptureFixture[str], config_path: str) -> None:
    code, _, err = run_cli(capsys, "eval", "show", "--config", config_path, "--policy", POLICY)

    assert code == 2
    assert_one_error_line(err, "there is no evaluation run of policy qa yet")


@pytest.mark.parametrize(
    "args, message",
    [
        (["7"], "evaluation run 7 does not exist"),
        (["seven"], "the run id must be a positive whole number, got 'seven'"),
        (["0"], "the run id must be a positive whole number"),
        (["--policy", "nope"], "policy 'nope' is not in the configuration"),
    ],
)
def test_show_rejects_bad_run(
    capsys: pytest.CaptureFixture[str], config_path: str, args: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, "eval", "show", "--config", config_path, *args)

    assert code == 2
    assert_one_error_line(err, message)


@pytest.mark.usefixtures("with_cases")
def test_show_run_of_other_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, server: ModelServer, sqlite_url: str
) -> None:
    config = eval_config(server.base_url, sqlite_url)
    config["policies"]["other"] = dict(config["policies"][POLICY])
    path = write_config(tmp_path, config)
    run_cli(capsys, "eval", "run", "--config", path, "--policy", POLICY)
    code, _, err = run_cli(capsys, "eval", "show", "--config", path, "1", "--policy", "other")

    assert code == 2
    assert_one_error_line(err, "evaluation run 1 belongs to policy qa, not other")
