"""The `pareto policies`, `pareto decisions` and `pareto route` commands.

They read and write the database named by the configuration file (or `DATABASE_URL`), not a
running gateway: gateways pick up a `pareto route` change at their next route sync.
Every error prints one sentence to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from proxy.candidate_table import candidate_table
from proxy.config import ConfigError, LoadedConfig, load_config
from proxy.db import make_engine, normalize_url
from proxy.decisions import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    DecisionError,
    describe_policies,
    latest_applied,
    list_decisions,
    record_pin,
    record_release,
)
from proxy.policy_config import PolicyConfig
from proxy.route_sync import DEFAULT_INTERVAL_SECONDS, INTERVAL_ENV, resolve_routes

EXIT_ERROR = 2

SubParsers = Any  # argparse's _SubParsersAction is private


class CommandError(Exception):
    """A command cannot run. The message is the one sentence shown to the user."""


def register(commands: SubParsers) -> None:
    """Add the policies, decisions and route commands to the `pareto` parser."""
    policies = commands.add_parser(
        "policies", help="show each policy's route, last decision and savings to date"
    )
    _add_config(policies)
    policies.add_argument("--json", action="store_true", help="print JSON instead of a table")
    policies.set_defaults(handler=_run(_policies))

    decisions = commands.add_parser(
        "decisions", help="show stored routing decisions with their candidate tables"
    )
    _add_config(decisions)
    decisions.add_argument("--policy", help="show only this policy's decisions")
    decisions.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIST_LIMIT,
        help=f"number of decisions, newest first, from 1 to {MAX_LIST_LIMIT} "
        f"(default {DEFAULT_LIST_LIMIT})",
    )
    decisions.add_argument("--json", action="store_true", help="print JSON instead of tables")
    decisions.set_defaults(handler=_run(_decisions))

    route = commands.add_parser(
        "route", help="pin a policy to a model by hand, or release the pin with --auto"
    )
    _add_config(route)
    route.add_argument("--policy", required=True, help="name of the policy to change")
    target = route.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="candidate model to pin the policy to")
    target.add_argument(
        "--auto",
        action="store_true",
        help="release the operator pin: the policy follows its evaluations again",
    )
    route.set_defaults(handler=_run(_route))


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="path of the YAML configuration file")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(
            f"invalid limit {text!r}: expected a whole number from 1 to {MAX_LIST_LIMIT}"
        )
    return value


Command = Callable[[argparse.Namespace, LoadedConfig, Engine], int]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap a command with config loading, the database engine and error reporting."""

    def handler(args: argparse.Namespace) -> int:
        try:
            loaded = _load(args.config)
            with _open_database(loaded.database_url) as engine:
                return command(args, loaded, engine)
        except (CommandError, DecisionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR

    return handler


def _load(path: str) -> LoadedConfig:
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        raise CommandError(f"invalid configuration {path}: {'; '.join(exc.problems)}") from exc
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


@contextmanager
def _open_database(url: str) -> Iterator[Engine]:
    display_url = make_url(normalize_url(url)).render_as_string(hide_password=True)
    try:
        engine = make_engine(url)
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot open the database {display_url}: {_first_line(exc)}") from exc
    try:
        yield engine
    except SQLAlchemyError as exc:
        raise CommandError(f"the database {display_url} failed: {_first_line(exc)}") from exc
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def _policy(loaded: LoadedConfig, name: str) -> PolicyConfig:
    policies = loaded.config.policies
    if name not in policies:
        known = ", ".join(policies) or "none"
        raise CommandError(f"unknown policy {name!r}: the configured policies are {known}.")
    return policies[name]


# pareto policies


def _policies(args: argparse.Namespace, loaded: LoadedConfig, engine: Engine) -> int:
    configs = dict(loaded.config.policies)
    current = resolve_routes(configs, latest_applied(engine))
    described = describe_policies(engine, configs, current)
    if args.json:
        print(json.dumps({"object": "list", "data": described}, indent=2))
        return 0
    if not described:
        print("No policies are configured.")
        return 0
    for index, item in enumerate(described):
        if index:
            print()
        _print_policy(item)
    return 0


def _print_policy(item: dict[str, Any]) -> None:
    decision = "default" if item["decision_id"] is None else f"decision {item['decision_id']}"
    pinned = f", pinned by {item['pinned_by']}" if item["pinned_by"] else ""
    print(f"{item['policy']}: routes to {item['model']} ({decision})")
    print(f"  mode: {item['mode']}{pinned}")
    print(f"  reference: {item['reference']}")
    print(f"  candidates: {', '.join(item['candidates'])}")

    savings = item["savings"]
    share = "" if savings["saved_share"] is None else f" ({savings['saved_share']:.0%})"
    print(
        f"  savings to date: {_usd(savings['saved_usd'])}{share} over {savings['requests']} "
        f"requests: spent {_usd(savings['spend_usd'])}, the reference model would have cost "
        f"{_usd(savings['reference_usd'])}"
    )
    print(f"    method: {savings['method']}")

    last = item["last_decision"]
    if last is None:
        print("  last decision: none yet")
        return
    print("  last decision:")
    for line in _decision_lines(last):
        print(f"    {line}")


# pareto decisions


def _decisions(args: argparse.Namespace, loaded: LoadedConfig, engine: Engine) -> int:
    if args.policy is not None:
        _policy(loaded, args.policy)
    rows = list_decisions(engine, args.policy, args.limit)
    if args.json:
        print(json.dumps({"object": "list", "data": [row.to_dict() for row in rows]}, indent=2))
        return 0
    if not rows:
        print("No decisions are stored yet.")
        return 0
    for index, row in enumerate(rows):
        if index:
            print()
        for line in _decision_lines(row.to_dict()):
            print(line)
    return 0


def _decision_lines(decision: dict[str, Any]) -> list[str]:
    applied = "applied" if decision["applied"] else "not applied"
    previous = decision["previous_model"] or "(none)"
    lines = [
        f"decision {decision['id']} of {decision['policy']} at {decision['created_at']}: "
        f"{previous} -> {decision['chosen_model']}, mode {decision['mode']}, "
        f"{decision['source']}, {applied}",
        f"reason: {decision['reason']}",
    ]
    if decision["candidates"]:
        lines.extend(candidate_table(decision["candidates"]))
    return lines


def _usd(value: float) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):.4f}"


# pareto route


def _route(args: argparse.Namespace, loaded: LoadedConfig, engine: Engine) -> int:
    config = _policy(loaded, args.policy)
    sync_note = (
        f"Running gateways switch within one route sync interval ({INTERVAL_ENV}, "
        f"{DEFAULT_INTERVAL_SECONDS:g} s by default)."
    )
    if args.auto:
        decision_id = record_release(engine, args.policy, config)
        route = resolve_routes({args.policy: config}, latest_applied(engine))[args.policy]
        print(
            f"{args.policy}: pin released, the policy routes to {route.model} "
            f"(decision {decision_id}). {sync_note}"
        )
        return 0

    model: str = args.model
    if model not in config.candidates:
        raise CommandError(
            f"model {model!r} is not a candidate of policy {args.policy!r}: choose one of "
            f"{', '.join(config.candidates)}."
        )
    settings = config.routing()
    if settings.pin is not None:
        raise CommandError(
            f"policy {args.policy!r} is pinned to {settings.pin} in the configuration file, "
            "which wins over a pin set here. Change its pin there instead."
        )
    previous = resolve_routes({args.policy: config}, latest_applied(engine))[args.policy]
    decision_id = record_pin(engine, args.policy, model, previous.model)
    print(f"{args.policy}: pinned to {model} (decision {decision_id}). {sync_note}")
    return 0
