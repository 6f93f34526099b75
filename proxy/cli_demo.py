"""`pareto demo`: run the whole loop offline on simulated models and print what it decided.

Exit status:

- 0: the demo ran to its end, whatever the decision.
- 1: a step failed.
- 2: a usage error, such as a missing or invalid configuration file or an unusable database.
- 130: interrupted by Ctrl-C or SIGTERM, after the demo's processes were stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from proxy.candidate_table import candidate_table
from proxy.config import ConfigError

if TYPE_CHECKING:
    from proxy.demo.run import DemoResult
    from proxy.demo.spend import PhaseSpend

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` command to the `pareto` parser."""
    demo = commands.add_parser(
        "demo",
        help="run the whole loop offline on simulated models (about a minute)",
        description="Start simulated models and a gateway, send a shop's support traffic, "
        "sample it, evaluate the candidates, switch to the cheapest good-enough model, and "
        "print the decision, spend before and after, and the report's path.",
    )
    demo.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: a SQLite file in the demo's folder)",
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        help="folder for the database, log and report (default: a new temporary folder)",
    )
    demo.add_argument(
        "--config", type=Path, help="gateway configuration (default: config/demo.yaml)"
    )
    demo.add_argument(
        "--models", type=Path, help="simulated models (default: config/demo-models.yaml)"
    )
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="divide the simulated latencies by this factor (default 1: realistic)",
    )
    demo.set_defaults(handler=_demo)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"must be a number above 0 and up to 1000, got {text!r}")
    return value


def _demo(args: argparse.Namespace) -> int:
    try:
        config = _find(args.config, "demo.yaml")
        models = _find(args.models, "demo-models.yaml")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Imported here: the demo's modules (the openai client among them) would add half a
    # second to every other command's start.
    from rich.console import Console

    from proxy.demo.gateway_process import GatewayStartError
    from proxy.demo.run import DemoError, DemoOptions, run_demo
    from proxy.simulator.errors import SimulatorFileError

    created = args.workdir is None
    try:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pareto-demo-"))
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"error: cannot use {args.workdir} as the demo's folder: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    options = DemoOptions(config, models, workdir, args.db, args.speed)
    progress = Console(stderr=True)
    # SIGTERM unwinds like Ctrl-C, so the simulator and the gateway process are stopped too.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_demo(options, progress)
    except (ConfigError, SimulatorFileError) as exc:
        return _failed(f"invalid demo files: {exc}", EXIT_USAGE, workdir, created)
    except (DemoError, GatewayStartError) as exc:
        return _failed(f"the demo stopped: {exc}", EXIT_FAILED, workdir, created)
    except (SQLAlchemyError, ArgumentError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _failed(
            f"the database {_shown(args.db)} cannot be used: {reason}", EXIT_USAGE, workdir, created
        )
    except OSError as exc:
        return _failed(f"the demo stopped: {exc}", EXIT_FAILED, workdir, created)
    except KeyboardInterrupt:
        return _failed(
            "interrupted; the demo's processes are stopped", EXIT_INTERRUPTED, workdir, created
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    for line in summary_lines(result):
        print(line)
    return EXIT_OK


def _shown(url: str | None) -> str:
    """Return the database URL without its password, for messages."""
    try:
        return make_url(url or "").render_as_string(hide_password=True)
    except ArgumentError:
        return "given with --db"


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _failed(message: str, code: int, workdir: Path, created: bool) -> int:
    """Print one error line; remove the demo's own temporary folder if nothing was kept in it."""
    print(f"error: {message}", file=sys.stderr)
    if created:
        with contextlib.suppress(OSError):
            workdir.rmdir()  # only when empty
    return code


def _find(given: Path | None, name: str) -> Path:
    """Return `given`, else `name` from the project's config folder, else from ./config."""
    if given is not None:
        if not given.is_file():
            raise FileNotFoundError(f"{given} does not exist")
        return given
    for folder in (PROJECT_ROOT / "config", Path.cwd() / "config"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"config/{name} was not found next to the project or in the current folder; "
        f"pass its path with --{'config' if name == 'demo.yaml' else 'models'}"
    )


def summary_lines(result: DemoResult) -> list[str]:
    """Return the lines printed at the end: candidates, decision, spend and file locations."""
    decision = result.decision
    candidates = decision["candidates"]
    lines = [
        "",
        "Pareto demo: the models below are simulated, not real LLMs.",
        "",
        f"Candidates of policy {result.policy} (evaluation run {decision['run_id']}, "
        f"{max((row['cases'] for row in candidates), default=0)} cases, deterministic checks):",
        *("  " + line for line in candidate_table(candidates)),
        "",
        f"Decision: {decision['previous_model']} -> {decision['chosen_model']} "
        f"({'applied' if decision['applied'] else 'not applied'}, mode {decision['mode']})",
        f"Reason: {decision['reason']}",
        "",
        *_spend_lines(result.before, result.after),
        f"Saved per request: {result.saved_share:.0%}.",
        f"Projected savings at the demo's rate of {result.requests_per_second:.1f} "
        f"requests/s: ${result.monthly_savings_usd:,.2f} per 30 days.",
    ]
    if result.failed_requests:
        lines.append(f"Failed requests: {result.failed_requests} (see the gateway log).")
    lines += [
        "",
        f"Report: {result.report}",
        f"Database: {result.database_url}",
        f"Gateway log: {result.gateway_log}",
    ]
    return lines


def _spend_lines(before: PhaseSpend, after: PhaseSpend) -> list[str]:
    rows = [("traffic", "requests", "total", "per request", "served by")]
    for label, phase in (("before the switch", before), ("after the switch", after)):
        served = ", ".join(f"{model} {count}" for model, count in sorted(phase.served.items()))
        rows.append(
            (
                label,
                str(phase.requests),
                f"${phase.total_usd:.4f}",
                f"${phase.per_request_usd:.6f}",
                served or "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
