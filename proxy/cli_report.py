"""The `pareto report` command: write one policy's report as a self-contained HTML file.

The file is the page the gateway serves at `/ui/policy/NAME`: the cost/quality chart, the
candidate table, the decision history and spend over time, with no network fetch, so it opens
from disk. It reads the database named by the configuration file (or `DATABASE_URL`), or the one
given with `--database-url`, in which case the settings shown are those of the newest decision.
Every error prints one sentence to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from proxy.cli_policies import EXIT_ERROR, CommandError, _load, _open_database
from proxy.db import normalize_url
from proxy.policy_config import PolicyConfig
from proxy.report.data import PolicyReport, known_policies, load_report
from proxy.report.page import render_report


def register(commands: Any) -> None:
    """Add the report command to the `pareto` parser."""
    report = commands.add_parser(
        "report", help="write a policy's cost/quality report as a self-contained HTML file"
    )
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="path of the YAML configuration file")
    source.add_argument(
        "--database-url",
        help="database to read instead of a configuration file, such as sqlite:///pareto.db. "
        "The settings shown are then those of the policy's newest decision",
    )
    report.add_argument("--policy", required=True, help="name of the policy to report on")
    report.add_argument("--out", required=True, help="path of the HTML file to write")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Write the report file; return 0, or print the error and return `EXIT_ERROR`."""
    try:
        path, report = _write_report(args.policy, Path(args.out), args.config, args.database_url)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    candidates = 0 if report.chart is None else len(report.chart.candidates)
    print(
        f"{path}: report of policy {args.policy} written with {candidates} candidates and "
        f"{len(report.history)} decisions."
    )
    return 0


def _write_report(
    policy: str, out: Path, config_path: str | None, database_url: str | None
) -> tuple[Path, PolicyReport]:
    _check_output(out)
    config: PolicyConfig | None = None
    if config_path is not None:
        loaded = _load(config_path)
        url = loaded.database_url
        config = _configured_policy(loaded.config.policies, policy)
    else:
        assert database_url is not None  # argparse requires one of the two
        url = database_url
    _check_database_url(url)

    with _open_database(url) as engine:
        if config is None:
            _check_stored_policy(engine, policy)
        report = load_report(engine, policy, config)
    _write_atomically(out, render_report(report))
    return out, report


def _check_output(out: Path) -> None:
    if out.is_dir():
        raise CommandError(f"cannot write the report to {out}: it is a directory.")
    parent = out.parent
    if not parent.is_dir():
        raise CommandError(
            f"cannot write the report to {out}: the directory {parent} does not exist."
        )
    if not os.access(parent, os.W_OK):
        raise CommandError(
            f"cannot write the report to {out}: the directory {parent} is not writable."
        )


def _check_database_url(url: str) -> None:
    """Reject an invalid URL, and a SQLite file that does not exist, which would be created."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError as exc:
        raise CommandError(
            f"invalid database URL {url!r}: expected one such as sqlite:///pareto.db or "
            "postgresql://user@host:5432/db."
        ) from exc
    database = parsed.database
    is_file = parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
    if is_file and not Path(str(database)).is_file():
        raise CommandError(
            f"the database file {database} does not exist: check the path, or run the gateway "
            "or an evaluation first."
        )


def _configured_policy(configs: Mapping[str, PolicyConfig], policy: str) -> PolicyConfig:
    if policy not in configs:
        known = ", ".join(configs) or "none"
        raise CommandError(f"unknown policy {policy!r}: the configured policies are {known}.")
    return configs[policy]


def _check_stored_policy(engine: Engine, policy: str) -> None:
    known_names = known_policies(engine)
    if policy not in known_names:
        known = ", ".join(known_names) or "none"
        raise CommandError(
            f"unknown policy {policy!r}: the policies with decisions or requests in the "
            f"database are {known}."
        )


def _write_atomically(out: Path, page: str) -> None:
    """Write the file next to its final path, then rename it, so no half-written page remains.

    The file gets `tempfile`'s mode 0600, so only its owner can read it.
    """
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=out.parent, prefix=f".{out.name}.", delete=False
        ) as handle:
            temporary = Path(handle.name)
            handle.write(page)
        os.replace(temporary, out)
    except OSError as exc:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise CommandError(f"cannot write the report to {out}: {exc.strerror or exc}.") from exc
