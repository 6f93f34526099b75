"""`pareto simulate`: serve simulated OpenAI-compatible models until SIGINT or SIGTERM.

Exit status:

- 0 after SIGINT or SIGTERM.
- 1 when the address cannot be bound (the port is taken, the host is not local).
- 2 for a usage or file error: neither --config nor --replay, --profile without --replay, or an
  invalid persona config, dataset, replay file or profile file (each problem is printed with
  its file, line or key path and value).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.simulator.catalog import Catalog

# The simulator is imported when the command runs, so that other commands start no slower.

EXIT_OK = 0
EXIT_CANNOT_LISTEN = 1
EXIT_USAGE = 2
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `simulate` command to the `pareto` parser."""
    simulate = commands.add_parser(
        "simulate",
        help="serve simulated OpenAI-compatible models (personas or recorded conversations)",
        description="Serve simulated models on an OpenAI-compatible API: personas that answer "
        "a customer-support dataset with a set share of flawed replies (--config), and models "
        "that replay recorded conversations (--replay). See docs/simulator.md.",
    )
    simulate.add_argument("--config", type=Path, help="persona config (YAML)")
    simulate.add_argument(
        "--replay",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="replay file of recorded conversations (JSON Lines); may be given several times",
    )
    simulate.add_argument(
        "--profile",
        type=Path,
        help="latency profiles of replayed models (YAML: model: {ttft_ms, tokens_per_second})",
    )
    simulate.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    simulate.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on, 0 for a free one (default {DEFAULT_PORT})",
    )
    simulate.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="divide every delay by this factor, e.g. 10 for fast tests (default 1)",
    )
    simulate.add_argument(
        "--seed", type=int, default=0, help="seed of the latency jitter (default 0)"
    )
    simulate.set_defaults(handler=_simulate)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number greater than 0, got {text}")
    return value


def _simulate(args: argparse.Namespace) -> int:
    if args.config is None and not args.replay:
        print(
            "error: pareto simulate needs models: give --config FILE (personas), "
            "--replay FILE (recorded conversations), or both",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.profile is not None and not args.replay:
        print(
            "error: --profile sets the latency of replayed models; give --replay FILE too",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from proxy.simulator.catalog import build_catalog
    from proxy.simulator.errors import SimulatorFileError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        catalog = build_catalog(args.config, args.replay, args.profile, args.seed)
    except SimulatorFileError as exc:
        print("error: cannot start the simulator:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_serve(catalog, args))


async def _serve(catalog: Catalog, args: argparse.Namespace) -> int:
    from proxy.simulator.runner import SimulatorServer

    server = SimulatorServer(catalog, host=args.host, port=args.port, speed=args.speed)
    try:
        await server.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    speed = f" at {args.speed:g}x speed" if args.speed != 1 else ""
    count = len(catalog)
    print(
        f"Simulating {count} model{'s' if count != 1 else ''}{speed} at {server.base_url}",
        flush=True,
    )
    width = max(len(name) for name in catalog.names())
    for model in catalog:
        print(f"  {model.name:<{width}}  {model.describe()}", flush=True)
    print("Stop with Ctrl-C (SIGINT) or SIGTERM.", flush=True)
    try:
        await stop.wait()
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
        await server.stop()
    print("Simulator stopped.", flush=True)
    return EXIT_OK
