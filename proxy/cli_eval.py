"""`pareto eval`: evaluate a policy's candidates on its cases, and show a run's results.

`eval run` calls the models through the gateway's own forwarding code (same deployments,
retries, fallbacks and prices as client traffic). It shows a progress bar on stderr when
stderr is a terminal, and prints the run's table on stdout at the end. A run that was stopped
(Ctrl-C, a crash, kill -9) is continued by the next `eval run` of the same policy.

Exit status:

- 0 when the run completed or stopped at its budget, or when the report was shown.
- 1 when the database failed. An unexpected error marks the run failed and is raised.
- 2 for a usage or configuration error: an invalid configuration or number, an unknown
  policy, model or run, or a policy without cases.
- 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from evaluator import run_store
from evaluator.report import RunReport, format_report, load_report, report_to_json
from evaluator.run_errors import EvaluationError, RunNotFoundError, UnknownPolicyError
from evaluator.runner import RunSummary
from proxy.cli import load_or_report
from proxy.config import LoadedConfig
from proxy.db import make_engine
from proxy.eval_lock import EvaluationLock
from proxy.evaluation import EvaluationOutcome, evaluate_and_decide
from proxy.logs import SecretFilter
from proxy.scheduler import acquire

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from sqlalchemy.engine import Engine

    from proxy.deployments import DeploymentGroups

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """An invalid command-line value. The message is the sentence to print."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `eval` command with its `run` and `show` subcommands to the `pareto` parser."""
    evaluation = commands.add_parser("eval", help="evaluate a policy's candidates on its cases")
    evaluation.set_defaults(handler=lambda _args: _print_help(evaluation))
    subcommands = evaluation.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    run = subcommands.add_parser(
        "run", help="call the candidates on the policy's cases, judge and price the outputs"
    )
    run.add_argument("--config", required=True, help="path of the YAML configuration file")
    run.add_argument("--policy", required=True, help="name of the policy to evaluate")
    run.add_argument(
        "--models",
        help="comma-separated candidates to evaluate (default: every candidate of the policy)",
    )
    run.add_argument("--limit", help="evaluate only the first N cases by id")
    run.add_argument(
        "--budget-usd",
        help="maximum spend of this run in USD, judge calls included "
        "(default: evaluation.budget_usd)",
    )
    run.add_argument(
        "--no-progress", action="store_true", help="do not draw the progress bar on stderr"
    )
    run.set_defaults(handler=_run)

    show = subcommands.add_parser("show", help="print the per-model table of an evaluation run")
    show.add_argument("--config", required=True, help="path of the YAML configuration file")
    show.add_argument("run", nargs="?", help="run id (default: the newest run)")
    show.add_argument("--policy", help="show the newest run of this policy")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(handler=_show)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


# ---------------------------------------------------------------------------
# eval run
# ---------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    try:
        models = _parse_models(args.models)
        limit = _parse_limit(args.limit)
        budget = _parse_budget(args.budget_usd)
    except _UsageError as exc:
        return _error(str(exc), EXIT_USAGE)
    loaded = load_or_report(args.config)
    if loaded is None:
        return EXIT_USAGE

    # The gateway's forwarding stack (FastAPI, aiohttp) and rich are imported only here, so
    # that the other `pareto` commands do not pay for importing them.
    from rich.console import Console

    from proxy.app import build_state

    console = Console(stderr=True)
    state = build_state(loaded)
    try:
        with _log_to(console, state.secrets, _shows_progress(args)):
            outcome = asyncio.run(
                _evaluate(loaded, state.groups, args, models, limit, budget, console)
            )
    except _Busy as exc:
        return _error(str(exc), EXIT_FAILED)
    except EvaluationError as exc:
        return _error(str(exc), EXIT_USAGE)
    except SQLAlchemyError as exc:
        return _error(f"the database failed: {_first_line(exc)}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _error(
            f"interrupted. The next `pareto eval run --policy {args.policy}` continues this run.",
            EXIT_INTERRUPTED,
        )

    summary = outcome.summary
    if summary.resumed and (models or limit or budget):
        print(
            f"note: run {summary.run_id} was continued with the models, cases and budget it "
            "started with, so --models, --limit and --budget-usd were not used.",
            file=sys.stderr,
        )
    print(format_report(summary.report))
    print(_invocation_line(summary))
    print(_decision_line(args.policy, outcome))
    return EXIT_OK


class _Busy(Exception):
    """Another process holds the policy's evaluation lock."""


def _decision_line(policy: str, outcome: EvaluationOutcome) -> str:
    decision = outcome.decision
    if decision is None:
        return f"no routing decision: {outcome.no_decision_reason}"
    if decision.changes_route and decision.apply:
        action = f"route {policy}: {decision.previous_model} -> {decision.chosen_model}"
    elif decision.changes_route:
        action = f"recommended for {policy}: {decision.chosen_model} (not applied, {decision.mode})"
    else:
        action = f"route {policy} stays on {decision.chosen_model}"
    return f"decision {outcome.decision_id}: {action}. {decision.reason}"


async def _evaluate(
    loaded: LoadedConfig,
    groups: DeploymentGroups,
    args: argparse.Namespace,
    models: list[str] | None,
    limit: int | None,
    budget: float | None,
    console: Console,
) -> EvaluationOutcome:
    from proxy.forward import Forwarder
    from proxy.model_caller import GatewayModelCaller
    from proxy.upstream import new_session

    engine = make_engine(loaded.database_url)
    lock = EvaluationLock(engine, args.policy)
    session = new_session()
    try:
        if not await acquire(lock):
            raise _Busy(
                f"another process is evaluating policy '{args.policy}' now; "
                "run this again when it finishes."
            )
        forwarder = Forwarder(loaded.config, groups, session)
        with _progress_bar(console, _shows_progress(args)) as progress:
            return await evaluate_and_decide(
                engine,
                loaded,
                GatewayModelCaller(forwarder),
                args.policy,
                trigger="cli",
                models=models,
                limit=limit,
                budget_usd=budget,
                progress=progress,
            )
    finally:
        await asyncio.to_thread(lock.release)
        await session.close()
        engine.dispose()


def _shows_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _parse_models(text: str | None) -> list[str] | None:
    if text is None:
        return None
    models = [name.strip() for name in text.split(",") if name.strip()]
    if not models:
        raise _UsageError(f"--models must name at least one candidate, got {text!r}.")
    return models


def _parse_limit(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise _UsageError(f"--limit must be a whole number of cases of at least 1, got {text!r}.")
    return limit


def _parse_budget(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        budget = float(text)
    except ValueError:
        budget = math.nan
    if not (math.isfinite(budget) and budget > 0):
        raise _UsageError(f"--budget-usd must be a positive number of USD, got {text!r}.")
    return budget


def _invocation_line(summary: RunSummary) -> str:
    action = "continued a stopped run" if summary.resumed else "started a new run"
    line = (
        f"this invocation {action}: {summary.calls} model calls, "
        f"{summary.judge_calls} judge calls, {summary.reused} results reused"
    )
    if summary.interrupted:
        line += f", {summary.interrupted} calls of the stopped process marked interrupted"
    return line


class _RichProgress:
    """Shows the runner's progress as one rich progress bar per phase."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def start(self, phase: str, total: int) -> None:
        self._tasks[phase] = self._progress.add_task(phase, total=total)

    def advance(self, phase: str) -> None:
        self._progress.advance(self._tasks[phase])


@contextmanager
def _progress_bar(console: Console, enabled: bool) -> Iterator[_RichProgress | None]:
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=console, transient=False) as progress:
        yield _RichProgress(progress)


@contextmanager
def _log_to(console: Console, secrets: list[str], rich_output: bool) -> Iterator[None]:
    """Send warnings to stderr for the command's duration, above the progress bar if shown."""
    handler: logging.Handler
    if rich_output:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


# ---------------------------------------------------------------------------
# eval show
# ---------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    try:
        run_id = _parse_run_id(args.run)
    except _UsageError as exc:
        return _error(str(exc), EXIT_USAGE)
    loaded = load_or_report(args.config)
    if loaded is None:
        return EXIT_USAGE
    policies = loaded.config.policies
    if args.policy is not None and args.policy not in policies:
        return _error(str(UnknownPolicyError(args.policy, list(policies))), EXIT_USAGE)

    try:
        engine = make_engine(loaded.database_url)
        try:
            report = _find_report(engine, run_id, args.policy)
        finally:
            engine.dispose()
    except RunNotFoundError as exc:
        return _error(str(exc), EXIT_USAGE)
    except SQLAlchemyError as exc:
        return _error(f"the database failed: {_first_line(exc)}", EXIT_FAILED)

    if args.json:
        print(json.dumps(report_to_json(report), indent=2))
    else:
        print(format_report(report))
    return EXIT_OK


def _find_report(engine: Engine, run_id: int | None, policy: str | None) -> RunReport:
    if run_id is None:
        run = run_store.latest_run(engine, policy)
        if run is None or run.id is None:
            owner = f"policy {policy}" if policy else "any policy"
            raise RunNotFoundError(
                f"there is no evaluation run of {owner} yet. Start one with `pareto eval run`."
            )
        run_id = run.id
    report = load_report(engine, run_id)
    if policy is not None and report.policy != policy:
        raise RunNotFoundError(
            f"evaluation run {run_id} belongs to policy {report.policy}, not {policy}."
        )
    return report


def _parse_run_id(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise _UsageError(f"the run id must be a positive whole number, got {text!r}.")
    return int(text)


def _error(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
