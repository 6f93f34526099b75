"""Replay real GPT-4 and Mixtral 8x7B answers through Pareto's loop and report its decisions.

Two policies, each with both models as candidates and GPT-4 as the reference:

- `math`: GSM8K problems, judged by the `number` check against the reference answers,
  `min_quality_ratio` 0.95. Mixtral answers 63% correctly and GPT-4 85%, so GPT-4 should stay.
- `chat`: MT-Bench conversations, judged by GPT-4's recorded grades, `min_quality_ratio`
  0.85. Mixtral's mean grade is about 90% of GPT-4's, so the route should switch to Mixtral.

The recorded answers are read from the shared data folder at run time (see
`benchmarks.routellm_data`) and served by `pareto simulate`'s replay mode in this process.
`pareto serve` runs as a child process on a SQLite file in the work folder. See
`benchmarks.recorded_loop` for the rounds, and `benchmarks.recorded_figures` for every
figure's definition.

    .venv/bin/python -m benchmarks.recorded_models [--speed 10] [--rounds 8] [--seed 0]
                                                   [--out report.md]

Prints the report (Markdown) and exits 0, or 1 when a step fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import yaml

from benchmarks.recorded_figures import (
    Recorded,
    chat_sensitivity,
    decision_timeline,
    sweep,
    traffic_figures,
)
from benchmarks.recorded_loop import (
    LATENCY_PROFILES,
    POLICIES,
    LoopError,
    LoopResult,
    LoopSettings,
    RoundOutcome,
    gateway_config,
    run_loop,
)
from benchmarks.recorded_report import PolicyReport, format_report, setup_text
from benchmarks.routellm_data import (
    ChatConversation,
    DataError,
    MathProblem,
    data_dir,
    load_chat,
    load_math,
    write_replay,
)
from proxy.config import load_config
from proxy.db import make_engine
from proxy.demo.gateway_process import GatewayProcess, GatewayStartError
from proxy.sampling import sampling_policies
from proxy.simulator import ThreadedSimulator, build_catalog

DEFAULT_SPEED = 10.0
SENSITIVITY_ORDERS = 20


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        problems = load_math(data_dir())[: args.problems]
        conversations = load_chat(data_dir())[: args.conversations]
    except DataError as exc:
        print(f"error: {exc} (set PARETO_SHARED_DATA to the shared data folder)", file=sys.stderr)
        return 1
    settings = LoopSettings(
        rounds=args.rounds,
        concurrency=args.concurrency,
        seed=args.seed,
        confidence=args.confidence,
        chat_sample_rate=args.chat_sample_rate,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pareto-recorded-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        loop, database_url = _run(problems, conversations, settings, args.speed, workdir)
    except (LoopError, GatewayStartError) as exc:
        print(f"error: {exc} (work folder: {workdir})", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started

    report = build_report(loop, database_url, problems, conversations, args.speed, args.orders)
    footer = (
        f"Ran {elapsed:.0f} s on {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d}; work folder {workdir}."
    )
    text = report + "\n" + footer + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Replay recorded GPT-4 and Mixtral answers through the gateway and report "
        "the routing decisions, savings and quality kept."
    )
    parser.add_argument(
        "--problems", type=int, default=None, help="use the first N GSM8K problems (default all)"
    )
    parser.add_argument(
        "--conversations",
        type=int,
        default=None,
        help="use the first N MT-Bench conversations (default all)",
    )
    parser.add_argument("--rounds", type=int, default=8, help="rounds of traffic (default 8)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight at once (default 8)"
    )
    parser.add_argument("--seed", type=int, default=0, help="traffic order seed (default 0)")
    parser.add_argument(
        "--confidence",
        type=float,
        default=LoopSettings.confidence,
        help=f"both policies' confidence level (default {LoopSettings.confidence:g})",
    )
    parser.add_argument(
        "--chat-sample-rate",
        type=float,
        default=LoopSettings.chat_sample_rate,
        help=f"the chat policy's sample_rate (default {LoopSettings.chat_sample_rate:g})",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"divide the simulated latency by this factor (default {DEFAULT_SPEED:g})",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=SENSITIVITY_ORDERS,
        help="traffic orders of the offline sensitivity check, 0 to skip it "
        f"(default {SENSITIVITY_ORDERS})",
    )
    parser.add_argument("--workdir", type=Path, help="folder for the files (default: a new one)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    return parser.parse_args(argv)


def _run(
    problems: list[MathProblem],
    conversations: list[ChatConversation],
    settings: LoopSettings,
    speed: float,
    workdir: Path,
) -> tuple[LoopResult, str]:
    """Start the simulator and the gateway, run the loop, stop both; return the loop's result."""
    replay = workdir / "replay.jsonl"
    write_replay(replay, problems, conversations)
    profile = workdir / "latency.yaml"
    profile.write_text(yaml.safe_dump(LATENCY_PROFILES), encoding="utf-8")
    catalog = build_catalog(replay=[replay], profile=profile)
    database_url = f"sqlite:///{workdir / 'pareto.db'}"
    master_key = "sk-recorded-" + secrets.token_urlsafe(16)

    with ThreadedSimulator(catalog, speed=speed) as simulator:
        config_path = workdir / "gateway.yaml"
        config = gateway_config(simulator.base_url, database_url, master_key, settings)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        loaded = load_config(config_path, {})
        redactors = {
            name: policy.redactor for name, policy in sampling_policies(loaded.config).items()
        }
        engine = make_engine(database_url)
        gateway = GatewayProcess(
            config_path, workdir / "gateway.log", {"DATABASE_URL": database_url}
        )
        try:
            with gateway:
                loop = run_loop(
                    gateway.base_url,
                    master_key,
                    engine,
                    redactors,
                    problems,
                    conversations,
                    settings,
                    on_round=_print_round,
                )
        finally:
            engine.dispose()
    return loop, database_url


def _print_round(outcomes: list[RoundOutcome]) -> None:
    for outcome in outcomes:
        print(
            f"round {outcome.round} {outcome.policy}: {outcome.requests} requests, "
            f"{outcome.run_cases} cases, {outcome.calls} calls, ${outcome.spent_usd:.4f}, "
            f"route {outcome.decision['chosen_model']}",
            file=sys.stderr,
            flush=True,
        )


def build_report(
    loop: LoopResult,
    database_url: str,
    problems: list[MathProblem],
    conversations: list[ChatConversation],
    speed: float,
    orders: int,
) -> str:
    """Compute every figure from the loop's result and the gateway's database, as Markdown."""
    recorded = Recorded.build(problems, conversations)
    engine = make_engine(database_url)
    try:
        reports = []
        for policy in POLICIES:
            timeline = decision_timeline(loop, policy)
            traffic = traffic_figures(loop, recorded, policy)
            assert traffic is not None  # every policy got requests in every round
            after = None
            if timeline.decided_round is not None:
                after = traffic_figures(loop, recorded, policy, timeline.decided_round)
            reports.append(
                PolicyReport(
                    policy, traffic, after, timeline, sweep(engine, loop, recorded, policy)
                )
            )
    finally:
        engine.dispose()
    sensitivity = (
        chat_sensitivity(conversations, recorded, loop.settings, orders=orders) if orders else []
    )
    setup = setup_text(
        loop, len(problems), len(conversations), speed, "`pareto serve` (a child process)"
    )
    return format_report(loop, reports, sensitivity, setup)


if __name__ == "__main__":
    sys.exit(main())
