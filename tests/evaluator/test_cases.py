"""Case normalisation, content hash, row parsing, case files, and import and export storage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from evaluator.cases import (
    CaseFileError,
    CaseRow,
    CaseRowError,
    case_row,
    content_hash,
    detect_format,
    first_user_text,
    format_cases,
    import_cases,
    load_cases,
    normalize_messages,
    parse_case_text,
    parse_row,
    read_case_file,
)
from evaluator.tables import SamplingState
from proxy.db import make_engine


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    yield made
    made.dispose()


# ---------------------------------------------------------------------------
# Normalisation and content hash
# ---------------------------------------------------------------------------


def test_normalize_collapses_whitespace() -> None:
    messages = [{"role": "system", "content": "  Be\tbrief.\n\n"}, user("Hi   there\r\n")]

    assert normalize_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]


def test_normalize_drops_other_fields() -> None:
    message = {"role": "user", "content": "Hi", "name": "ann", "extra": {"x": 1}}

    assert normalize_messages([message]) == [{"role": "user", "content": "Hi"}]


def test_normalize_text_parts_become_string() -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "  world"}]

    assert normalize_messages([user(parts)]) == [user("Hello world")]


def test_normalize_keeps_image_urls_in_order() -> None:
    parts = [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        {"type": "text", "text": "  and tell me\n"},
        {"type": "text", "text": "what it is"},
    ]

    assert normalize_messages([user(parts)]) == [
        user(
            [
                {"text": "Look:"},
                {"image_url": "https://example.com/a.png"},
                {"text": "and tell me what it is"},
            ]
        )
    ]


def test_normalize_null_content_is_empty() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}

    assert normalize_messages([message]) == [{"role": "assistant", "content": ""}]


def test_hash_ignores_whitespace_and_key_order() -> None:
    first = [{"role": "user", "content": "What is  2+2?"}]
    second = [{"content": " What is 2+2?\n", "role": "user", "name": "x"}]

    assert content_hash(first) == content_hash(second)


def test_hash_string_equals_text_part() -> None:
    assert content_hash([user("Hi")]) == content_hash([user([{"type": "text", "text": "Hi"}])])


def test_hash_is_sha256_hex() -> None:
    digest = content_hash([user("Hi")])

    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "other",
    [
        [user("What is 2+3?")],
        [{"role": "system", "content": "What is 2+2?"}],
        [user("what is 2+2?")],
        [user("What is 2+2?"), {"role": "assistant", "content": "4"}],
        [
            user(
                [
                    {"type": "image_url", "image_url": {"url": "data:x"}},
                    {"type": "text", "text": "What is 2+2?"},
                ]
            )
        ],
    ],
)
def test_hash_differs_for_other_content(other: list[dict[str, Any]]) -> None:
    assert content_hash([user("What is 2+2?")]) != content_hash(other)


def test_first_user_text() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        user([{"type": "text", "text": "Price  of"}, {"type": "image_url", "image_url": "u"}]),
        user("second"),
    ]

    assert first_user_text(messages) == "Price of [image]"
    assert first_user_text([{"role": "system", "content": "x"}]) == ""


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------


def test_row_with_every_field() -> None:
    raw = {
        "messages": [{"role": "system", "content": "Be brief."}, user("Price?")],
        "expected": "$5.99",
        "expected_model": "big",
        "criteria": "States the price.",
        "checks": [{"type": "contains", "value": "$5.99"}],
        "tags": ["billing", " vip ", "billing"],
        "scores": {"big": 9, "small": 4.5},
    }

    row = parse_row(raw)

    assert row.messages == raw["messages"]
    assert row.expected == "$5.99"
    assert row.expected_model == "big"
    assert row.criteria == "States the price."
    assert row.checks == [{"type": "contains", "value": "$5.99"}]
    assert row.tags == ["billing", "vip"]
    assert row.scores == {"big": 9.0, "small": 4.5}


def test_row_input_becomes_user_message() -> None:
    row = parse_row({"input": "Hello"})

    assert row == CaseRow(messages=[user("Hello")])


def test_row_nulls_and_blanks_are_absent() -> None:
    row = parse_row({"input": "Hi", "expected": "  ", "criteria": None, "checks": None})

    assert row.expected is None
    assert row.criteria is None
    assert row.checks is None


def test_row_empty_lists_are_absent() -> None:
    row = parse_row({"input": "Hi", "checks": [], "tags": [], "scores": {}})

    assert row.checks is None
    assert row.tags is None
    assert row.scores is None


def test_row_tool_call_turn_without_content() -> None:
    messages = [
        user("Weather?"),
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]

    assert parse_row({"messages": messages}).messages == messages


INVALID_ROWS = [
    ({}, "missing messages or input"),
    ({"expected": "x"}, "missing messages or input"),
    ({"messages": "hi"}, "messages: expected an array of messages, got a string"),
    ({"messages": {"role": "user"}}, "messages: expected an array of messages, got an object"),
    ({"messages": []}, "messages: expected at least one message, got an empty array"),
    ({"messages": ["hi"]}, "messages[0]: expected a message object with role and content"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role: missing"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, 'messages[0].role: unknown role "bot"'),
    ({"messages": [{"role": "user"}]}, "messages[0].content: missing"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content: expected a string"),
    ({"messages": [user([{"text": "x"}])]}, "messages[0].content[0].type: expected a string"),
    ({"messages": [user([{"type": "text"}])]}, "messages[0].content[0].text: expected a string"),
    (
        {"messages": [user([{"type": "image_url", "image_url": {}}])]},
        "messages[0].content[0].image_url: expected an object with a url string",
    ),
    ({"messages": [user("a")], "input": "b"}, "messages and input are both set"),
    ({"input": 5}, "input: expected a string (one user message), got a number"),
    ({"input": "x", "expected": 5}, "expected: expected a string, got a number"),
    ({"input": "x", "criteria": ["a"]}, "criteria: expected a string, got an array"),
    ({"input": "x", "checks": {"type": "contains"}}, "checks: expected a list of check objects"),
    ({"input": "x", "checks": [{"type": "contains"}]}, "checks[0].value: missing"),
    ({"input": "x", "checks": [{"type": "nope", "value": 1}]}, "checks[0].type: unknown check"),
    ({"input": "x", "tags": "a,b"}, "tags: expected an array of strings, got a string"),
    ({"input": "x", "tags": ["a", 1]}, "tags[1]: expected a string, got a number"),
    ({"input": "x", "scores": [9]}, "scores: expected an object of model: score, got an array"),
    ({"input": "x", "scores": {"big": 11}}, "scores.big: expected a number from 1 to 10, got 11"),
    ({"input": "x", "scores": {"big": 0.5}}, "scores.big: expected a number from 1 to 10, got 0.5"),
    ({"input": "x", "scores": {"big": "9"}}, 'scores.big: expected a number from 1 to 10, got "9"'),
    (
        {"input": "x", "scores": {"big": True}},
        "scores.big: expected a number from 1 to 10, got true",
    ),
    ({"input": "x", "scores": {"": 5}}, "scores: a model name is empty"),
    ({"input": "x\x00y"}, "messages[0].content: contains a NUL character"),
    ({"input": "x", "expected": "\ud800"}, "expected: contains an unpaired UTF-16 surrogate"),
]


@pytest.mark.parametrize(("raw", "message"), INVALID_ROWS)
def test_row_invalid(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(CaseRowError) as caught:
        parse_row(raw)

    assert str(caught.value).startswith(message)


def test_row_cells_decode_json() -> None:
    cells = {
        "messages": json.dumps([user("Hi")]),
        "checks": '[{"type": "equals", "value": "Hello"}]',
        "scores": '{"big": 8}',
        "tags": '["a,b", "c"]',
        "expected": " Hello ",
        "criteria": "",
    }

    row = parse_row(cells, cells=True)

    assert row.messages == [user("Hi")]
    assert row.checks == [{"type": "equals", "value": "Hello"}]
    assert row.scores == {"big": 8.0}
    assert row.tags == ["a,b", "c"]
    assert row.expected == " Hello "
    assert row.criteria is None


def test_row_cells_comma_tags() -> None:
    row = parse_row({"input": "Hi", "tags": "billing, vip,,billing "}, cells=True)

    assert row.tags == ["billing", "vip"]


def test_row_cells_invalid_json_names_field() -> None:
    with pytest.raises(CaseRowError) as caught:
        parse_row({"messages": "What is 2+2?"}, cells=True)

    message = str(caught.value)
    assert message.startswith("messages: invalid JSON: Expecting value at column 1")
    assert "input column" in message


def test_row_cells_nan_is_invalid() -> None:
    with pytest.raises(CaseRowError) as caught:
        parse_row({"input": "x", "scores": '{"big": NaN}'}, cells=True)

    assert str(caught.value) == "scores: invalid JSON: NaN is not valid JSON"


# ---------------------------------------------------------------------------
# Case files
# ---------------------------------------------------------------------------

MIXED_JSONL = "\n".join(
    [
        '{"input": "What is 2+2?", "expected": "4"}',  # 1 valid
        '{"messages": "hi"}',  # 2
        "",  # 3 empty: skipped silently
        '{"input": "x", "checks": [{"type": "contains"}]}',  # 4
        "{not json",  # 5
        '{"expected": "only"}',  # 6
        '{"input": "x", "scores": {"big": 12}}',  # 7
        "   ",  # 8 blank
        '["an", "array"]',  # 9
        '{"messages": [{"role": "user", "content": "Hi\u2028there"}], "tags": ["a"]}',  # 10 valid
        '{"input": "y", "colour": "red", "notes": 1}',  # 11 valid, unknown keys
        '{"input": "z", "notes": 2}',  # 12 valid
        "",
    ]
)


def test_jsonl_mixed_rows() -> None:
    parsed = parse_case_text(MIXED_JSONL, "jsonl")

    assert [line for line, _row in parsed.rows] == [1, 10, 11, 12]
    assert [str(problem) for problem in parsed.problems] == [
        "line 2: messages: expected an array of messages, got a string",
        "line 4: checks[0].value: missing",
        "line 5: invalid JSON: Expecting property name enclosed in double quotes at column 2",
        "line 6: missing messages or input: give messages (an array of chat messages) "
        "or input (one user message)",
        "line 7: scores.big: expected a number from 1 to 10, got 12",
        "line 9: expected a JSON object with messages or input, got an array",
    ]
    assert parsed.warnings == [
        "unknown field 'colour' ignored (first seen on line 11)",
        "unknown field 'notes' ignored (first seen on line 11)",
    ]


def test_jsonl_keeps_line_separator_inside_strings() -> None:
    parsed = parse_case_text(MIXED_JSONL, "jsonl")

    assert parsed.rows[1][1].messages == [user("Hi\u2028there")]


def test_jsonl_crlf_lines() -> None:
    parsed = parse_case_text('{"input": "a"}\r\n\r\n{"input": "b"}\r\n', "jsonl")

    assert [line for line, _row in parsed.rows] == [1, 3]
    assert parsed.problems == []


def test_jsonl_deep_nesting_is_invalid() -> None:
    parsed = parse_case_text("[" * 100_000, "jsonl")

    assert [str(problem) for problem in parsed.problems] == [
        "line 1: invalid JSON: nested too deeply"
    ]


MIXED_CSV = (
    "input,messages,expected,checks,tags,scores,criteria\n"  # 1
    "What is 2+2?,,4,,math,,\n"  # 2 valid
    ',"[{""role"": ""user"", ""content"": ""Hi""}]",,,"[""a"", ""b""]",,Greets\n'  # 3 valid
    "\n"  # 4 empty: skipped silently
    ',"{""role"": ""user""}",,,,,\n'  # 5 messages of the wrong type
    ",,orphan,,,,\n"  # 6 neither messages nor input
    'x,,,"[{""type"": ""regex"", ""value"": ""(""}]",,,\n'  # 7 invalid check
    'y,,,,,"{""big"": 0}",\n'  # 8 score out of range
    ",not json,,,,,\n"  # 9 invalid JSON
    ",,,,,,\n"  # 10 all cells empty: skipped
    '"multi\nline question",,"multi\nline answer",,,,\n'  # 11-13 valid
    "z,,,,,,,extra\n"  # 14 too many cells
    "short\n"  # 15 valid: missing cells are empty
)


def test_csv_mixed_rows() -> None:
    parsed = parse_case_text(MIXED_CSV, "csv")

    assert [line for line, _row in parsed.rows] == [2, 3, 11, 15]
    problems = [str(problem) for problem in parsed.problems]
    assert problems[0] == "line 5: messages: expected an array of messages, got an object"
    assert problems[1].startswith("line 6: missing messages or input")
    assert problems[2].startswith("line 7: checks[0].value: invalid regular expression")
    assert problems[3] == "line 8: scores.big: expected a number from 1 to 10, got 0"
    assert problems[4].startswith("line 9: messages: invalid JSON: Expecting value at column 1")
    assert problems[5] == "line 14: the row has 8 cells but the header has 7"
    assert len(problems) == 6


def test_csv_row_values() -> None:
    rows = [row for _line, row in parse_case_text(MIXED_CSV, "csv").rows]

    assert rows[0] == CaseRow(messages=[user("What is 2+2?")], expected="4", tags=["math"])
    assert rows[1] == CaseRow(messages=[user("Hi")], tags=["a", "b"], criteria="Greets")
    assert rows[2].messages == [user("multi\nline question")]
    assert rows[2].expected == "multi\nline answer"
    assert rows[3] == CaseRow(messages=[user("short")])


def test_csv_header_names_are_trimmed_and_lowercased() -> None:
    parsed = parse_case_text(" Input , Expected ,Notes\nHi,Hello,x\n", "csv")

    assert [row for _line, row in parsed.rows] == [CaseRow([user("Hi")], expected="Hello")]
    assert parsed.warnings == ["unknown column 'notes' ignored"]


def test_csv_header_without_messages_or_input() -> None:
    with pytest.raises(CaseFileError) as caught:
        parse_case_text("question,answer\nHi,Hello\n", "csv")

    assert str(caught.value) == (
        "line 1: the CSV header needs a messages or input column; found 'question', 'answer'"
    )


def test_csv_duplicate_column() -> None:
    with pytest.raises(CaseFileError) as caught:
        parse_case_text("input,input\na,b\n", "csv")

    assert "names the column 'input' twice" in str(caught.value)


def test_csv_long_field() -> None:
    long_text = "word " * 100_000

    parsed = parse_case_text(f'input\n"{long_text}"\n', "csv")

    assert parsed.rows[0][1].messages == [user(long_text)]


@pytest.mark.parametrize("case_format", ["jsonl", "csv"])
def test_empty_file_has_no_rows(case_format: Any) -> None:
    parsed = parse_case_text("\n\n", case_format)

    assert parsed.rows == []
    assert parsed.problems == []


@pytest.mark.parametrize("name", ["cases.jsonl", "cases.csv"])
def test_read_tolerates_byte_order_mark(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    text = '{"input": "Hi"}\n' if name.endswith("jsonl") else "input\nHi\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())

    parsed = read_case_file(path, detect_format(path))

    assert [row for _line, row in parsed.rows] == [CaseRow([user("Hi")])]


def test_read_rejects_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes(b'{"input": "ok"}\n{"input": "caf\xe9"}\n')

    with pytest.raises(CaseFileError) as caught:
        read_case_file(path, "jsonl")

    assert str(caught.value) == f"{path}: line 2 is not valid UTF-8 text; save the file as UTF-8"


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.jsonl"

    with pytest.raises(CaseFileError) as caught:
        read_case_file(path, "jsonl")

    assert str(caught.value) == f"{path}: file not found"


def test_read_directory(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError) as caught:
        read_case_file(tmp_path, "jsonl")

    assert str(caught.value).startswith(f"{tmp_path}: cannot be read")


@pytest.mark.parametrize(
    ("name", "requested", "expected"),
    [
        ("a.jsonl", None, "jsonl"),
        ("a.NDJSON", None, "jsonl"),
        ("a.csv", None, "csv"),
        ("a.txt", "csv", "csv"),
        ("a.csv", "jsonl", "jsonl"),
    ],
)
def test_detect_format(name: str, requested: str | None, expected: str) -> None:
    assert detect_format(Path(name), requested) == expected


def test_detect_format_unknown_extension() -> None:
    with pytest.raises(CaseFileError) as caught:
        detect_format(Path("cases.txt"))

    assert "pass --format jsonl or --format csv" in str(caught.value)


# ---------------------------------------------------------------------------
# Writing files
# ---------------------------------------------------------------------------

RICH_ROWS = [
    CaseRow(messages=[user("What is 2+2?")], expected="4", tags=["math"]),
    CaseRow(
        messages=[
            {"role": "system", "content": "Réponds en français, s'il te plaît."},
            user([{"type": "text", "text": 'Say "hi",\nthen stop'}]),
        ],
        expected="Salut,\n« hi »",
        expected_model="big",
        criteria="Greets, in French.\nNothing else.",
        checks=[{"type": "contains", "value": ["hi", "Salut"]}, {"type": "json_valid"}],
        tags=["greeting", "a,b"],
        scores={"big": 9.0, "small": 3.5},
    ),
    CaseRow(messages=[user("Line\u2028separator and emoji \U0001f600")]),
]


@pytest.mark.parametrize("case_format", ["jsonl", "csv"])
def test_format_then_parse_round_trip(case_format: Any) -> None:
    text = format_cases(RICH_ROWS, case_format)

    parsed = parse_case_text(text, case_format)

    assert parsed.problems == []
    assert parsed.warnings == []
    assert [row for _line, row in parsed.rows] == RICH_ROWS


def test_format_jsonl_leaves_out_absent_fields() -> None:
    first_line = format_cases(RICH_ROWS, "jsonl").splitlines()[0]

    assert json.loads(first_line) == {
        "messages": [user("What is 2+2?")],
        "expected": "4",
        "tags": ["math"],
    }


def test_format_csv_header() -> None:
    header = format_cases([], "csv")

    assert header == "messages,expected,expected_model,criteria,checks,tags,scores\n"


# ---------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------


def test_import_stores_rows(engine: Engine) -> None:
    result = import_cases(engine, "support", RICH_ROWS)

    cases = load_cases(engine, "support")
    assert result.imported == 3
    assert result.duplicates == 0
    assert [case_row(case) for case in cases] == RICH_ROWS
    assert {case.source for case in cases} == {"imported"}
    assert [case.content_hash for case in cases] == [content_hash(r.messages) for r in RICH_ROWS]
    assert all(case.created_at is not None for case in cases)


def test_import_skips_duplicates(engine: Engine) -> None:
    import_cases(engine, "support", RICH_ROWS[:1])
    again = [
        CaseRow(messages=[user("  What is   2+2? ")], expected="four"),  # stored already
        RICH_ROWS[2],
        CaseRow(messages=[user(RICH_ROWS[2].messages[0]["content"] + " ")]),  # same file
    ]

    result = import_cases(engine, "support", again)

    assert result.imported == 1
    assert result.duplicates == 2
    assert [case.expected for case in load_cases(engine, "support")] == ["4", None]


def test_import_same_case_into_two_policies(engine: Engine) -> None:
    import_cases(engine, "support", RICH_ROWS)

    result = import_cases(engine, "sales", RICH_ROWS)

    assert result.imported == 3
    assert len(load_cases(engine)) == 6


def test_import_creates_sampling_state(engine: Engine) -> None:
    import_cases(engine, "support", RICH_ROWS)

    with Session(engine) as session:
        state = session.exec(select(SamplingState)).one()
    assert state.policy == "support"
    assert state.seen == 0
