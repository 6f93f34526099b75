"""Benchmark cases as rows and files: normalisation, content hash, import and export.

A case's identity within its policy is the SHA-256 hash of its normalised messages (see
`normalize_messages`), so two conversations that differ only in whitespace are one case, for
sampled and imported cases alike.

Case files are JSON Lines or CSV, one case per row, with these fields:

- ``messages``: an array of chat messages, or ``input``: one user message as a string.
- ``expected`` (text): the expected output, and ``expected_model``: the model that produced it.
- ``criteria`` (text): what a judge should look for.
- ``checks``: an array of check objects, validated by `evaluator.checks.parse_checks`.
- ``tags``: an array of strings. A CSV cell may also hold a comma-separated list.
- ``scores``: an object of recorded judge scores, ``{model: score}``, each from 1 to 10.

In CSV, ``messages``, ``checks`` and ``scores`` cells hold JSON text. Empty cells, JSON nulls
and whitespace-only strings mean the field is absent. `format_cases` writes the same fields, so
an export imports again unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evaluator.checks import CheckSpecError, parse_checks
from evaluator.tables import BenchmarkCase, SamplingState

CaseFormat = Literal["jsonl", "csv"]

FORMATS: tuple[CaseFormat, ...] = ("jsonl", "csv")
EXTENSIONS: dict[str, CaseFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
FIELDS = ("messages", "input", "expected", "expected_model", "criteria", "checks", "tags", "scores")
EXPORT_FIELDS = ("messages", "expected", "expected_model", "criteria", "checks", "tags", "scores")
MIN_SCORE = 1
MAX_SCORE = 10

# Python's csv module rejects fields over 128 KiB by default, less than one long conversation.
CSV_FIELD_LIMIT = 64 * 1024 * 1024

_WHITESPACE = re.compile(r"\s+")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


class CaseRowError(ValueError):
    """Raised for a row that cannot become a case. The message names the field and the problem."""


class CaseFileError(Exception):
    """Raised for a case file that cannot be read at all: missing, not UTF-8, or a bad header."""


@dataclass(frozen=True)
class CaseRow:
    """One case as a file row: every field of a case except its policy and ids."""

    messages: list[dict[str, Any]]
    expected: str | None = None
    expected_model: str | None = None
    criteria: str | None = None
    checks: list[dict[str, Any]] | None = None
    tags: list[str] | None = None
    scores: dict[str, float] | None = None


@dataclass(frozen=True)
class RowProblem:
    """An invalid row of a case file: its line number (from 1) and why it was skipped."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class CaseFile:
    """The valid rows of a case file with their line numbers, the invalid rows and warnings."""

    rows: list[tuple[int, CaseRow]] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    """Counts of one import: rows stored, and rows skipped as duplicates of an earlier case."""

    imported: int
    duplicates: int


# ---------------------------------------------------------------------------
# Normalisation and content hash
# ---------------------------------------------------------------------------


def collapse_whitespace(text: str) -> str:
    """Replace each run of whitespace with one space and strip both ends."""
    return _WHITESPACE.sub(" ", text).strip()


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Reduce chat messages to what identifies a case: each message's role and text content.

    Whitespace is collapsed. A list of content parts keeps only its text parts and image URLs,
    with adjacent text parts joined, and becomes one string when it has no image, so
    ``[{"type": "text", "text": "Hi"}]`` and ``"Hi"`` are the same content. Other fields, such
    as ``name`` and ``tool_calls``, are left out.
    """
    return [
        {"role": message.get("role"), "content": _normalize_content(message.get("content"))}
        for message in messages
    ]


def content_hash(messages: Sequence[Mapping[str, Any]]) -> str:
    """Return the hex SHA-256 of the normalised messages as JSON with sorted keys."""
    normalized = normalize_messages(messages)
    # ASCII escapes keep the encoding total: a lone surrogate cannot be encoded as UTF-8.
    encoded = json.dumps(normalized, sort_keys=True, separators=(",", ":")).encode("ascii")
    return hashlib.sha256(encoded).hexdigest()


def _normalize_content(content: object) -> str | list[dict[str, str]]:
    if isinstance(content, str):
        return collapse_whitespace(content)
    if not isinstance(content, list):
        return ""

    pieces: list[dict[str, str]] = []
    texts: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
            continue
        url = image_url(part)
        if url is None:
            continue
        text = collapse_whitespace(" ".join(texts))
        if text:
            pieces.append({"text": text})
        texts = []
        pieces.append({"image_url": url})

    text = collapse_whitespace(" ".join(texts))
    if not pieces:
        return text
    if text:
        pieces.append({"text": text})
    return pieces


def image_url(part: Mapping[str, Any]) -> str | None:
    """Return the URL of an ``image_url`` content part, or None for any other part."""
    if part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    if isinstance(image, str):
        return image
    if isinstance(image, Mapping) and isinstance(image.get("url"), str):
        return str(image["url"])
    return None


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Return the collapsed text of the first user message, or "" when there is none."""
    for message in messages:
        if message.get("role") != "user":
            continue
        content = _normalize_content(message.get("content"))
        if isinstance(content, str):
            return content
        return " ".join(piece.get("text", "[image]") for piece in content)
    return ""


# ---------------------------------------------------------------------------
# Validation of messages and rows
# ---------------------------------------------------------------------------


def parse_messages(raw: object, where: str = "messages") -> list[dict[str, Any]]:
    """Check that ``raw`` is a non-empty array of OpenAI chat messages and return it.

    Raises `CaseRowError` naming the first bad message and field, as in
    ``messages[1].role: missing``.
    """
    if not isinstance(raw, list):
        raise CaseRowError(f"{where}: expected an array of messages, got {describe(raw)}")
    if not raw:
        raise CaseRowError(f"{where}: expected at least one message, got an empty array")
    for index, message in enumerate(raw):
        _check_message(message, f"{where}[{index}]")
    return raw


def _check_message(message: object, where: str) -> None:
    if not isinstance(message, dict):
        raise CaseRowError(
            f"{where}: expected a message object with role and content, got {describe(message)}"
        )

    role = message.get("role")
    roles = ", ".join(ROLES)
    if role is None:
        raise CaseRowError(f"{where}.role: missing; expected one of {roles}")
    if role not in ROLES:
        raise CaseRowError(f"{where}.role: unknown role {_show(role)}; expected one of {roles}")

    content = message.get("content")
    if content is None:
        # An assistant turn that only calls tools has no content.
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise CaseRowError(f"{where}.content: missing")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise CaseRowError(
            f"{where}.content: expected a string or an array of content parts, "
            f"got {describe(content)}"
        )
    for index, part in enumerate(content):
        _check_part(part, f"{where}.content[{index}]")


def _check_part(part: object, where: str) -> None:
    if not isinstance(part, dict):
        raise CaseRowError(f"{where}: expected a content part object, got {describe(part)}")
    part_type = part.get("type")
    if not isinstance(part_type, str):
        raise CaseRowError(
            f'{where}.type: expected a string such as "text", got {_show(part_type)}'
        )
    if part_type == "text" and not isinstance(part.get("text"), str):
        raise CaseRowError(f"{where}.text: expected a string, got {describe(part.get('text'))}")
    if part_type == "image_url" and image_url(part) is None:
        raise CaseRowError(f"{where}.image_url: expected an object with a url string")


def parse_row(raw: Mapping[str, Any], *, cells: bool = False) -> CaseRow:
    """Validate one row of a case file and turn it into a `CaseRow`.

    ``cells`` is true for CSV rows, whose values are all strings: then ``messages``, ``checks``
    and ``scores`` are decoded from JSON, and ``tags`` from JSON or a comma-separated list.
    Keys other than `FIELDS` are ignored. Raises `CaseRowError`.
    """
    values = {key: value for key, value in raw.items() if key in FIELDS and not _blank(value)}
    if cells:
        values = _decode_cells(values)

    row = CaseRow(
        messages=_row_messages(values),
        expected=_optional_text(values, "expected"),
        expected_model=_optional_text(values, "expected_model"),
        criteria=_optional_text(values, "criteria"),
        checks=_row_checks(values.get("checks")),
        tags=_row_tags(values.get("tags")),
        scores=_row_scores(values.get("scores")),
    )
    for name in EXPORT_FIELDS:
        check_storable(getattr(row, name), name)
    return row


def check_storable(value: object, where: str) -> None:
    """Raise `CaseRowError` when a string inside ``value`` cannot be stored in the database.

    PostgreSQL text rejects NUL characters, and neither database driver can encode a lone
    surrogate (which JSON allows as an escape such as ``"\\ud800"``) as UTF-8.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise CaseRowError(f"{where}: contains a NUL character, which cannot be stored")
        if _LONE_SURROGATE.search(value):
            raise CaseRowError(f"{where}: contains an unpaired UTF-16 surrogate escape")
    elif isinstance(value, float) and not math.isfinite(value):
        raise CaseRowError(f"{where}: {value} is not a JSON number")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_storable(key, where)
            check_storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]")


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _decode_cells(values: dict[str, Any]) -> dict[str, Any]:
    decoded = dict(values)
    for key in ("messages", "checks", "scores"):
        if key in decoded:
            decoded[key] = _load_json_cell(decoded[key], key)
    tags = decoded.get("tags")
    if isinstance(tags, str):
        if tags.lstrip().startswith("["):
            decoded["tags"] = _load_json_cell(tags, "tags")
        else:
            decoded["tags"] = [tag for tag in tags.split(",") if tag.strip()]
    return decoded


def _load_json_cell(text: str, key: str) -> Any:
    try:
        return load_json(text)
    except ValueError as exc:
        hint = (
            "; put a single user message in the input column instead" if key == "messages" else ""
        )
        raise CaseRowError(f"{key}: invalid JSON: {json_error(exc)}{hint}") from exc


def _row_messages(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "messages" in values and "input" in values:
        raise CaseRowError("messages and input are both set; give only one of them")
    if "input" in values:
        text = values["input"]
        if not isinstance(text, str):
            raise CaseRowError(f"input: expected a string (one user message), got {describe(text)}")
        return [{"role": "user", "content": text}]
    if "messages" in values:
        return parse_messages(values["messages"])
    raise CaseRowError(
        "missing messages or input: give messages (an array of chat messages) "
        "or input (one user message)"
    )


def _optional_text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is None or isinstance(value, str):
        return value
    raise CaseRowError(f"{key}: expected a string, got {describe(value)}")


def _row_checks(raw: object) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    try:
        parse_checks(raw, "checks")
    except CheckSpecError as exc:
        raise CaseRowError(str(exc)) from exc
    # parse_checks accepted a list of objects; the raw objects are what the case stores.
    items = raw if isinstance(raw, list) else []
    checks = [dict(item) for item in items]
    return checks or None


def _row_tags(raw: object) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise CaseRowError(f"tags: expected an array of strings, got {describe(raw)}")
    tags: list[str] = []
    for index, tag in enumerate(raw):
        if not isinstance(tag, str):
            raise CaseRowError(f"tags[{index}]: expected a string, got {describe(tag)}")
        tag = tag.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags or None


def _row_scores(raw: object) -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise CaseRowError(f"scores: expected an object of model: score, got {describe(raw)}")
    scores: dict[str, float] = {}
    for model, score in raw.items():
        if not model.strip():
            raise CaseRowError("scores: a model name is empty")
        number_ok = isinstance(score, int | float) and not isinstance(score, bool)
        if not number_ok or not MIN_SCORE <= score <= MAX_SCORE:
            raise CaseRowError(
                f"scores.{model}: expected a number from {MIN_SCORE} to {MAX_SCORE}, "
                f"got {_show(score)}"
            )
        scores[model] = float(score)
    return scores or None


def describe(value: object) -> str:
    """Name the JSON type of ``value`` for an error message: "a string", "an array", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if _is_json_scalar(value) else describe(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# ---------------------------------------------------------------------------
# Reading case files
# ---------------------------------------------------------------------------


def load_json(text: str) -> Any:
    """Parse JSON, raising ValueError also for NaN, Infinity and nesting too deep to parse."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def json_error(exc: ValueError) -> str:
    """Describe a `load_json` error in a few words, with the column for syntax errors."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def detect_format(path: Path, requested: str | None = None) -> CaseFormat:
    """Return the requested format, or the one that the file's extension names.

    Raises `CaseFileError` when neither names a supported format.
    """
    if requested is not None:
        for known in FORMATS:
            if requested == known:
                return known
        raise CaseFileError(f"unknown format {requested!r}; use jsonl or csv")
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise CaseFileError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            "name the file .jsonl or .csv, or pass --format jsonl or --format csv"
        )
    return found


def read_case_file(path: Path, case_format: CaseFormat) -> CaseFile:
    """Read a UTF-8 case file (a byte order mark is allowed) and parse every row.

    Raises `CaseFileError` when the file cannot be read or is not UTF-8, and for a CSV file
    whose header is unusable. Invalid rows are returned as problems instead.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CaseFileError(f"{path}: file not found") from exc
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CaseFileError(
            f"{path}: line {line} is not valid UTF-8 text; save the file as UTF-8"
        ) from exc

    try:
        return parse_case_text(text, case_format)
    except CaseFileError as exc:
        raise CaseFileError(f"{path}: {exc}") from exc


def parse_case_text(text: str, case_format: CaseFormat) -> CaseFile:
    """Parse the decoded text of a case file, as `read_case_file` does."""
    if case_format == "jsonl":
        return _parse_jsonl(text)
    return _parse_csv(text)


def _parse_jsonl(text: str) -> CaseFile:
    result = CaseFile()
    unknown: dict[str, int] = {}
    # Only "\n" ends a line: str.splitlines() would also split at U+2028 and other characters
    # that JSON strings may contain unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            raw = load_json(line)
        except ValueError as exc:
            result.problems.append(RowProblem(number, f"invalid JSON: {json_error(exc)}"))
            continue
        if not isinstance(raw, dict):
            message = f"expected a JSON object with messages or input, got {describe(raw)}"
            result.problems.append(RowProblem(number, message))
            continue
        for key in raw:
            if key not in FIELDS:
                unknown.setdefault(key, number)
        _add_row(result, number, raw, cells=False)

    for key, number in unknown.items():
        result.warnings.append(f"unknown field {key!r} ignored (first seen on line {number})")
    return result


def _parse_csv(text: str) -> CaseFile:
    result = CaseFile()
    with _csv_field_limit(CSV_FIELD_LIMIT):
        reader = csv.reader(io.StringIO(text, newline=""))
        records = _csv_records(reader)
        first = next(records, None)
        if first is None:
            return result
        columns = _csv_columns(first[1], first[0])
        for key in columns:
            if key and key not in FIELDS:
                result.warnings.append(f"unknown column {key!r} ignored")

        for number, cells in records:
            if len(cells) > len(columns) and any(cell.strip() for cell in cells[len(columns) :]):
                message = f"the row has {len(cells)} cells but the header has {len(columns)}"
                result.problems.append(RowProblem(number, message))
                continue
            _add_row(result, number, dict(zip(columns, cells, strict=False)), cells=True)
    return result


def _csv_records(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Yield each non-blank CSV record with the line it starts on."""
    end = 0
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CaseFileError(f"line {reader.line_num}: invalid CSV: {exc}") from exc
        end = reader.line_num
        if any(cell.strip() for cell in cells):
            yield start, cells


def _csv_columns(header: list[str], line: int) -> list[str]:
    columns = [name.strip().lower() for name in header]
    if "messages" not in columns and "input" not in columns:
        found = ", ".join(repr(name) for name in columns) or "nothing"
        raise CaseFileError(
            f"line {line}: the CSV header needs a messages or input column; found {found}"
        )
    for name in columns:
        if name and columns.count(name) > 1:
            raise CaseFileError(f"line {line}: the CSV header names the column {name!r} twice")
    return columns


@contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    # The limit is process-wide state of the csv module, so restore it afterwards.
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _add_row(result: CaseFile, number: int, raw: Mapping[str, Any], *, cells: bool) -> None:
    try:
        result.rows.append((number, parse_row(raw, cells=cells)))
    except CaseRowError as exc:
        result.problems.append(RowProblem(number, str(exc)))


# ---------------------------------------------------------------------------
# Writing case files
# ---------------------------------------------------------------------------


def case_row(case: BenchmarkCase) -> CaseRow:
    """Return the file fields of a stored case."""
    return CaseRow(
        messages=case.messages,
        expected=case.expected,
        expected_model=case.expected_model,
        criteria=case.criteria,
        checks=case.checks or None,
        tags=case.tags or None,
        scores=case.scores or None,
    )


def row_object(row: CaseRow) -> dict[str, Any]:
    """Return a row as a JSON object, leaving out absent fields."""
    values = {name: getattr(row, name) for name in EXPORT_FIELDS}
    return {name: value for name, value in values.items() if value is not None}


def format_cases(rows: Sequence[CaseRow], case_format: CaseFormat) -> str:
    """Write rows as the text of a JSON Lines or CSV case file that `parse_case_text` reads."""
    if case_format == "jsonl":
        return "".join(json.dumps(row_object(row), ensure_ascii=False) + "\n" for row in rows)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        writer.writerow([_csv_cell(getattr(row, name)) for name in EXPORT_FIELDS])
    return buffer.getvalue()


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------


def utc_now() -> datetime:
    """Return the current time in UTC, aware, because the tables' timestamp columns require it."""
    return datetime.now(UTC)


def lock_sampling_state(session: Session, policy: str) -> SamplingState:
    """Create the policy's `SamplingState` row if missing, lock it and return it.

    The lock lasts until the session's transaction ends: a row lock on PostgreSQL, and on SQLite
    the database's write lock, taken by the insert even when the row already exists.
    """
    bind = session.get_bind()
    insert = _insert_if_absent(bind.dialect.name)
    statement = insert(SamplingState).values(policy=policy, seen=0, updated_at=utc_now())
    session.execute(statement.on_conflict_do_nothing(index_elements=["policy"]))
    found = session.exec(
        select(SamplingState).where(SamplingState.policy == policy).with_for_update()
    ).one()
    return found


def _insert_if_absent(dialect: str) -> Callable[..., Any]:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"benchmark cases support SQLite and PostgreSQL, not {dialect}")


def new_case(
    policy: str, source: str, row: CaseRow, request_id: str | None = None
) -> BenchmarkCase:
    """Build an unsaved `BenchmarkCase` of a policy from a row."""
    return BenchmarkCase(
        policy=policy,
        source=source,
        content_hash=content_hash(row.messages),
        messages=row.messages,
        expected=row.expected,
        expected_model=row.expected_model,
        criteria=row.criteria,
        checks=row.checks,
        tags=row.tags,
        scores=row.scores,
        request_id=request_id,
        created_at=utc_now(),
    )


def import_cases(engine: Engine, policy: str, rows: Sequence[CaseRow]) -> ImportResult:
    """Store rows as the policy's imported cases in one transaction, skipping duplicates.

    A row is a duplicate when its content hash matches a stored case of the policy or an
    earlier row. Imports are not capped by `max_cases`, and the sampler fills what is left.
    """
    imported = 0
    duplicates = 0
    with Session(engine) as session:
        lock_sampling_state(session, policy)
        stored = set(
            session.exec(
                select(BenchmarkCase.content_hash).where(BenchmarkCase.policy == policy)
            ).all()
        )
        for row in rows:
            case = new_case(policy, "imported", row)
            if case.content_hash in stored:
                duplicates += 1
                continue
            stored.add(case.content_hash)
            session.add(case)
            imported += 1
        session.commit()
    return ImportResult(imported, duplicates)


def load_cases(engine: Engine, policy: str | None = None) -> list[BenchmarkCase]:
    """Return the stored cases, of one policy or of all, in the order they were stored."""
    query = select(BenchmarkCase).order_by(col(BenchmarkCase.id))
    if policy is not None:
        query = query.where(BenchmarkCase.policy == policy)
    with Session(engine) as session:
        return list(session.exec(query).all())


def count_cases(engine: Engine) -> dict[str, dict[str, int]]:
    """Return the number of stored cases per policy and source ("sampled", "imported")."""
    query = select(BenchmarkCase.policy, BenchmarkCase.source, func.count()).group_by(
        col(BenchmarkCase.policy), col(BenchmarkCase.source)
    )
    counts: dict[str, dict[str, int]] = {}
    with Session(engine) as session:
        for policy, source, number in session.exec(query).all():
            counts.setdefault(policy, {})[source] = number
    return counts
