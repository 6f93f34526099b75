"""The `pareto` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from proxy.config import ConfigError, LoadedConfig, load_config

EXIT_CONFIG_ERROR = 2
CONFIG_ENV = "PARETO_CONFIG"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_CONFIG_ERROR
    result: int = handler(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pareto",
        description="OpenAI-compatible LLM gateway that routes each workload to the cheapest "
        "model that is good enough on its own traffic.",
    )
    parser.add_argument("--version", action="version", version=f"pareto {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="path of the YAML configuration file")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=4000, help="TCP port to listen on (default 4000)"
    )
    serve.add_argument(
        "--workers", type=_positive, default=1, help="number of worker processes (default 1)"
    )
    serve.add_argument("--log-level", default="info", help="debug, info, warning or error")
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds to let in-flight requests finish after SIGTERM (default 30)",
    )
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config", help="path of the YAML configuration file")
    check.set_defaults(handler=_check_config)

    from proxy.cli_policies import register

    register(commands)

    from proxy import cli_cases

    cli_cases.register(commands)

    from proxy import cli_eval

    cli_eval.register(commands)

    from proxy import cli_prune

    cli_prune.register(commands)

    from proxy import cli_simulate

    cli_simulate.register(commands)

    from proxy import cli_report

    cli_report.register(commands)

    from proxy import cli_demo

    cli_demo.register(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pareto-gateway")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def load_or_report(path: str) -> LoadedConfig | None:
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        print(f"error: invalid configuration {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def _check_config(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config)
    if loaded is None:
        return EXIT_CONFIG_ERROR
    from proxy.deployments import build_groups

    warnings: list[str] = []
    groups = build_groups(loaded.config, warnings)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    models, deployments = len(groups.names()), len(groups.all())
    policies = len(loaded.config.policies)
    print(
        f"{args.config}: valid; {_count(models, 'model')}, {_count(deployments, 'deployment')}, "
        f"{_count(policies, 'policy', 'policies')}"
    )
    for name in groups.names():
        targets = ", ".join(d.litellm_model for d in groups.deployments(name))
        print(f"  {name} -> {targets}")
    for name, policy in loaded.config.policies.items():
        candidates = ", ".join(policy.candidates)
        print(f"  policy {name}: reference {policy.reference}; candidates {candidates}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config)
    if loaded is None:
        return EXIT_CONFIG_ERROR
    if loaded.unset_required:
        print(
            f"error: {args.config} needs environment variables that are not set:", file=sys.stderr
        )
        for problem in loaded.unset_required:
            print(f"  {problem}", file=sys.stderr)
        print(
            "  Set them, or remove the keys (no master_key: the gateway accepts any caller; "
            "no api_base: the provider's default address).",
            file=sys.stderr,
        )
        return EXIT_CONFIG_ERROR

    import uvicorn

    from proxy import logs
    from proxy.app import build_state, create_app

    options = {
        "host": args.host,
        "port": args.port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "proxy_headers": False,
        "log_config": None,
        "timeout_graceful_shutdown": args.graceful_timeout,
    }
    if args.workers > 1:
        # Worker processes import the app by name and read the configuration path from here.
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
        os.environ["PARETO_LOG_LEVEL"] = args.log_level
        _exit_cleanly_after_signals()
        uvicorn.run("proxy.server:app", workers=args.workers, factory=True, **options)
        return 0

    state = build_state(loaded)
    logs.configure(args.log_level, state.secrets)
    _exit_cleanly_after_signals()
    uvicorn.run(create_app(loaded, state), **options)
    return 0


def _exit_cleanly_after_signals() -> None:
    # uvicorn re-raises SIGTERM or SIGINT after its graceful shutdown, with the handlers that
    # were installed before it started. A no-op handler here lets `serve` then exit with 0.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: None)


if __name__ == "__main__":
    sys.exit(main())
