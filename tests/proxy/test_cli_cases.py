"""`pareto cases import|export|list`: rows reported by line, round trips and exit codes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import Engine

from evaluator.cases import CaseRow, case_row, import_cases, load_cases
from evaluator.sampler import CaseSampler
from proxy.cli import main
from proxy.config import load_config
from proxy.db import make_engine
from proxy.sampling import sampling_policies

PARETO = Path(sys.executable).parent / "pareto"


def config_dict(database_url: str) -> dict[str, Any]:
    upstream = "http://127.0.0.1:9/v1"
    return {
        "model_list": [
            {"model_name": "big", "litellm_params": {"model": "openai/big", "api_base": upstream}},
            {
                "model_name": "small",
                "litellm_params": {"model": "openai/small", "api_base": upstream},
            },
        ],
        "general_settings": {"database_url": database_url},
        "evaluation": {"redaction": {"phones": False}},
        "policies": {
            "support": {
                "reference": "big",
                "candidates": ["big", "small"],
                "judge": "checks",
                "max_cases": 4,
            },
            "sales": {
                "reference": "big",
                "candidates": ["big", "small"],
                "judge": "recorded",
                "redaction": {"emails": False},
            },
        },
    }


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = tmp_path / "pareto.yaml"
    path.write_text(yaml.safe_dump(config_dict(f"sqlite:///{tmp_path / 'cases.db'}")))
    return path


@pytest.fixture
def engine(config_path: Path) -> Iterator[Engine]:
    made = make_engine(load_config(config_path).database_url)
    yield made
    made.dispose()


def run(*args: str | Path) -> int:
    return main([str(arg) for arg in args])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MIXED_JSONL = "\n".join(
    [
        '{"input": "Where is my order?", "tags": ["orders"]}',
        '{"messages": "hi"}',
        "",
        '{"input": "x", "checks": [{"type": "contains"}]}',
        "{not json",
        '{"expected": "only"}',
        '{"input": "y", "scores": {"big": 12}}',
        '{"input": "Where is  my order?"}',
        '{"messages": [{"role": "user", "content": "Refund?"}], "expected": "Yes"}',
    ]
)

MIXED_CSV = (
    "input,messages,expected,checks,tags,scores\n"
    "Where is my order?,,,,orders,\n"
    ',"{""role"": ""user""}",,,,\n'
    "\n"
    'x,,,"[{""type"": ""contains""}]",,\n'
    ",,only,,,\n"
    'y,,,,,"{""big"": 12}"\n'
    ",not json,,,,\n"
    'Refund?,,Yes,"[{""type"": ""contains"", ""value"": ""Yes""}]","a, b","{""big"": 9}"\n'
)


# ---------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------


def test_import_jsonl_reports_bad_rows(
    tmp_path: Path, config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    cases_file = write(tmp_path / "cases.jsonl", MIXED_JSONL)

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    output = capsys.readouterr()
    assert code == 0
    assert output.out == "support: imported 2, duplicates 1, invalid 5\n"
    assert output.err.splitlines() == [
        f"{cases_file}: line 2: messages: expected an array of messages, got a string",
        f"{cases_file}: line 4: checks[0].value: missing",
        f"{cases_file}: line 5: invalid JSON: Expecting property name enclosed in double quotes "
        "at column 2",
        f"{cases_file}: line 6: missing messages or input: give messages (an array of chat "
        "messages) or input (one user message)",
        f"{cases_file}: line 7: scores.big: expected a number from 1 to 10, got 12",
    ]
    cases = load_cases(engine, "support")
    assert [case.messages[0]["content"] for case in cases] == ["Where is my order?", "Refund?"]
    assert [case.source for case in cases] == ["imported", "imported"]


def test_import_csv_reports_bad_rows(
    tmp_path: Path, config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    cases_file = write(tmp_path / "cases.csv", MIXED_CSV)

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    output = capsys.readouterr()
    assert code == 0
    assert output.out == "support: imported 2, duplicates 0, invalid 5\n"
    errors = output.err.splitlines()
    assert (
        errors[0] == f"{cases_file}: line 3: messages: expected an array of messages, got an object"
    )
    assert errors[1] == f"{cases_file}: line 5: checks[0].value: missing"
    assert errors[2].startswith(f"{cases_file}: line 6: missing messages or input")
    assert errors[3] == f"{cases_file}: line 7: scores.big: expected a number from 1 to 10, got 12"
    assert errors[4].startswith(f"{cases_file}: line 8: messages: invalid JSON")
    assert len(errors) == 5
    refund = load_cases(engine, "support")[1]
    assert refund.expected == "Yes"
    assert refund.checks == [{"type": "contains", "value": "Yes"}]
    assert refund.tags == ["a", "b"]
    assert refund.scores == {"big": 9.0}


def test_import_twice_counts_duplicates(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases_file = write(tmp_path / "cases.csv", MIXED_CSV)
    run("cases", "import", cases_file, "--policy", "support", "--config", config_path)
    capsys.readouterr()

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    assert code == 0
    assert capsys.readouterr().out == "support: imported 0, duplicates 2, invalid 5\n"


def test_import_every_row_invalid_exits_1(
    tmp_path: Path, config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    cases_file = write(tmp_path / "cases.jsonl", '{"messages": "hi"}\n{bad\n')

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    assert code == 1
    assert capsys.readouterr().out == "support: imported 0, duplicates 0, invalid 2\n"
    assert load_cases(engine) == []


def test_import_empty_file_exits_0(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases_file = write(tmp_path / "cases.jsonl", "\n\n")

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    assert code == 0
    assert capsys.readouterr().out == "support: imported 0, duplicates 0, invalid 0\n"


def test_import_format_overrides_extension(
    tmp_path: Path, config_path: Path, engine: Engine
) -> None:
    cases_file = write(tmp_path / "cases.txt", "input\nHello\n")

    code = run(
        "cases", "import", cases_file, "--format", "csv", "--policy", "support",
        "--config", config_path,
    )  # fmt: skip

    assert code == 0
    assert [case.messages for case in load_cases(engine)] == [
        [{"role": "user", "content": "Hello"}]
    ]


def test_import_tolerates_byte_order_mark(
    tmp_path: Path, config_path: Path, engine: Engine
) -> None:
    cases_file = tmp_path / "cases.csv"
    cases_file.write_bytes("\ufeffinput,expected\nCafé?,Oui\n".encode())

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    assert code == 0
    assert load_cases(engine)[0].expected == "Oui"


def test_import_lists_only_first_problems(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases_file = write(tmp_path / "cases.jsonl", '{"input": "ok"}\n' + "{bad\n" * 60)

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    errors = capsys.readouterr().err.splitlines()
    assert code == 0
    assert len(errors) == 51
    assert errors[-1] == f"{cases_file}: 10 more invalid rows not listed"


def test_import_over_max_cases_notes_it(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = "".join(f'{{"input": "question {index}"}}\n' for index in range(6))
    cases_file = write(tmp_path / "cases.jsonl", rows)

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    assert code == 0
    assert "support now has 6 cases, more than max_cases (4)" in capsys.readouterr().err


USAGE_ERRORS = [
    (
        ["--policy", "nope"],
        "error: unknown policy 'nope'; the configured policies are: sales, support",
    ),
    (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
]


@pytest.mark.parametrize(("extra", "message"), USAGE_ERRORS)
def test_import_usage_errors_exit_2(
    tmp_path: Path,
    config_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    cases_file = write(tmp_path / "cases.jsonl", '{"input": "ok"}\n')
    arguments = ["cases", "import", str(cases_file), "--config", str(config_path)]
    if "--policy" not in extra:
        arguments += ["--policy", "support"]

    try:
        code = main(arguments + extra)
    except SystemExit as exc:  # argparse exits by itself for invalid choices
        code = int(exc.code or 0)

    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "missing.jsonl: file not found"),
        ("cases.txt", b'{"input": "ok"}\n', "cannot tell the format from the extension '.txt'"),
        ("cases.jsonl", b'{"input": "caf\xe9"}\n', "line 1 is not valid UTF-8 text"),
        ("cases.csv", b"question\nHi\n", "the CSV header needs a messages or input column"),
    ],
)
def test_import_unreadable_file_exits_2(
    tmp_path: Path,
    config_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    cases_file = tmp_path / name
    if content is not None:
        cases_file.write_bytes(content)

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_path)

    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("error: ")
    assert message in error


def test_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write(tmp_path / "bad.yaml", "model_list: []\n")
    cases_file = write(tmp_path / "cases.jsonl", '{"input": "ok"}\n')

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_file)

    assert code == 2
    assert f"error: invalid configuration {config_file}:" in capsys.readouterr().err


def test_cases_without_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = run("cases")

    assert code == 2
    assert "import" in capsys.readouterr().out


def test_database_failure_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config_file = tmp_path / "pareto.yaml"
    unreachable = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    config_file.write_text(yaml.safe_dump(config_dict(unreachable)))
    cases_file = write(tmp_path / "cases.jsonl", '{"input": "ok"}\n')

    code = run("cases", "import", cases_file, "--policy", "support", "--config", config_file)

    assert code == 1
    assert "unable to open database file" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------

RICH_JSONL = (
    json.dumps(
        {
            "messages": [
                {"role": "system", "content": "Réponds en français."},
                {"role": "user", "content": [{"type": "text", "text": 'Say "hi",\nthen stop'}]},
            ],
            "expected": "Salut,\n« hi »",
            "expected_model": "big",
            "criteria": "Greets in French.",
            "checks": [{"type": "contains", "value": ["Salut"]}],
            "tags": ["greeting", "a,b"],
            "scores": {"big": 9, "small": 3.5},
        },
        ensure_ascii=False,
    )
    + "\n"
    + '{"input": "What is 2+2?", "expected": "4"}\n'
    + '{"input": "Line\\u2028separator \U0001f600"}\n'
)


@pytest.mark.parametrize("case_format", ["jsonl", "csv"])
def test_export_import_round_trip(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    case_format: str,
) -> None:
    config_file = tmp_path / "pareto.yaml"
    config_file.write_text(yaml.safe_dump(config_dict("sqlite:///unused.db")))
    monkeypatch.setenv("DATABASE_URL", database_url)
    source = write(tmp_path / "source.jsonl", RICH_JSONL)
    exported = tmp_path / f"support.{case_format}"
    again = tmp_path / f"sales.{case_format}"

    assert run("cases", "import", source, "--policy", "support", "--config", config_file) == 0
    assert (
        run("cases", "export", "--policy", "support", "--config", config_file, "--out", exported)
        == 0
    )
    assert run("cases", "import", exported, "--policy", "sales", "--config", config_file) == 0
    assert run("cases", "export", "--policy", "sales", "--config", config_file, "--out", again) == 0

    assert again.read_text(encoding="utf-8") == exported.read_text(encoding="utf-8")
    assert "sales: imported 3, duplicates 0, invalid 0" in capsys.readouterr().out
    engine = make_engine(database_url)
    try:
        support = [case_row(case) for case in load_cases(engine, "support")]
        sales = [case_row(case) for case in load_cases(engine, "sales")]
        assert sales == support
        assert len(support) == 3
        hashes = {case.content_hash for case in load_cases(engine)}
        assert len(hashes) == 3
    finally:
        engine.dispose()


def test_export_to_stdout(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [CaseRow(messages=[{"role": "user", "content": "Prix ?"}], expected="5,99 €")]
    import_cases(engine, "support", rows)

    jsonl_code = run("cases", "export", "--policy", "support", "--config", config_path)
    jsonl = capsys.readouterr().out
    csv_code = run(
        "cases", "export", "--policy", "support", "--config", config_path, "--format", "csv"
    )
    csv_text = capsys.readouterr().out

    assert jsonl_code == 0
    assert json.loads(jsonl) == {
        "messages": [{"role": "user", "content": "Prix ?"}],
        "expected": "5,99 €",
    }
    assert csv_code == 0
    assert csv_text.splitlines() == [
        "messages,expected,expected_model,criteria,checks,tags,scores",
        '"[{""role"": ""user"", ""content"": ""Prix ?""}]","5,99 €",,,,,',
    ]


def test_export_includes_sampled_cases(
    config_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    async def sample() -> None:
        sampler = CaseSampler(engine, sampling_policies(load_config(config_path).config))
        sampler.offer("support", [{"role": "user", "content": "Hi"}], "Hello", "big", "r1")
        await sampler.flush()

    asyncio.run(sample())

    code = run("cases", "export", "--policy", "support", "--config", config_path)

    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "messages": [{"role": "user", "content": "Hi"}],
        "expected": "Hello",
        "expected_model": "big",
    }


def test_export_unknown_policy_exits_2(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run("cases", "export", "--policy", "nope", "--config", config_path)

    assert code == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err


def test_export_unwritable_out_exits_2(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "cases.jsonl"

    code = run("cases", "export", "--policy", "support", "--config", config_path, "--out", out)

    assert code == 2
    assert f"error: cannot write {out}" in capsys.readouterr().err


def test_export_empty_policy(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cases.csv"

    code = run("cases", "export", "--policy", "sales", "--config", config_path, "--out", out)

    assert code == 0
    assert out.read_text() == "messages,expected,expected_model,criteria,checks,tags,scores\n"
    assert "sales: exported 0 cases to" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------


@pytest.fixture
def listed(engine: Engine) -> Engine:
    import_cases(
        engine,
        "support",
        [
            CaseRow(
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "My   card was charged twice " + "x" * 80},
                ],
                expected="Sorry",
                checks=[{"type": "contains", "value": "Sorry"}],
                tags=["billing", "vip"],
            ),
            CaseRow(messages=[{"role": "user", "content": "Hi"}], criteria="Polite"),
        ],
    )
    import_cases(engine, "sales", [CaseRow(messages=[{"role": "user", "content": "Price?"}])])
    return engine


def test_list_table(config_path: Path, listed: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code = run("cases", "list", "--config", config_path)

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "id", "policy", "source", "tags", "expected", "checks", "criteria", "first", "message",
    ]  # fmt: skip
    assert lines[1].split()[:7] == ["1", "support", "imported", "billing,vip", "yes", "yes", "-"]
    assert lines[1].endswith("My card was charged twice xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...")
    assert lines[2].split() == ["2", "support", "imported", "-", "-", "-", "yes", "Hi"]
    assert lines[3].split() == ["3", "sales", "imported", "-", "-", "-", "-", "Price?"]
    assert lines[4] == ""
    assert lines[5] == "sales: 1 cases (0 sampled, 1 imported), max_cases 500"
    assert lines[6] == "support: 2 cases (0 sampled, 2 imported), max_cases 4"


def test_list_json_for_one_policy(
    config_path: Path, listed: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run("cases", "list", "--config", config_path, "--policy", "support", "--json")

    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["counts"] == {"support": {"sampled": 0, "imported": 2, "total": 2}}
    assert document["cases"][1] == {
        "id": 2,
        "policy": "support",
        "source": "imported",
        "tags": [],
        "first_user_message": "Hi",
        "has_expected": False,
        "has_checks": False,
        "has_criteria": True,
    }
    assert len(document["cases"]) == 2


def test_list_empty_database(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run("cases", "list", "--config", config_path, "--json")

    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "cases": [],
        "counts": {
            "sales": {"sampled": 0, "imported": 0, "total": 0},
            "support": {"sampled": 0, "imported": 0, "total": 0},
        },
    }


def test_list_unknown_policy_exits_2(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run("cases", "list", "--config", config_path, "--policy", "nope")

    assert code == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Sampler settings and the console script
# ---------------------------------------------------------------------------


def test_sampling_policies_from_config(config_path: Path) -> None:
    policies = sampling_policies(load_config(config_path).config)

    support = policies["support"]
    assert support.reference == "big"
    assert support.max_cases == 4
    assert support.redactor.emails
    assert not support.redactor.phones  # evaluation.redaction
    sales = policies["sales"]
    assert sales.max_cases == 500
    assert not sales.redactor.emails  # the policy's own section replaces evaluation's
    assert sales.redactor.phones


def test_console_script_import(tmp_path: Path, config_path: Path) -> None:
    cases_file = write(tmp_path / "cases.jsonl", MIXED_JSONL)
    command = [
        str(PARETO), "cases", "import", str(cases_file), "--policy", "support",
        "--config", str(config_path),
    ]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )

    assert result.returncode == 0
    assert result.stdout == "support: imported 2, duplicates 1, invalid 5\n"
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 5
