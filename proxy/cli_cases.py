"""`pareto cases`: import, annotate, export and list the benchmark cases of a policy.

Exit status of every subcommand:

- 0: success. An import that stores some rows and skips invalid ones also exits 0, after
  listing each skipped row with its line number on stderr.
- 1: the database failed, or an import file has rows and every one of them is invalid.
- 2: a usage or configuration error, such as an invalid configuration, an unknown policy, or a
  missing or unreadable file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from evaluator.annotate import annotate_cases
from evaluator.cases import (
    FORMATS,
    CaseFile,
    CaseFileError,
    CaseFormat,
    case_row,
    count_cases,
    detect_format,
    first_user_text,
    format_cases,
    import_cases,
    load_cases,
    read_case_file,
)
from evaluator.tables import BenchmarkCase
from proxy.config import ConfigError, LoadedConfig, load_config
from proxy.sampling import sampling_policies

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Invalid rows listed one by one before the rest are only counted.
MAX_LISTED_PROBLEMS = 50
PREVIEW_CHARACTERS = 60


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `cases` command and its subcommands to the `pareto` parser."""
    cases = commands.add_parser("cases", help="import, export and list benchmark cases")
    cases.set_defaults(handler=lambda _args: _print_help(cases))
    subcommands = cases.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    importing = subcommands.add_parser(
        "import", help="add cases from a JSON Lines or CSV file to a policy"
    )
    importing.add_argument("file", help="path of the .jsonl or .csv file to read")
    _add_common(importing, policy_required=True)
    importing.add_argument(
        "--format", choices=FORMATS, help="file format (default: from the file's extension)"
    )
    importing.set_defaults(handler=_import)

    annotating = subcommands.add_parser(
        "annotate",
        help="attach criteria, checks, tags or recorded scores to stored cases with the same "
        "messages",
    )
    annotating.add_argument("file", help="path of the .jsonl or .csv file to read")
    _add_common(annotating, policy_required=True)
    annotating.add_argument(
        "--format", choices=FORMATS, help="file format (default: from the file's extension)"
    )
    annotating.set_defaults(handler=_annotate)

    exporting = subcommands.add_parser(
        "export", help="write a policy's cases in the format that import reads"
    )
    _add_common(exporting, policy_required=True)
    exporting.add_argument("--out", help="file to write (default: standard output)")
    exporting.add_argument(
        "--format",
        choices=FORMATS,
        help="file format (default: from the --out extension, else jsonl)",
    )
    exporting.set_defaults(handler=_export)

    listing = subcommands.add_parser("list", help="show stored cases and counts per policy")
    _add_common(listing, policy_required=False)
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(handler=_list)


def _add_common(parser: argparse.ArgumentParser, *, policy_required: bool) -> None:
    parser.add_argument("--config", required=True, help="path of the YAML configuration file")
    parser.add_argument(
        "--policy",
        required=policy_required,
        help="policy name from the configuration's policies section"
        + ("" if policy_required else " (default: all policies)"),
    )


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------


def _import(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_USAGE
    if args.policy not in loaded.config.policies:
        return _unknown_policy(args.policy, loaded)

    case_file = _read_rows(args.file, args.format)
    if case_file is None:
        return EXIT_USAGE
    rows = [row for _line, row in case_file.rows]
    with _database(loaded) as engine:
        if engine is None:
            return EXIT_FAILED
        try:
            result = import_cases(engine, args.policy, rows)
            total = sum(count_cases(engine).get(args.policy, {}).values())
        except SQLAlchemyError as exc:
            _database_error(loaded, exc)
            return EXIT_FAILED

    print(
        f"{args.policy}: imported {result.imported}, duplicates {result.duplicates}, "
        f"invalid {len(case_file.problems)}"
    )
    max_cases = loaded.config.policies[args.policy].max_cases
    if total > max_cases:
        print(
            f"note: {args.policy} now has {total} cases, more than max_cases ({max_cases}); "
            "imported cases are kept, and sampling adds no more cases",
            file=sys.stderr,
        )
    if case_file.problems and not case_file.rows:
        return EXIT_FAILED
    return EXIT_OK


def _annotate(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_USAGE
    if args.policy not in loaded.config.policies:
        return _unknown_policy(args.policy, loaded)
    case_file = _read_rows(args.file, args.format)
    if case_file is None:
        return EXIT_USAGE

    redactor = sampling_policies(loaded.config)[args.policy].redactor
    rows = [row for _line, row in case_file.rows]
    with _database(loaded) as engine:
        if engine is None:
            return EXIT_FAILED
        try:
            result = annotate_cases(engine, args.policy, rows, redactor)
        except SQLAlchemyError as exc:
            _database_error(loaded, exc)
            return EXIT_FAILED

    for index in result.unmatched[:MAX_LISTED_PROBLEMS]:
        line, row = case_file.rows[index]
        preview = _shorten(first_user_text(row.messages))
        print(
            f"{args.file}: line {line}: no stored case has these messages: {preview}",
            file=sys.stderr,
        )
    print(
        f"{args.policy}: annotated {result.updated}, unchanged {result.unchanged}, "
        f"unmatched {len(result.unmatched)}, invalid {len(case_file.problems)}"
    )
    if case_file.problems and not case_file.rows:
        return EXIT_FAILED
    return EXIT_OK


def _read_rows(name: str, format_name: str | None) -> CaseFile | None:
    """Read a case file, listing its warnings and invalid rows on stderr; None if unreadable."""
    path = Path(name)
    try:
        case_file = read_case_file(path, detect_format(path, format_name))
    except CaseFileError as exc:
        _error(str(exc))
        return None
    for warning in case_file.warnings:
        print(f"warning: {path}: {warning}", file=sys.stderr)
    for problem in case_file.problems[:MAX_LISTED_PROBLEMS]:
        print(f"{path}: {problem}", file=sys.stderr)
    unlisted = len(case_file.problems) - MAX_LISTED_PROBLEMS
    if unlisted > 0:
        print(f"{path}: {unlisted} more invalid rows not listed", file=sys.stderr)
    return case_file


def _export(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_USAGE

    out = Path(args.out) if args.out else None
    case_format: CaseFormat = "jsonl"
    try:
        if args.format is not None or out is not None:
            case_format = detect_format(out or Path(), args.format)
    except CaseFileError as exc:
        _error(str(exc))
        return EXIT_USAGE

    with _database(loaded) as engine:
        if engine is None:
            return EXIT_FAILED
        try:
            cases = load_cases(engine, args.policy)
        except SQLAlchemyError as exc:
            _database_error(loaded, exc)
            return EXIT_FAILED
    # A policy removed from the configuration can still be exported while it has cases.
    if not cases and args.policy not in loaded.config.policies:
        return _unknown_policy(args.policy, loaded)

    text = format_cases([case_row(case) for case in cases], case_format)
    if out is None:
        # Bytes, so the output is UTF-8 whatever locale the terminal uses.
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
        return EXIT_OK
    try:
        out.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        _error(f"cannot write {out}: {exc.strerror or exc}")
        return EXIT_USAGE
    print(f"{args.policy}: exported {len(cases)} cases to {out}", file=sys.stderr)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_USAGE

    with _database(loaded) as engine:
        if engine is None:
            return EXIT_FAILED
        try:
            cases = load_cases(engine, args.policy)
            counts = count_cases(engine)
        except SQLAlchemyError as exc:
            _database_error(loaded, exc)
            return EXIT_FAILED
    if args.policy is not None:
        if not cases and args.policy not in loaded.config.policies:
            return _unknown_policy(args.policy, loaded)
        counts = {args.policy: counts.get(args.policy, {})}
    else:
        for name in loaded.config.policies:
            counts.setdefault(name, {})

    entries = [_list_entry(case) for case in cases]
    summary = {
        policy: {
            "sampled": by_source.get("sampled", 0),
            "imported": by_source.get("imported", 0),
            "total": sum(by_source.values()),
        }
        for policy, by_source in sorted(counts.items())
    }
    if args.json:
        print(json.dumps({"cases": entries, "counts": summary}, ensure_ascii=False, indent=2))
    else:
        _print_table(entries)
        _print_counts(summary, loaded)
    return EXIT_OK


def _list_entry(case: BenchmarkCase) -> dict[str, Any]:
    return {
        "id": case.id,
        "policy": case.policy,
        "source": case.source,
        "tags": case.tags or [],
        "first_user_message": _shorten(first_user_text(case.messages)),
        "has_expected": bool(case.expected),
        "has_checks": bool(case.checks),
        "has_criteria": bool(case.criteria),
    }


def _print_table(entries: list[dict[str, Any]]) -> None:
    header = ("id", "policy", "source", "tags", "expected", "checks", "criteria", "first message")
    table = [header]
    for entry in entries:
        table.append(
            (
                str(entry["id"]),
                entry["policy"],
                entry["source"],
                ",".join(entry["tags"]) or "-",
                _yes(entry["has_expected"]),
                _yes(entry["has_checks"]),
                _yes(entry["has_criteria"]),
                entry["first_user_message"],
            )
        )
    widths = [max(len(row[column]) for row in table) for column in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def _print_counts(summary: dict[str, dict[str, int]], loaded: LoadedConfig) -> None:
    print()
    for policy, counts in summary.items():
        configured = loaded.config.policies.get(policy)
        cap = f", max_cases {configured.max_cases}" if configured else ", not configured"
        print(
            f"{policy}: {counts['total']} cases ({counts['sampled']} sampled, "
            f"{counts['imported']} imported){cap}"
        )


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def _shorten(text: str) -> str:
    if len(text) <= PREVIEW_CHARACTERS:
        return text
    return text[: PREVIEW_CHARACTERS - 3].rstrip() + "..."


# ---------------------------------------------------------------------------
# Configuration and database
# ---------------------------------------------------------------------------


def _load(path: str) -> LoadedConfig | None:
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        _error(f"invalid configuration {path}:")
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


@contextmanager
def _database(loaded: LoadedConfig) -> Iterator[Engine | None]:
    """Open the configured database, or report why not and yield None."""
    from proxy.db import make_engine

    try:
        engine = make_engine(loaded.database_url)
    except SQLAlchemyError as exc:
        _database_error(loaded, exc)
        yield None
        return
    try:
        yield engine
    finally:
        engine.dispose()


def _database_error(loaded: LoadedConfig, exc: SQLAlchemyError) -> None:
    try:
        url = make_url(loaded.database_url).render_as_string(hide_password=True)
    except ArgumentError:
        url = "(an invalid URL)"
    cause = getattr(exc, "orig", None) or exc
    detail = (str(cause).splitlines() or [type(cause).__name__])[0]
    _error(f"database {url} failed: {detail}")


def _unknown_policy(policy: str, loaded: LoadedConfig) -> int:
    names = ", ".join(loaded.config.policies) or "none"
    _error(f"unknown policy {policy!r}; the configured policies are: {names}")
    return EXIT_USAGE


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
