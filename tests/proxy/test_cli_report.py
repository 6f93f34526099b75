"""The `pareto report` command: the written file and its errors."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine

from proxy.cli import main
from proxy.db import make_engine
from proxy.decisions import record_decision
from tests.proxy.test_cli_policies import PARETO, cli_config
from tests.proxy.test_decisions import POLICY, add_requests, make_decision


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
    code = main(["report", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_written_from_config(
    config_path: Path, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decision_id = record_decision(engine, POLICY, make_decision())
    add_requests(engine, POLICY, "small", [0.002, 0.002])
    out = tmp_path / "report.html"

    code, stdout, stderr = run(
        capsys, "--config", str(config_path), "--policy", POLICY, "--out", str(out)
    )

    assert code == 0, stderr
    assert (
        stdout == f"{out}: report of policy {POLICY} written with 2 candidates and 1 decisions.\n"
    )
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('<g class="candidate') == 2
    assert f"Decision {decision_id} at " in page
    assert "From the configuration file." in page
    assert "Saved <strong>$0.0160 (80%)</strong> to date over 2 requests" in page
    assert "written by pareto report" in page
    assert list(tmp_path.glob(".report.html.*")) == []


def test_report_from_database_url(
    engine: Engine, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decision_id = record_decision(engine, POLICY, make_decision())
    out = tmp_path / "report.html"

    code, _, stderr = run(
        capsys, "--database-url", sqlite_url, "--policy", POLICY, "--out", str(out)
    )

    assert code == 0, stderr
    page = out.read_text(encoding="utf-8")
    assert f"From decision {decision_id}." in page
    assert page.count('<g class="candidate') == 2


def test_report_replaces_existing_file(
    config_path: Path, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    out.write_text("old", encoding="utf-8")

    code, _, stderr = run(
        capsys, "--config", str(config_path), "--policy", POLICY, "--out", str(out)
    )

    assert code == 0, stderr
    assert "No decision yet" in out.read_text(encoding="utf-8")


def test_report_unknown_policy_lists_known(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"

    code, stdout, stderr = run(
        capsys, "--config", str(config_path), "--policy", "nope", "--out", str(out)
    )

    assert code == 2
    assert stdout == ""
    assert stderr == f"error: unknown policy 'nope': the configured policies are {POLICY}.\n"
    assert not out.exists()


def test_report_unknown_policy_in_database(
    engine: Engine, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_decision(engine, "alpha", make_decision())
    add_requests(engine, POLICY, "small", [0.002])

    code, _, stderr = run(
        capsys, "--database-url", sqlite_url, "--policy", "nope", "--out", str(tmp_path / "r.html")
    )

    assert code == 2
    assert stderr == (
        "error: unknown policy 'nope': the policies with decisions or requests in the database "
        f"are alpha, {POLICY}.\n"
    )


def test_report_missing_directory(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "report.html"

    code, _, stderr = run(
        capsys, "--config", str(config_path), "--policy", POLICY, "--out", str(out)
    )

    assert code == 2
    assert stderr == (
        f"error: cannot write the report to {out}: the directory {out.parent} does not exist.\n"
    )


def test_report_out_is_directory(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = run(
        capsys, "--config", str(config_path), "--policy", POLICY, "--out", str(tmp_path)
    )

    assert code == 2
    assert stderr == f"error: cannot write the report to {tmp_path}: it is a directory.\n"


def test_report_missing_sqlite_file_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "typo.db"

    code, _, stderr = run(
        capsys,
        "--database-url",
        f"sqlite:///{database}",
        "--policy",
        POLICY,
        "--out",
        str(tmp_path / "report.html"),
    )

    assert code == 2
    assert stderr.startswith(f"error: the database file {database} does not exist")
    assert not database.exists()


def test_report_invalid_database_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(
        capsys, "--database-url", "not a url", "--policy", POLICY, "--out", str(tmp_path / "r.html")
    )

    assert code == 2
    assert stderr.startswith("error: invalid database URL 'not a url': expected one such as ")


def test_report_config_database_missing(
    config_path: Path, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = run(
        capsys, "--config", str(config_path), "--policy", POLICY, "--out", str(tmp_path / "r.html")
    )

    assert code == 2
    assert "does not exist: check the path, or run the gateway" in stderr
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_report_needs_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--policy", POLICY, "--out", str(tmp_path / "r.html")])

    assert exit_info.value.code == 2
    assert "one of the arguments --config --database-url is required" in capsys.readouterr().err


def test_report_console_script(config_path: Path, engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "report.html"

    done = subprocess.run(
        [
            str(PARETO),
            "report",
            "--config",
            str(config_path),
            "--policy",
            POLICY,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert out.is_file()
