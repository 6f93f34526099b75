"""The customer-support conversations that personas answer, read from a JSON Lines file.

One object per line (blank lines are skipped; other keys are ignored):

- ``id`` (string, unique): the conversation's name.
- ``messages``: OpenAI chat messages, the system prompt and the user turns (earlier
  assistant turns may appear; their content is not matched).
- ``expected`` (string): the correct reply. It must pass every check.
- ``criteria`` (string): what a judge should look for.
- ``checks``: check objects as in `evaluator.checks` (at least one).
- ``flawed``: a non-empty list of ``{"reply": str, "misses": str}``, plausible replies that
  each fail at least one check; ``misses`` says what the reply gets wrong.
- ``tags`` (optional): a list of strings.

`load_dataset` rejects the whole file on any problem, naming the line, the field and the value,
so a persona can never serve a "flawed" reply that passes the checks or an "expected" one that
fails them. Two lines with the same conversation (as `conversation_key` compares them) are an
error too: a request could not tell which to answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.cases import CaseRowError, describe, parse_messages
from evaluator.checks import CheckSpecError, parse_checks, run_checks
from proxy.simulator.conversation import ConversationKey, conversation_key
from proxy.simulator.errors import SimulatorFileError, show

BUNDLED_DATASET = Path(__file__).parent / "data" / "shop_support.jsonl"
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class FlawedReply:
    """A plausible but wrong reply, and what it misses."""

    reply: str
    misses: str


@dataclass(frozen=True)
class SupportConversation:
    """One conversation of the dataset."""

    id: str
    messages: list[dict[str, Any]]
    expected: str
    criteria: str
    checks: list[dict[str, Any]]
    flawed: tuple[FlawedReply, ...]
    tags: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Dataset:
    """The conversations of one file, by id and by conversation key."""

    path: Path
    conversations: tuple[SupportConversation, ...]
    by_key: dict[ConversationKey, SupportConversation]

    def match(self, key: ConversationKey) -> SupportConversation | None:
        """Return the conversation with this key, or None if the dataset has none."""
        return self.by_key.get(key)


class _RowError(ValueError):
    pass


def load_dataset(path: Path) -> Dataset:
    """Read and validate a dataset file. Raises `SimulatorFileError` listing the problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        hint = (
            " (the bundled dataset has not been added to this installation)"
            if path == BUNDLED_DATASET
            else ""
        )
        raise SimulatorFileError([f"{path}: dataset file not found{hint}"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulatorFileError([f"{path}: cannot read the dataset: {exc}"]) from exc

    problems: list[str] = []
    conversations: list[SupportConversation] = []
    by_id: dict[str, SupportConversation] = {}
    by_key: dict[ConversationKey, SupportConversation] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            conversation = _parse_row(line, number)
        except _RowError as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        if conversation.id in by_id:
            problems.append(
                f"{path}:{number}: id {show(conversation.id)} is already used on line "
                f"{by_id[conversation.id].line}"
            )
            continue
        key = conversation_key(conversation.messages)
        if key in by_key:
            problems.append(
                f"{path}:{number}: conversation {show(conversation.id)} has the same messages "
                f"as {show(by_key[key].id)} on line {by_key[key].line}"
            )
            continue
        by_id[conversation.id] = conversation
        by_key[key] = conversation
        conversations.append(conversation)
    if not conversations and not problems:
        problems.append(f"{path}: the dataset has no conversations")
    if problems:
        extra = len(problems) - MAX_REPORTED_PROBLEMS
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if extra > 0:
            shown.append(f"{path}: ... and {extra} more problems")
        raise SimulatorFileError(shown)
    return Dataset(path, tuple(conversations), by_key)


def _parse_row(line: str, number: int) -> SupportConversation:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _RowError(f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(raw, dict):
        raise _RowError(f"expected a JSON object, got {describe(raw)}")

    conversation_id = _text(raw, "id", non_empty=True)
    try:
        messages = parse_messages(raw.get("messages"))
    except CaseRowError as exc:
        raise _RowError(str(exc)) from exc
    expected = _text(raw, "expected", non_empty=True)
    criteria = _text(raw, "criteria")
    raw_checks = raw.get("checks")
    try:
        checks = parse_checks(raw_checks)
    except CheckSpecError as exc:
        raise _RowError(str(exc)) from exc
    if not checks:
        raise _RowError("checks: expected at least one check, so that flawed replies can fail one")
    flawed = _flawed(raw.get("flawed"))
    tags = _tags(raw.get("tags"))

    report = run_checks(checks, expected)
    if not report.passed:
        failed = "; ".join(result.explanation for result in report.failures)
        raise _RowError(f"expected: fails its own checks: {failed}")
    for index, item in enumerate(flawed):
        if run_checks(checks, item.reply).passed:
            raise _RowError(
                f"flawed[{index}].reply: passes every check; a flawed reply must fail one"
            )
    assert isinstance(raw_checks, list)
    return SupportConversation(
        id=conversation_id,
        messages=messages,
        expected=expected,
        criteria=criteria,
        checks=raw_checks,
        flawed=flawed,
        tags=tags,
        line=number,
    )


def _text(raw: dict[str, Any], key: str, *, non_empty: bool = False) -> str:
    if key not in raw:
        raise _RowError(f"{key}: missing")
    value = raw[key]
    if not isinstance(value, str):
        raise _RowError(f"{key}: expected a string, got {describe(value)}")
    if non_empty and not value.strip():
        raise _RowError(f"{key}: expected a non-empty string")
    return value


def _flawed(raw: object) -> tuple[FlawedReply, ...]:
    if raw is None:
        raise _RowError("flawed: missing")
    if not isinstance(raw, list) or not raw:
        raise _RowError(f"flawed: expected a non-empty array of objects, got {describe(raw)}")
    replies = []
    for index, item in enumerate(raw):
        where = f"flawed[{index}]"
        if not isinstance(item, dict):
            raise _RowError(
                f"{where}: expected an object with reply and misses, got {describe(item)}"
            )
        try:
            reply = _text(item, "reply", non_empty=True)
            misses = _text(item, "misses", non_empty=True)
        except _RowError as exc:
            raise _RowError(f"{where}.{exc}") from exc
        replies.append(FlawedReply(reply, misses))
    return tuple(replies)


def _tags(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(tag, str) for tag in raw):
        raise _RowError(f"tags: expected an array of strings, got {show(raw)}")
    return tuple(raw)
