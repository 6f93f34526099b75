"""`pareto cases import`, `pareto eval run` and `pareto eval show` with the two real local models.

The reference model of the policy, gpt-4o-mini, is served by the local stand-in of
`tests/local_models/reference.py`, which returns every case's expected output at gpt-4o-mini's
price. The two local models are measured for real: their outputs are checked by the cases'
deterministic checks, and their latency is what the llama.cpp servers took.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from evaluator.tables import EvalResult
from proxy.cli import main
from proxy.db import make_engine
from proxy.tables import RoutingDecision
from tests.evaluator.eval_fakes import ModelServer
from tests.local_models.configs import (
    GEMMA,
    POLICY,
    REFERENCE,
    SMOLLM2,
    load_yaml,
    offline_config,
    write_config,
)
from tests.local_models.conftest import LocalServers
from tests.local_models.reference import CASES_FILE, reference_server

pytestmark = pytest.mark.local_models

# The first four cases by id (two arithmetic, two extraction) keep the run under a minute.
CASE_LIMIT = 4
LOCAL_MODELS = (SMOLLM2, GEMMA)


@pytest.fixture(scope="module")
def reference() -> Iterator[ModelServer]:
    with reference_server() as server:
        yield server


@pytest.fixture
def config_path(local_servers: LocalServers, reference: ModelServer, tmp_path: Path) -> str:
    config = offline_config(
        smollm2_base=local_servers.smollm2.base_url,
        gemma_base=local_servers.gemma.base_url,
        reference_base=reference.base_url,
        database_url=f"sqlite:///{tmp_path / 'pareto.db'}",
    )
    return str(write_config(tmp_path / "config.yaml", config))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stored_rows(config_path: str) -> tuple[list[EvalResult], list[RoutingDecision]]:
    database_url = load_yaml(Path(config_path))["general_settings"]["database_url"]
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            results = list(session.exec(select(EvalResult).order_by(col(EvalResult.id))))
            decisions = list(session.exec(select(RoutingDecision)))
    finally:
        engine.dispose()
    return results, decisions


def test_evaluation_of_local_models(
    capsys: pytest.CaptureFixture[str], config_path: str, reference: ModelServer
) -> None:
    code, out, err = run_cli(
        capsys, "cases", "import", str(CASES_FILE), "--policy", POLICY, "--config", config_path
    )
    assert code == 0, err
    assert f"{POLICY}: imported 20, duplicates 0, invalid 0" in out

    code, out, err = run_cli(
        capsys,
        "eval",
        "run",
        "--policy",
        POLICY,
        "--config",
        config_path,
        "--limit",
        str(CASE_LIMIT),
        "--no-progress",
    )
    assert code == 0, err
    assert f"{CASE_LIMIT} cases x 3 models" in out
    decision_lines = [line for line in out.splitlines() if line.startswith("decision ")]
    assert len(decision_lines) == 1, out

    code, out, err = run_cli(capsys, "eval", "show", "--config", config_path, "--json")
    assert code == 0, err
    report = json.loads(out)
    rows = {row["model"]: row for row in report["models"]}
    results, decisions = stored_rows(config_path)

    assert report["run"]["status"] == "completed"
    assert set(rows) == {REFERENCE, *LOCAL_MODELS}
    assert len(reference.calls_to(REFERENCE)) == CASE_LIMIT
    for model in LOCAL_MODELS:
        row = rows[model]
        assert row["cases"] == CASE_LIMIT, model
        assert row["errors"] == 0, model
        assert row["scored_cases"] == CASE_LIMIT, model
        assert row["cost_per_request_usd"] == 0, model
        assert row["latency_p50_ms"] > 0, model
        assert row["ttft_mean_ms"] > 0, model
    assert rows[REFERENCE]["score_mean"] == 10
    assert rows[REFERENCE]["cost_per_request_usd"] > 0

    for model in LOCAL_MODELS:
        own = [result for result in results if result.model == model]
        assert len(own) == CASE_LIMIT, model
        assert all(result.status == "ok" for result in own), model
        assert all(result.output for result in own), model
        assert all(result.cost_usd == 0 for result in own), model
        assert all((result.latency_ms or 0) > 0 for result in own), model
        assert all(0 < (result.ttft_ms or 0) <= (result.latency_ms or 0) for result in own)

    assert len(decisions) == 1
    decision = decisions[0]
    assert decision.run_id == report["run"]["id"]
    assert decision.policy == POLICY
    assert decision.mode == "recommend"
    assert not decision.applied
    assert decision.chosen_model in {REFERENCE, *LOCAL_MODELS}
    assert decision.reason
    assert decision_lines[0].startswith(f"decision {decision.id}: ")
