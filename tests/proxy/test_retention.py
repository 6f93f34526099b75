"""Retention: request rows and cases of controlled ages, pruned by `prune`, the gateway and the CLI.

Each database test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from evaluator.tables import BenchmarkCase, EvalResult, EvalRun, Judgment
from proxy.cli import main
from proxy.config import ConfigError, parse_config
from proxy.db import make_engine
from proxy.retention import PruneReport, RetentionSettings, prune
from proxy.tables import RequestLog
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = "support"
DAYS = 30


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    created = make_engine(database_url)
    yield created
    created.dispose()


def add_request_rows(engine: Engine, *ages_in_days: float, now: datetime = NOW) -> None:
    rows = [
        {
            "request_id": f"request-{index}-{age}",
            "created_at": now - timedelta(days=age),
            "endpoint": "chat/completions",
            "requested_model": "m",
            "status": 200,
        }
        for index, age in enumerate(ages_in_days)
    ]
    with engine.begin() as connection:
        connection.execute(insert(RequestLog), rows)


def add_case(
    engine: Engine, age_in_days: float, source: str = "sampled", now: datetime = NOW
) -> int:
    """Insert a case of the given age with one result and its judgment; return the case id."""
    created = now - timedelta(days=age_in_days)
    with engine.begin() as connection:
        case_id: int = connection.execute(
            insert(BenchmarkCase)
            .values(
                policy=POLICY,
                source=source,
                content_hash=f"hash-{source}-{age_in_days}-{time.perf_counter_ns()}",
                messages=[{"role": "user", "content": f"asked {age_in_days} days ago"}],
                created_at=created,
            )
            .returning(col(BenchmarkCase.id))
        ).scalar_one()
        run_id = connection.execute(
            insert(EvalRun)
            .values(
                policy=POLICY,
                status="completed",
                trigger="cli",
                models=["m"],
                case_ids=[case_id],
                budget_usd=1.0,
                started_at=created,
            )
            .returning(col(EvalRun.id))
        ).scalar_one()
        result_id = connection.execute(
            insert(EvalResult)
            .values(run_id=run_id, case_id=case_id, model="m", status="ok", created_at=created)
            .returning(col(EvalResult.id))
        ).scalar_one()
        connection.execute(
            insert(Judgment).values(
                result_id=result_id,
                case_id=case_id,
                output_hash="h",
                judge="checks",
                rubric_version="1",
                score=10.0,
                created_at=created,
            )
        )
    return case_id


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        total: int = connection.execute(select(func.count()).select_from(table)).scalar_one()
    return total


def case_ids(engine: Engine) -> set[int]:
    with engine.connect() as connection:
        return set(connection.execute(select(col(BenchmarkCase.id))).scalars())


# prune


def test_prune_deletes_old_rows(engine: Engine) -> None:
    add_request_rows(engine, 0.5, 29.9, 30.1, 400)
    young = add_case(engine, 29)
    old = add_case(engine, 31)
    old_imported = add_case(engine, 90, source="imported")

    report = prune(engine, RetentionSettings(DAYS), now=NOW)

    assert report == PruneReport(request_rows=2, cases=1, results=1, judgments=1)
    assert count(engine, RequestLog) == 2
    assert case_ids(engine) == {young, old_imported}
    assert old not in case_ids(engine)
    assert count(engine, EvalResult) == 2
    assert count(engine, Judgment) == 2
    assert count(engine, EvalRun) == 3


def test_prune_imported_when_configured(engine: Engine) -> None:
    young = add_case(engine, 1, source="imported")
    add_case(engine, 31, source="imported")
    add_case(engine, 31)

    report = prune(engine, RetentionSettings(DAYS, include_imported=True), now=NOW)

    assert report.cases == 2
    assert case_ids(engine) == {young}


def test_prune_dry_run_deletes_nothing(engine: Engine) -> None:
    add_request_rows(engine, 1, 31, 32)
    add_case(engine, 31)
    add_case(engine, 31, source="imported")

    report = prune(engine, RetentionSettings(DAYS), now=NOW, dry_run=True)

    assert report == PruneReport(2, 1, 1, 1, dry_run=True)
    assert count(engine, RequestLog) == 3
    assert count(engine, BenchmarkCase) == 2
    assert "would delete 2 request rows and 1 case" in report.describe(DAYS)


def test_prune_in_batches(engine: Engine) -> None:
    add_request_rows(engine, *([40] * 10), 1)
    for _ in range(4):
        add_case(engine, 40)

    report = prune(engine, RetentionSettings(DAYS), now=NOW, batch_size=3)

    assert report.request_rows == 10
    assert report.cases == 4
    assert count(engine, RequestLog) == 1
    assert count(engine, BenchmarkCase) == 0


def test_prune_stops_between_batches(engine: Engine) -> None:
    add_request_rows(engine, *([40] * 10))
    asked: list[bool] = []

    def stop_after_first_batch() -> bool:
        asked.append(True)
        return len(asked) > 1

    report = prune(
        engine, RetentionSettings(DAYS), now=NOW, batch_size=3, should_stop=stop_after_first_batch
    )

    assert report.request_rows == 3
    assert count(engine, RequestLog) == 7


def test_prune_empty_database(engine: Engine) -> None:
    report = prune(engine, RetentionSettings(DAYS), now=NOW)

    assert report == PruneReport(0, 0, 0, 0)
    assert report.describe(1) == (
        "deleted 0 request rows and 0 cases (with 0 results and 0 judgments) older than 1 day"
    )


# The running gateway


@pytest.fixture
def gateway_with_retention(database_url: str) -> Iterator[RunningGateway]:
    with FakeUpstream() as upstream:
        config = {
            "model_list": [deployment("m", "gpt-fake", upstream.base_url)],
            "general_settings": {"master_key": MASTER_KEY, "retention_days": DAYS},
        }
        gateway = RunningGateway(config, database_url)
        gateway.state.retention_first_delay = 0.05
        gateway.state.retention_interval = 0.2
        with gateway:
            yield gateway


def wait_for(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_gateway_prunes_periodically(
    gateway_with_retention: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.retention")
    engine = gateway_with_retention.state.engine
    assert engine is not None
    now = datetime.now(UTC)
    add_request_rows(engine, 1, 45, now=now)
    old_case = add_case(engine, 45, now=now)

    assert wait_for(lambda: count(engine, RequestLog) == 1)
    assert wait_for(lambda: old_case not in case_ids(engine))
    add_request_rows(engine, 60, now=now)
    assert wait_for(lambda: count(engine, RequestLog) == 1)
    assert "retention: deleted 1 request row" in caplog.text


def test_gateway_without_retention_keeps_rows(fake_upstream: FakeUpstream, sqlite_url: str) -> None:
    config = {"model_list": [deployment("m", "gpt-fake", fake_upstream.base_url)]}
    gateway = RunningGateway(config, sqlite_url)
    gateway.state.retention_first_delay = 0.01
    with gateway:
        engine = gateway.state.engine
        assert engine is not None
        add_request_rows(engine, 400, now=datetime.now(UTC))
        time.sleep(0.3)

        assert count(engine, RequestLog) == 1
        assert not any(task.get_name() == "retention" for task in gateway.state.background)


# pareto prune


def write_config(tmp_path: Path, database_url: str, **general: Any) -> str:
    config = {
        "model_list": [deployment("m", "gpt-fake", "http://127.0.0.1:9/v1")],
        "general_settings": {"database_url": database_url, **general},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


@pytest.fixture
def no_database_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.mark.usefixtures("no_database_env")
def test_cli_prune(
    tmp_path: Path, engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    add_request_rows(engine, 2, 40, 41, now=now)
    add_case(engine, 40, now=now)
    add_case(engine, 40, source="imported", now=now)
    config = write_config(tmp_path, database_url, retention_days=DAYS)

    dry_code = main(["prune", "--config", config, "--dry-run"])
    dry_out = capsys.readouterr().out
    dry_rows = count(engine, RequestLog)
    code = main(["prune", "--config", config])
    out = capsys.readouterr().out

    assert dry_code == 0
    assert dry_out.startswith("Would delete 2 request rows and 1 case ")
    assert dry_rows == 3
    assert code == 0
    assert out.startswith("Deleted 2 request rows and 1 case (with 1 result and 1 judgment)")
    assert "Imported cases are kept" in out
    assert count(engine, RequestLog) == 1
    assert count(engine, BenchmarkCase) == 1


@pytest.mark.usefixtures("no_database_env")
def test_cli_prune_days_option(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    add_request_rows(engine, 5, 15, now=datetime.now(UTC))
    config = write_config(tmp_path, sqlite_url)

    code = main(["prune", "--config", config, "--days", "10"])

    assert code == 0
    assert "Deleted 1 request row " in capsys.readouterr().out
    assert count(engine, RequestLog) == 1
    engine.dispose()


@pytest.mark.usefixtures("no_database_env")
def test_cli_prune_needs_days(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sqlite_url)

    code = main(["prune", "--config", config])

    assert code == 2
    err = capsys.readouterr().err
    assert "general_settings.retention_days is not set" in err
    assert "--days N" in err


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_cli_prune_rejects_days(days: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--config", "unused.yaml", "--days", days])

    assert exit_info.value.code == 2
    assert "invalid number of days" in capsys.readouterr().err


@pytest.mark.usefixtures("no_database_env")
def test_cli_prune_database_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path, "postgresql://postgres:pw-9f1c@127.0.0.1:1/none", retention_days=DAYS
    )

    code = main(["prune", "--config", config])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: the database postgresql+psycopg://postgres:***@127.0.0.1:1/none")
    assert "pw-9f1c" not in err


@pytest.mark.parametrize("value", [0, -1, 1.5, "a week"])
def test_retention_days_validated(value: Any) -> None:
    raw = {
        "model_list": [deployment("m", "gpt-fake", "http://127.0.0.1:9/v1")],
        "general_settings": {"retention_days": value},
    }

    with pytest.raises(ConfigError) as error:
        parse_config(raw, {})

    assert "general_settings.retention_days: invalid value" in str(error.value)
