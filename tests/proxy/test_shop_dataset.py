"""The bundled customer-support dataset that the simulated models of `pareto demo` reply from.

The dataset defines what a correct reply is in the demo, so these tests hold it to its own
promises: every expected reply passes its checks, every flawed reply fails at least one, and
all conversations share one system prompt.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from evaluator.checks import parse_checks, run_checks

DATASET_NAME = "shop_support.jsonl"
CHECKOUT_DATASET = (
    Path(__file__).resolve().parents[2] / "proxy" / "simulator" / "data" / DATASET_NAME
)

MIN_ROWS = 60
MIN_REFUSAL_ROWS = 6
MIN_MULTI_TURN_ROWS = 5
MAX_CHECKS = 3
MAX_FLAWED = 3

FIELD_TYPES: dict[str, type] = {
    "id": str,
    "messages": list,
    "expected": str,
    "criteria": str,
    "checks": list,
    "flawed": list,
    "tags": list,
}


def dataset_path() -> Path:
    """Find the dataset in the `proxy.simulator` package, or else in this checkout.

    The package's folders come from its import spec, so `proxy.simulator` is located without
    running its ``__init__``, and a namespace package without one works the same way.
    """
    spec = importlib.util.find_spec("proxy.simulator")
    if spec is not None and spec.submodule_search_locations is not None:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "data" / DATASET_NAME
            if candidate.is_file():
                return candidate
    return CHECKOUT_DATASET


def load_rows() -> list[dict[str, Any]]:
    """Parse every non-blank line of the dataset, naming the line of any invalid JSON."""
    path = dataset_path()
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: invalid JSON: {exc}") from exc
    return rows


ROWS = load_rows()
ROW_IDS = [str(row.get("id")) for row in ROWS]


def user_messages(row: dict[str, Any]) -> list[str]:
    return [message["content"] for message in row["messages"] if message["role"] == "user"]


def is_multi_turn(row: dict[str, Any]) -> bool:
    return any(message["role"] == "assistant" for message in row["messages"])


def test_dataset_has_enough_rows() -> None:
    assert len(ROWS) >= MIN_ROWS


def test_dataset_ids_unique() -> None:
    duplicates = sorted({row_id for row_id in ROW_IDS if ROW_IDS.count(row_id) > 1})
    assert duplicates == []


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_row_fields_have_right_types(row: dict[str, Any]) -> None:
    for field, expected_type in FIELD_TYPES.items():
        assert field in row, f"missing field {field!r}"
        assert isinstance(row[field], expected_type), f"{field!r} is not a {expected_type}"
    assert row["id"].strip()
    assert row["expected"].strip()
    assert row["criteria"].strip()
    assert all(isinstance(tag, str) and tag for tag in row["tags"])


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_row_messages_are_chat_messages(row: dict[str, Any]) -> None:
    for message in row["messages"]:
        assert isinstance(message, dict)
        assert set(message) == {"role", "content"}
        assert isinstance(message["content"], str)
        assert message["content"].strip()


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_conversation_alternates_and_ends_with_user(row: dict[str, Any]) -> None:
    roles = [message["role"] for message in row["messages"]]

    assert roles[0] == "system"
    assert "system" not in roles[1:]
    assert roles[-1] == "user"
    for index, role in enumerate(roles[1:]):
        assert role == ("user" if index % 2 == 0 else "assistant"), f"turn {index + 1} is {role}"


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_flawed_entries_have_reply_and_misses(row: dict[str, Any]) -> None:
    assert 1 <= len(row["flawed"]) <= MAX_FLAWED
    for item in row["flawed"]:
        assert isinstance(item, dict)
        assert set(item) == {"reply", "misses"}
        assert isinstance(item["reply"], str)
        assert item["reply"].strip()
        assert isinstance(item["misses"], str)
        assert item["misses"].strip()


def test_system_prompt_shared_by_all_rows() -> None:
    prompts = {row["messages"][0]["content"] for row in ROWS}
    assert len(prompts) == 1


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_checks_parse(row: dict[str, Any]) -> None:
    checks = parse_checks(row["checks"], f"{row['id']}.checks")
    assert 1 <= len(checks) <= MAX_CHECKS


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_expected_reply_passes_checks(row: dict[str, Any]) -> None:
    report = run_checks(parse_checks(row["checks"]), row["expected"])
    assert report.passed, [result.explanation for result in report.failures]


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_flawed_replies_fail_a_check(row: dict[str, Any]) -> None:
    checks = parse_checks(row["checks"])
    for item in row["flawed"]:
        report = run_checks(checks, item["reply"])
        assert not report.passed, f"flawed reply passes every check: {item['reply']!r}"


def test_enough_refusal_rows() -> None:
    refusals = [row for row in ROWS if "refusal" in row["tags"]]
    assert len(refusals) >= MIN_REFUSAL_ROWS


def test_enough_multi_turn_rows() -> None:
    multi_turn = [row for row in ROWS if is_multi_turn(row)]
    assert len(multi_turn) >= MIN_MULTI_TURN_ROWS


def test_user_messages_unique() -> None:
    seen: dict[str, str] = {}
    for row in ROWS:
        for text in user_messages(row):
            normalized = " ".join(text.split()).casefold()
            assert normalized not in seen, f"{row['id']} repeats a message of {seen[normalized]}"
            seen[normalized] = row["id"]
