"""The recorded-models benchmark's report as Markdown tables (see `recorded_figures`)."""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from benchmarks.recorded_figures import (
    Sensitivity,
    SweepRow,
    Timeline,
    TrafficFigures,
)
from benchmarks.recorded_loop import CHAT, MATH, LoopResult, policy_sections
from benchmarks.routellm_data import GPT4, MIXTRAL

QUALITY_UNITS = {MATH: "share of correct answers", CHAT: "mean GPT-4 grade, 1-10"}
WORKLOADS = {MATH: "GSM8K", CHAT: "MT-Bench"}
SHORT_NAMES = {GPT4: "GPT-4", MIXTRAL: "Mixtral"}

# Published figures of the RouteLLM paper (Ong et al., "RouteLLM: Learning to Route LLMs with
# Preference Data", arXiv 2406.18665) for GPT-4 (gpt-4-1106-preview) and Mixtral 8x7B: the
# share of calls sent to GPT-4 that reaches PGR 50%.
# NOTE: quoted figures, not checked here against the paper's tables.
PUBLISHED = (
    ("MT-Bench", "random routing", 0.49),
    ("MT-Bench", "best learned router", 0.134),
    ("GSM8K", "random routing", 0.50),
    ("GSM8K", "best learned router", 0.336),
)


@dataclass(frozen=True)
class PolicyReport:
    """Everything reported about one policy."""

    policy: str
    traffic: TrafficFigures
    after: TrafficFigures | None  # the requests sent after the decided round
    timeline: Timeline
    sweep: list[SweepRow]


def percent(share: float | None, places: int = 1) -> str:
    return "n/a" if share is None else f"{share * 100:.{places}f}%"


def usd(amount: float) -> str:
    return f"${amount:.6f}" if amount < 0.01 else f"${amount:.4f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int]) -> str:
    """Format a Markdown table whose columns at the indexes in `numeric` are right-aligned."""
    aligns = ["---:" if index in numeric else "---" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_report(
    loop: LoopResult,
    reports: Sequence[PolicyReport],
    sensitivity: Sequence[Sensitivity],
    setup: str,
) -> str:
    """Format the whole report: setup, decisions, quality, cost, time to decision, sweep."""
    parts = [
        setup,
        "### Decisions\n\n" + _decisions(loop, reports),
        "### Final evaluation run\n\n" + _final_run(loop),
        "### Served traffic\n\n" + _traffic(reports),
        "### Time to decision\n\n" + _timelines(reports),
        "### Rounds\n\n" + _rounds(loop),
        "### Sweep of min_quality_ratio\n\n" + _sweeps(reports),
        "### Published routing results on the same model pair\n\n" + _published(reports),
    ]
    if sensitivity:
        parts.append("### Sensitivity of the chat decision\n\n" + _sensitivity(sensitivity))
    return wrap_prose("\n\n".join(parts)) + "\n"


def wrap_prose(text: str, width: int = 99) -> str:
    """Wrap the paragraphs of Markdown `text` at `width`, leaving tables and headings alone."""
    blocks = text.split("\n\n")
    wrapped = [block if block.startswith(("|", "#")) else _fill(block, width) for block in blocks]
    return "\n\n".join(wrapped)


def _decisions(loop: LoopResult, reports: Sequence[PolicyReport]) -> str:
    rows = []
    for report in reports:
        final = loop.outcomes(report.policy)[-1].decision
        rows.append([f"`{report.policy}`", f"`{final['chosen_model']}`", final["reason"]])
    return table(["policy", "model at the end", "reason of the last decision"], rows, ())


def _final_run(loop: LoopResult) -> str:
    rows = []
    for policy in (MATH, CHAT):
        final = loop.outcomes(policy)[-1]
        confidence = final.decision["settings"]["confidence"]
        for row in final.decision["candidates"]:
            rows.append(
                [
                    f"`{policy}`",
                    f"`{row['model']}`",
                    f"{row['quality_mean']:.2f}",
                    f"{row['quality_low']:.2f} - {row['quality_high']:.2f}",
                    str(row["cases"]),
                    usd(row["cost_per_request_usd"]),
                    "yes" if row["eligible"] else "no: " + "; ".join(row["ineligible_reasons"]),
                ]
            )
    header = [
        "policy",
        "model",
        "score",
        f"{confidence * 100:.0f}% interval",
        "judged cases",
        "cost per request",
        "eligible",
    ]
    notes = (
        "Scores are the judge's 1-10 scale: the `number` check gives 10 or 1, the recorded "
        "judge GPT-4's grade. Cost per request is what the evaluation's candidate calls cost."
    )
    return table(header, rows, range(2, 6)) + "\n\n" + notes


def _traffic(reports: Sequence[PolicyReport]) -> str:
    rows = []
    for report in reports:
        decided = report.timeline.decided_round
        spans = [("all", report.traffic)]
        if report.after is not None and decided is not None:
            spans.append((f"after round {decided}", report.after))
        for span, figures in spans:
            rows.append(
                [
                    f"`{report.policy}`",
                    span,
                    str(figures.requests),
                    percent(figures.gpt4_share),
                    usd(figures.cost_per_request_usd),
                    usd(figures.gpt4_cost_per_request_usd),
                    percent(figures.cost_share),
                    f"{figures.quality:.3f} / {figures.gpt4_quality:.3f} / "
                    f"{figures.mixtral_quality:.3f}",
                    percent(figures.quality_kept),
                    percent(figures.pgr, 0),
                ]
            )
    header = [
        "policy",
        "requests",
        "count",
        "GPT-4 share",
        "cost per request",
        "always GPT-4",
        "cost against always GPT-4",
        "quality: served / always GPT-4 / always Mixtral",
        "quality kept",
        "PGR",
    ]
    units = "; ".join(f"`{p}`: {unit}" for p, unit in QUALITY_UNITS.items())
    notes = (
        f"Quality is the recorded quality of the answer each request got ({units}). "
        '"After round N" counts the requests sent after the round whose decision held to the '
        "end (see the next table)."
    )
    return table(header, rows, range(2, 10)) + "\n\n" + notes


def _timelines(reports: Sequence[PolicyReport]) -> str:
    rows = []
    for report in reports:
        line = report.timeline
        rows.append(
            [
                f"`{report.policy}`",
                "none" if line.decided_round is None else str(line.decided_round),
                str(line.requests),
                str(line.sampled_cases),
                str(line.run_cases),
                str(line.calls),
                usd(line.spent_usd),
                f"{line.total_calls}, {usd(line.total_spent_usd)}",
                str(line.route_changes),
                "yes" if line.changed_back else "no",
            ]
        )
    header = [
        "policy",
        "decided after round",
        "requests by then",
        "sampled cases",
        "cases in the run",
        "candidate calls",
        "evaluation spend",
        "all rounds: calls, spend",
        "route changes",
        "changed back",
    ]
    notes = (
        "A decision counts as made in the first round from which every decision chose the "
        "final model with at least `min_cases` judged cases per candidate. Calls and spend add "
        "up every run to that round; results of earlier runs are reused, not called again. "
        "Judge spend is $0: the `number` check and the recorded grades call no model."
    )
    return table(header, rows, range(1, 9)) + "\n\n" + notes


def _rounds(loop: LoopResult) -> str:
    rows = []
    for outcome in loop.rounds:
        decision = outcome.decision
        chosen = SHORT_NAMES.get(decision["chosen_model"], decision["chosen_model"])
        changed = decision["chosen_model"] != decision["previous_model"]
        rows.append(
            [
                str(outcome.round),
                f"`{outcome.policy}`",
                str(outcome.requests),
                str(outcome.run_cases),
                str(outcome.calls),
                usd(outcome.spent_usd),
                chosen + (" (switch)" if changed else ""),
            ]
        )
    header = ["round", "policy", "requests", "cases", "candidate calls", "run spend", "route"]
    return table(header, rows, (0, 2, 3, 4, 5))


def _sweeps(reports: Sequence[PolicyReport]) -> str:
    parts = []
    for report in reports:
        rows = [
            [
                f"{row.ratio:.3f}",
                SHORT_NAMES.get(row.chosen_model, row.chosen_model),
                percent(row.gpt4_share, 0),
                usd(row.cost_per_request_usd),
                percent(row.cost_share),
                percent(row.quality_kept),
                percent(row.pgr, 0),
            ]
            for row in report.sweep
        ]
        header = [
            "min_quality_ratio",
            "decision",
            "GPT-4 share",
            "cost per request",
            "cost against always GPT-4",
            "quality kept",
            "PGR",
        ]
        heading = f"`{report.policy}` ({WORKLOADS[report.policy]}, {report.traffic.requests} "
        heading += "requests):"
        parts.append(heading + "\n\n" + table(header, rows, (0, 2, 3, 4, 5, 6)))
    notes = (
        "Each row re-decides offline with `policies.decide` from the final run's measurements, "
        "starting from GPT-4 as the loop does, and shows the figures of routing every request "
        "of the workload to the chosen model. The cases and spend behind each row are those of "
        "the final run."
    )
    return "\n\n".join(parts) + "\n\n" + notes


def _published(reports: Sequence[PolicyReport]) -> str:
    rows = []
    by_workload = {WORKLOADS[report.policy]: report for report in reports}
    for workload in ("MT-Bench", "GSM8K"):
        report = by_workload.get(workload)
        if report is not None:
            figures = report.after or report.traffic
            span = "after the decision" if report.after is not None else "all requests"
            rows.append(
                [
                    workload,
                    f"Pareto `{report.policy}` policy, {span} (measured)",
                    percent(figures.gpt4_share),
                    percent(figures.pgr, 0),
                ]
            )
        for bench, name, calls in PUBLISHED:
            if bench == workload:
                rows.append([workload, f"RouteLLM {name} (published)", percent(calls), "50%"])
    notes = (
        "Both use the paper's definitions: the share of calls sent to GPT-4, and PGR = "
        "(quality - Mixtral's) / (GPT-4's - Mixtral's). The published rows are quoted from the "
        "RouteLLM paper (Ong et al., arXiv 2406.18665), not measured here. A Pareto policy "
        "routes a whole workload to one model, so on one benchmark it reaches only the two "
        "ends of the curve (0% or 100% of calls, PGR 0% or 100%). A per-prompt router such "
        "as RouteLLM's reaches the points between them."
    )
    return table(["benchmark", "routing", "GPT-4 calls", "PGR"], rows, (2, 3)) + "\n\n" + notes


def _sensitivity(results: Sequence[Sensitivity]) -> str:
    rows = [
        [
            f"{item.sample_rate:g}",
            f"{item.confidence:.2f}",
            f"{item.ended_on_mixtral} of {item.orders}",
            f"{item.changed_back} of {item.orders}",
        ]
        for item in results
    ]
    header = ["chat sample_rate", "confidence", "ended on Mixtral", "changed back"]
    notes = (
        "Offline: the chat loop's rounds replayed on the recorded grades through "
        "`policies.decide`, one traffic order per seed, with the same `min_quality_ratio`, "
        "`min_cases` and `min_savings`. It shows how often the loop reaches the switch that the "
        "point estimates call for."
    )
    return table(header, rows, range(4)) + "\n\n" + notes


def setup_text(
    loop: LoopResult, problems: int, conversations: int, speed: float, gateway: str
) -> str:
    """Describe what ran, in a paragraph and a table of the policies."""
    settings = loop.settings
    sections = policy_sections(settings)
    rows = [
        [
            f"`{policy}`",
            f"{problems} GSM8K problems"
            if policy == MATH
            else f"{conversations * 2} MT-Bench turns",
            str(section["judge"]),
            f"{section['sample_rate']:g}",
            f"{section['min_quality_ratio']:g}",
            f"{section['confidence']:g}",
        ]
        for policy, section in sections.items()
    ]
    header = ["policy", "traffic", "judge", "sample_rate", "min_quality_ratio", "confidence"]
    text = (
        f"{problems} GSM8K problems and {conversations} two-turn MT-Bench conversations go "
        f"through {gateway} in {settings.rounds} rounds ({settings.concurrency} requests at a "
        f"time, traffic order seed {settings.seed}). The upstream is `pareto simulate --replay` "
        f"serving the recorded answers of `{GPT4}` and `{MIXTRAL}`, with delays divided by "
        f"{speed:g}. Both policies have both models as candidates, GPT-4 as the reference, "
        "`min_quality` and the latency ceiling off, and the product defaults otherwise "
        "(`min_cases` 30, `min_savings` 0.10, `max_error_rate` 0.02)."
    )
    return text + "\n\n" + table(header, rows, (3, 4, 5))


def _fill(paragraph: str, width: int) -> str:
    return textwrap.fill(paragraph, width, break_long_words=False, break_on_hyphens=False)
