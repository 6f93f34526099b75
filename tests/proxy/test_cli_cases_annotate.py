"""`pareto cases annotate`: criteria, checks and scores attached to sampled cases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from evaluator.annotate import annotate_cases
from evaluator.cases import CaseRow, load_cases
from evaluator.redaction import Redactor
from evaluator.sampler import CaseSampler
from evaluator.tables import BenchmarkCase, EvalResult, EvalRun, Judgment
from proxy.config import load_config
from proxy.sampling import sampling_policies
from tests.proxy.test_cli_cases import config_path, engine, run, write

__all__ = ["config_path", "engine"]

PRICE = [{"role": "user", "content": "How much is the kettle?"}]
# Sampled cases are stored redacted: the e-mail address becomes a placeholder.
ORDER = [{"role": "user", "content": "Where is my order? I am ann@example.com"}]


def sample(config_path: Path, engine: Engine, *conversations: list[dict[str, str]]) -> None:
    async def offer_all() -> None:
        sampler = CaseSampler(engine, sampling_policies(load_config(config_path).config))
        for index, messages in enumerate(conversations):
            sampler.offer("support", messages, f"answer {index}", "big", f"r{index}")
        await sampler.flush()

    asyncio.run(offer_all())


def stored(engine: Engine) -> dict[str, BenchmarkCase]:
    return {case.messages[0]["content"]: case for case in load_cases(engine, "support")}


def line(messages: list[dict[str, str]], **fields: object) -> str:
    return json.dumps({"messages": messages, **fields})


def test_annotate_sets_fields_and_keeps_expected(
    config_path: Path, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample(config_path, engine, PRICE, ORDER)
    checks = [{"type": "contains", "value": "$39.00"}]
    path = write(
        tmp_path / "criteria.jsonl",
        "\n".join(
            [
                line(PRICE, criteria="Quotes the list price.", checks=checks, tags=["price"]),
                line(ORDER, criteria="Asks for the order number."),
                line([{"role": "user", "content": "never sent"}], criteria="x"),
            ]
        ),
    )

    code = run("cases", "annotate", path, "--policy", "support", "--config", config_path)

    assert code == 0
    captured = capsys.readouterr()
    assert "support: annotated 2, unchanged 0, unmatched 1, invalid 0" in captured.out
    assert "line 3: no stored case has these messages: never sent" in captured.err
    cases = stored(engine)
    price = cases["How much is the kettle?"]
    assert (price.criteria, price.checks, price.tags) == (
        "Quotes the list price.",
        checks,
        ["price"],
    )
    assert (price.expected, price.expected_model, price.source) == ("answer 0", "big", "sampled")
    order = next(case for text, case in cases.items() if text.startswith("Where is my order?"))
    assert "ann@example.com" not in order.messages[0]["content"]
    assert order.criteria == "Asks for the order number."
    assert len(cases) == 2


def test_annotate_twice_reports_unchanged(
    config_path: Path, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample(config_path, engine, PRICE)
    path = write(tmp_path / "criteria.jsonl", line(PRICE, scores={"big": 9, "small": 6}))

    assert run("cases", "annotate", path, "--policy", "support", "--config", config_path) == 0
    assert run("cases", "annotate", path, "--policy", "support", "--config", config_path) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "support: annotated 0, unchanged 1, unmatched 0, invalid 0"
    assert stored(engine)["How much is the kettle?"].scores == {"big": 9, "small": 6}


def test_changed_checks_drop_cached_judgments(engine: Engine, config_path: Path) -> None:
    sample(config_path, engine, PRICE)
    case = stored(engine)["How much is the kettle?"]
    assert case.id is not None
    now = datetime.now(UTC)
    with Session(engine) as session:
        run_row = EvalRun(
            policy="support", status="finished", trigger="cli", models=["big"],
            case_ids=[case.id], budget_usd=1.0, spent_usd=0.0, started_at=now,
        )  # fmt: skip
        session.add(run_row)
        session.flush()
        assert run_row.id is not None
        result = EvalResult(
            run_id=run_row.id, case_id=case.id, model="big", status="ok", created_at=now
        )
        session.add(result)
        session.flush()
        assert result.id is not None
        session.add(
            Judgment(
                result_id=result.id,
                case_id=case.id,
                output_hash="h",
                judge="checks",
                rubric_version="1",
                score=10.0,
                passed=True,
                created_at=now,
            )
        )
        session.commit()

    tags_only = annotate_cases(engine, "support", [CaseRow(messages=PRICE, tags=["t"])])
    with Session(engine) as session:
        assert len(session.exec(select(Judgment)).all()) == 1
    checks = [{"type": "contains", "value": "39"}]
    with_checks = annotate_cases(engine, "support", [CaseRow(messages=PRICE, checks=checks)])
    with Session(engine) as session:
        assert session.exec(select(Judgment)).all() == []

    assert (tags_only.updated, with_checks.updated) == (1, 1)


def test_redacted_match_needs_the_redactor(engine: Engine, config_path: Path) -> None:
    sample(config_path, engine, ORDER)
    row = CaseRow(messages=ORDER, criteria="Asks for the order number.")

    without = annotate_cases(engine, "support", [row])
    with_redactor = annotate_cases(engine, "support", [row], Redactor(phones=False))

    assert without.unmatched == [0]
    assert with_redactor.updated == 1


def test_annotate_usage_errors_exit_2(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "criteria.jsonl", line(PRICE, criteria="x"))

    unknown = run("cases", "annotate", path, "--policy", "nope", "--config", config_path)
    missing = run(
        "cases", "annotate", tmp_path / "absent.jsonl", "--policy", "support", "--config",
        config_path,
    )  # fmt: skip

    assert (unknown, missing) == (2, 2)
    err = capsys.readouterr().err
    assert "nope" in err
    assert "absent.jsonl: file not found" in err


def test_annotate_every_row_invalid_exits_1(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "criteria.jsonl", '{"messages": "not a list"}\n')

    code = run("cases", "annotate", path, "--policy", "support", "--config", config_path)

    assert code == 1
    assert "line 1:" in capsys.readouterr().err
