"""`pareto prune`: delete request rows and cases older than the retention period now.

A running gateway with `general_settings.retention_days` prunes by itself every hour; this
command prunes on demand, or shows with `--dry-run` what a prune would delete.

Exit status: 0 on success, 1 when the database failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from proxy.cli import load_or_report
from proxy.db import make_engine, normalize_url
from proxy.retention import RetentionSettings, prune

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `prune` command to the `pareto` parser."""
    parser = commands.add_parser(
        "prune",
        help="delete request rows and sampled cases older than general_settings.retention_days",
    )
    parser.add_argument("--config", required=True, help="path of the YAML configuration file")
    parser.add_argument(
        "--days",
        type=_days,
        help="delete rows older than this many days (default: general_settings.retention_days)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="count the rows that a prune would delete, and delete nothing",
    )
    parser.set_defaults(handler=_prune)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid number of days {text!r}: expected a whole number of at least 1"
        )
    return value


def _prune(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config)
    if loaded is None:
        return EXIT_USAGE
    general = loaded.config.general_settings
    days = args.days or general.retention_days
    if days is None:
        print(
            f"error: general_settings.retention_days is not set in {args.config}; "
            "set it, or pass --days N",
            file=sys.stderr,
        )
        return EXIT_USAGE

    settings = RetentionSettings(days, general.retention_include_imported)
    display_url = make_url(normalize_url(loaded.database_url)).render_as_string(hide_password=True)
    try:
        engine = make_engine(loaded.database_url)
        try:
            report = prune(engine, settings, dry_run=args.dry_run)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        first_line = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        print(f"error: the database {display_url} failed: {first_line}", file=sys.stderr)
        return EXIT_FAILED

    sentence = report.describe(days)
    print(sentence[0].upper() + sentence[1:] + ".")
    if not general.retention_include_imported:
        print("Imported cases are kept (general_settings.retention_include_imported is false).")
    return EXIT_OK
