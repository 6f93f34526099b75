"""Persona mode: config validation, dataset validation, stable quality and flaw share."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from evaluator.checks import parse_checks, run_checks
from proxy.simulator.catalog import build_catalog
from proxy.simulator.dataset import BUNDLED_DATASET, load_dataset
from proxy.simulator.errors import SimulatorFileError
from proxy.simulator.generic import generic_reply
from proxy.simulator.personas import (
    Persona,
    build_personas,
    flawed_ids,
    load_persona_specs,
    parse_persona_specs,
)
from tests.proxy.simulator.helpers import (
    conversation,
    persona,
    write_config,
    write_dataset,
    write_jsonl,
)

REPO = Path(__file__).parents[3]


def personas(tmp_path: Path, *entries: dict[str, Any]) -> list[Persona]:
    return build_personas(load_persona_specs(write_config(tmp_path, list(entries))))


def problems_of(tmp_path: Path, models: Any) -> list[str]:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(models), encoding="utf-8")
    with pytest.raises(SimulatorFileError) as raised:
        load_persona_specs(path)
    return raised.value.problems


# ---------------------------------------------------------------------------
# Quality


def test_flawed_share_matches_rate() -> None:
    ids = [f"conversation-{n}" for n in range(200)]
    for rate in (0.0, 0.02, 0.04, 0.25, 0.33, 0.5, 1.0):
        for name in ("sim-premium", "sim-mini", "x"):
            share = len(flawed_ids(name, ids, rate)) / len(ids)
            assert abs(share - rate) <= 0.005, (name, rate, share)


def test_flaws_are_stable_and_differ_between_personas() -> None:
    ids = [f"c{n}" for n in range(100)]
    assert flawed_ids("sim-a", ids, 0.3) == flawed_ids("sim-a", list(reversed(ids)), 0.3)
    assert flawed_ids("sim-a", ids, 0.3) != flawed_ids("sim-b", ids, 0.3)
    # A higher rate only adds conversations.
    assert flawed_ids("sim-a", ids, 0.1) <= flawed_ids("sim-a", ids, 0.3)


def test_persona_answers_with_expected_or_a_flawed_reply(tmp_path: Path) -> None:
    write_dataset(tmp_path, 40)
    good, weak = personas(
        tmp_path, persona("sim-good", flaw_rate=0.0), persona("sim-weak", flaw_rate=0.5)
    )
    flawed_count = 0
    for number in range(40):
        row = conversation(number)
        checks = parse_checks(row["checks"])
        assert good.reply(row["messages"]).text == row["expected"]
        text = weak.reply(row["messages"]).text
        flawed = f"order-{number:04d}" in weak.flawed_ids
        flawed_count += flawed
        assert run_checks(checks, text).passed is not flawed
        assert text in [row["expected"]] + [f["reply"] for f in row["flawed"]]
    assert flawed_count == 20


def test_same_answers_in_a_new_process_state(tmp_path: Path) -> None:
    write_dataset(tmp_path, 30)
    first = personas(tmp_path, persona("sim-weak", flaw_rate=0.4))[0]
    second = personas(tmp_path, persona("sim-weak", flaw_rate=0.4))[0]
    for number in range(30):
        messages = conversation(number)["messages"]
        assert first.reply(messages).text == second.reply(messages).text


def test_matching_ignores_whitespace_and_assistant_contents(tmp_path: Path) -> None:
    row = conversation(1)
    turns = copy.deepcopy(row)
    turns["id"] = "two-turns"
    turns["messages"] += [
        {"role": "assistant", "content": "Let me check."},
        {"role": "user", "content": "Thanks, and when exactly?"},
    ]
    write_jsonl(tmp_path / "dataset.jsonl", [row, turns])
    model = personas(tmp_path, persona("sim-good", flaw_rate=0.0))[0]

    spaced = copy.deepcopy(row["messages"])
    spaced[1]["content"] = "  Hello,   where is my order A-0001?\nIt is late. "
    assert model.reply(spaced).text == row["expected"]
    other_answer = copy.deepcopy(turns["messages"])
    other_answer[2]["content"] = "Any other model's words."
    assert model.reply(other_answer).text == turns["expected"]
    # A different user message is not a match.
    changed = copy.deepcopy(row["messages"])
    changed[1]["content"] = "Where is my order A-0002?"
    assert model.reply(changed).text == generic_reply(changed)


def test_generic_reply_restates_the_topic() -> None:
    long = "word " * 30
    assert '"Do you ship to Norway"' in generic_reply(
        [{"role": "user", "content": "Do you ship to Norway?"}]
    )
    assert "..." in generic_reply([{"role": "user", "content": long}])
    assert generic_reply([{"role": "system", "content": "x"}]).startswith("Thank you")


def test_personas_share_one_loaded_dataset(tmp_path: Path) -> None:
    write_dataset(tmp_path, 5)
    first, second = personas(tmp_path, persona("a"), persona("b"))
    assert first.dataset is second.dataset


# ---------------------------------------------------------------------------
# Config validation


def test_valid_config_with_prices_and_defaults(tmp_path: Path) -> None:
    write_dataset(tmp_path, 3)
    path = write_config(
        tmp_path,
        [
            persona(
                "sim-premium",
                priced_as="gpt-4",
                input_usd_per_million=30,
                output_usd_per_million=60,
            ),
            {"name": "b", "ttft_ms": 0, "tokens_per_second": 1, "flaw_rate": 1},
        ],
    )
    first, second = load_persona_specs(path)
    assert first.dataset == tmp_path / "dataset.jsonl"
    assert first.encoding == "cl100k_base"
    assert first.profile.jitter == 0.1
    assert second.dataset == BUNDLED_DATASET
    assert second.encoding == "o200k_base"


def test_bare_list_is_accepted(tmp_path: Path) -> None:
    specs = parse_persona_specs([persona("a")], tmp_path / "x.yaml")
    assert [spec.name for spec in specs] == ["a"]


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ({"models": []}, "models: expected a non-empty list of models"),
        ({"personas": []}, "personas: unknown key"),
        ({}, "models: missing"),
        ("text", "expected a non-empty list of models"),
        ({"models": ["x"]}, "models[0]: expected a mapping"),
        (
            {"models": [{**persona("a"), "name": None}]},
            "models[0].name: expected a non-empty string",
        ),
        (
            {"models": [{k: v for k, v in persona("a").items() if k != "name"}]},
            "models[0].name: missing",
        ),
        (
            {"models": [persona("a", flaw_rate=1.5)]},
            "models[0].flaw_rate: must be between 0 and 1, got 1.5",
        ),
        (
            {"models": [persona("a", flaw_rate="low")]},
            'models[0].flaw_rate: expected a number, got "low"',
        ),
        ({"models": [persona("a", ttft_ms=-1)]}, "models[0].ttft_ms: must be at least 0, got -1"),
        (
            {"models": [persona("a", tokens_per_second=0)]},
            "models[0].tokens_per_second: must be greater than 0",
        ),
        ({"models": [persona("a", jitter=2)]}, "models[0].jitter: must be between 0 and 0.9"),
        ({"models": [persona("a", encoding="gpt2")]}, "models[0].encoding: expected one of"),
        ({"models": [persona("a", input_usd_per_million=-2)]}, "models[0].input_usd_per_million"),
        ({"models": [persona("a", speed=3)]}, "models[0].speed: unknown key"),
        (
            {"models": [persona("a"), persona("a")]},
            'models[1].name: "a" is already the name of models[0]',
        ),
    ],
)
def test_invalid_configs_name_the_key_and_value(tmp_path: Path, models: Any, expected: str) -> None:
    problems = problems_of(tmp_path, models)
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith(str(tmp_path / "models.yaml")) for problem in problems)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, {"models": [persona("a", flaw_rate=2, ttft_ms="x")]})
    assert len(problems) == 2


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - name: a\n   bad: [\n", encoding="utf-8")
    with pytest.raises(SimulatorFileError, match=r"models.yaml:\d+: invalid YAML"):
        load_persona_specs(path)


# ---------------------------------------------------------------------------
# Dataset validation


def dataset_problems(tmp_path: Path, rows: list[Any]) -> list[str]:
    path = write_jsonl(tmp_path / "dataset.jsonl", rows)
    with pytest.raises(SimulatorFileError) as raised:
        load_dataset(path)
    return raised.value.problems


def changed(**fields: Any) -> dict[str, Any]:
    row = conversation(0)
    for key, value in fields.items():
        if value is None:
            del row[key]
        else:
            row[key] = value
    return row


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("{oops", ":1: invalid JSON"),
        ("[]", ":1: expected a JSON object, got an array"),
        (changed(id=None), ":1: id: missing"),
        (changed(id=5), ":1: id: expected a string, got a number"),
        (changed(messages=[]), ":1: messages: expected at least one message"),
        (changed(expected=None), ":1: expected: missing"),
        (changed(criteria=None), ":1: criteria: missing"),
        (changed(checks=[]), ":1: checks: expected at least one check"),
        (changed(checks=[{"type": "nope"}]), ":1: checks[0].type: unknown check type"),
        (changed(flawed=[]), ":1: flawed: expected a non-empty array"),
        (changed(flawed=[{"reply": "x"}]), ":1: flawed[0].misses: missing"),
        (changed(tags="shipping"), ":1: tags: expected an array of strings"),
        (changed(expected="Soon."), ":1: expected: fails its own checks"),
        (
            changed(flawed=[{"reply": "Order A-0000 arrives on Friday.", "misses": "nothing"}]),
            ":1: flawed[0].reply: passes every check",
        ),
    ],
)
def test_invalid_dataset_rows_name_the_line(tmp_path: Path, row: Any, expected: str) -> None:
    problems = dataset_problems(tmp_path, [row])
    assert any(expected in problem for problem in problems), problems


def test_duplicate_ids_and_conversations_are_rejected(tmp_path: Path) -> None:
    same_id = conversation(1)
    same_id["id"] = conversation(0)["id"]
    same_messages = conversation(0)
    same_messages["id"] = "other"
    problems = dataset_problems(tmp_path, [conversation(0), same_id, same_messages])
    assert any(':2: id "order-0000" is already used on line 1' in p for p in problems), problems
    assert any(':3: conversation "other" has the same messages' in p for p in problems), problems


def test_empty_and_missing_datasets_are_rejected(tmp_path: Path) -> None:
    assert any("no conversations" in p for p in dataset_problems(tmp_path, ["", " "]))
    with pytest.raises(SimulatorFileError, match="dataset file not found"):
        load_dataset(tmp_path / "missing.jsonl")


def test_tags_are_optional_and_extra_keys_ignored(tmp_path: Path) -> None:
    row = changed(tags=None)
    row["difficulty"] = "easy"
    dataset = load_dataset(write_jsonl(tmp_path / "dataset.jsonl", [row]))
    assert dataset.conversations[0].tags == ()


def test_catalog_reports_a_bad_dataset_with_its_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "dataset.jsonl", [conversation(0), "{"])
    with pytest.raises(SimulatorFileError, match=r"dataset.jsonl:2: invalid JSON"):
        build_catalog(write_config(tmp_path, [persona("a"), persona("b")]))


# ---------------------------------------------------------------------------
# The demo's personas and the bundled dataset


def test_demo_models_config_is_valid_and_priced() -> None:
    specs = load_persona_specs(REPO / "config" / "demo-models.yaml")
    assert len(specs) >= 4
    for spec in specs:
        assert spec.name.startswith("sim-")
        assert spec.priced_as
        assert spec.input_usd_per_million is not None and spec.output_usd_per_million is not None
        assert spec.dataset == BUNDLED_DATASET
        assert 300 <= spec.profile.ttft_ms <= 900 or spec.profile.ttft_ms >= 2000
        assert 40 <= spec.profile.tokens_per_second <= 150
    assert any(spec.profile.ttft_ms >= 2000 for spec in specs)
    rates = sorted(spec.flaw_rate for spec in specs)
    assert rates[0] <= 0.03 and rates[-1] >= 0.25


def test_bundled_dataset_is_valid_when_present() -> None:
    if not BUNDLED_DATASET.exists():
        pytest.skip("the bundled dataset has not been added yet")
    dataset = load_dataset(BUNDLED_DATASET)
    assert len(dataset.conversations) >= 20
    rows = [json.loads(line) for line in BUNDLED_DATASET.read_text().splitlines() if line.strip()]
    assert len(rows) == len(dataset.conversations)
