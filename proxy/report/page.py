"""Render a `PolicyReport` as one self-contained HTML page.

The page makes no network request: its stylesheet is inline, its charts are inline SVG and it
has no script. Every string read from the database (model names, reasons, policy names) is
escaped with `svg.esc` before it is placed in the page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from policies import CandidateRow, PolicySettings
from proxy.decisions import StoredDecision
from proxy.report.data import PolicyReport
from proxy.report.layout import document, format_time
from proxy.report.scatter import render_scatter
from proxy.report.spend_chart import render_spend_chart, time_label
from proxy.report.svg import esc


@dataclass(frozen=True)
class LiveLinks:
    """Navigation links of a page the gateway serves at /ui. A written file has none.

    `logout_action` is None when the gateway has no master key, because there is no session.
    """

    index_href: str
    logout_action: str | None


def render_report(report: PolicyReport, live: LiveLinks | None = None) -> str:
    """Return the whole HTML document of the report."""
    sections = [
        _navigation(live),
        _header(report),
        _problems(report.problems),
        _latest_decision(report),
        _chart_section(report),
        _candidates_section(report),
        _spend_section(report),
        _history_section(report),
        _settings_section(report),
        _footer(report, live),
    ]
    body = "\n".join(section for section in sections if section)
    return document(f"Pareto report: {report.policy}", body)


def _navigation(live: LiveLinks | None) -> str:
    if live is None:
        return ""
    logout = ""
    if live.logout_action is not None:
        logout = (
            f'<form method="post" action="{esc(live.logout_action)}">'
            '<button type="submit">Log out</button></form>'
        )
    return f'<nav class="live"><a href="{esc(live.index_href)}">All policies</a>{logout}</nav>'


def _header(report: PolicyReport) -> str:
    if report.current_model is None:
        route = "No route is known yet"
    else:
        source = (
            "default, no applied decision"
            if report.current_decision_id is None
            else f"decision {report.current_decision_id}"
        )
        route = f"Routes to <strong>{esc(report.current_model)}</strong> ({source})"
    details = [route]
    if report.operator_pin:
        details.append("pinned by an operator")
    elif report.settings is not None:
        details.append(f"mode {esc(_mode(report.settings))}")
    if report.reference_model is not None:
        details.append(f"reference {esc(report.reference_model)}")
    details.append(f"generated {esc(format_time(report.generated_at))}")
    return (
        f"<header>\n<h1>Policy {esc(report.policy)}</h1>\n"
        f'<p class="summary">{" · ".join(details)}</p>\n</header>'
    )


def _problems(problems: Iterable[str]) -> str:
    items = "".join(f"<li>{esc(problem)}</li>" for problem in problems)
    return f'<div class="problems"><ul>{items}</ul></div>' if items else ""


def _latest_decision(report: PolicyReport) -> str:
    if not report.history:
        reference = report.reference_model
        fallback = (
            f" Until one is made, the policy routes to its reference model {esc(reference)}."
            if reference is not None
            else ""
        )
        return (
            '<section id="latest">\n<h2>Latest decision</h2>\n'
            '<p class="empty">No decision yet: this policy has not been evaluated. Run '
            f"<code>pareto eval run --policy {esc(report.policy)} --config FILE</code> or wait "
            f"for the scheduled evaluation.{fallback}</p>\n</section>"
        )
    latest = report.history[0]
    parts = [
        '<section id="latest">\n<h2>Latest decision</h2>',
        f"<p>{_decision_summary(latest)}</p>",
        f'<p class="reason">{esc(latest.reason)}</p>',
    ]
    chart = report.chart
    if chart is not None and chart.decision_id != latest.id:
        parts.append(
            f"<p>The chart and the candidate table below are those of decision "
            f"{chart.decision_id}, the newest one made by an evaluation.</p>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _decision_summary(decision: StoredDecision) -> str:
    previous = esc(decision.previous_model) if decision.previous_model else "(none)"
    applied = "applied" if decision.applied else "not applied"
    return (
        f"Decision {decision.id} at {esc(format_time(decision.created_at))}: {previous} → "
        f"<strong>{esc(decision.chosen_model)}</strong>, mode {esc(decision.mode)}, made by "
        f"{_source(decision)}, {applied}."
    )


def _source(decision: StoredDecision) -> str:
    return "an operator" if decision.source == "operator" else "an evaluation"


def _chart_section(report: PolicyReport) -> str:
    chart = report.chart
    heading = '<section id="chart">\n<h2>Cost and quality</h2>'
    if chart is None:
        return (
            f'{heading}\n<p class="empty">No evaluation has measured this policy\'s candidates '
            "yet, so there is no chart. It appears after the first evaluation run.</p>\n"
            "</section>"
        )
    if not chart.candidates:
        return (
            f'{heading}\n<p class="empty">Decision {chart.decision_id} has no readable '
            "candidate table, so there is no chart.</p>\n</section>"
        )
    confidence = "" if chart.settings is None else f"{chart.settings.confidence:.0%} "
    caption = (
        f"Candidates measured for decision {chart.decision_id} at "
        f"{esc(format_time(chart.created_at))}. Error bars are the {confidence}confidence "
        "intervals of the mean judge score; quality floors apply to their lower bounds. "
        "Hover over a point for its measurements."
    )
    svg = render_scatter(chart, report.current_model)
    return f"{heading}\n<figure>\n{svg}\n<figcaption>{caption}</figcaption>\n</figure>\n</section>"


CANDIDATE_HEADERS = (
    ("model", ""),
    ("cost per request", "number"),
    ("quality mean [interval]", "number"),
    ("p95 latency", "number"),
    ("error rate", "number"),
    ("cases", "number"),
    ("frontier", ""),
    ("eligible", ""),
)


def _candidates_section(report: PolicyReport) -> str:
    chart = report.chart
    if chart is None or not chart.candidates:
        return ""
    head = "".join(
        f'<th class="{kind}" scope="col">{name}</th>' if kind else f'<th scope="col">{name}</th>'
        for name, kind in CANDIDATE_HEADERS
    )
    rows = [
        _candidate_row(row, row.model == chart.chosen_model, row.model == report.current_model)
        for row in chart.candidates
    ]
    return (
        '<section id="candidates">\n<h2>Candidates</h2>\n'
        f'<table class="candidates">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n</section>"
    )


def _candidate_row(row: CandidateRow, chosen: bool, current: bool) -> str:
    tags = ""
    if current:
        tags += '<span class="tag current">current</span>'
    if chosen:
        tags += '<span class="tag chosen">chosen</span>'
    latency = "none" if row.latency_p95_ms is None else f"{row.latency_p95_ms:,.0f} ms"
    if row.eligible:
        eligible = '<span class="yes">yes</span>'
    else:
        eligible = '<span class="no">no</span>: ' + esc("; ".join(row.ineligible_reasons))
    unscored = f" (+{row.unscored_cases} unscored)" if row.unscored_cases else ""
    cells = [
        f'<th scope="row">{esc(row.model)}{tags}</th>',
        f'<td class="number">${row.cost_per_request_usd:.6f}</td>',
        f'<td class="number">{_quality(row)}</td>',
        f'<td class="number">{latency}</td>',
        f'<td class="number">{row.error_rate:.1%}</td>',
        f'<td class="number">{row.cases}{unscored}</td>',
        f"<td>{'yes' if row.on_frontier else 'no'}</td>",
        f"<td>{eligible}</td>",
    ]
    return f'<tr data-model="{esc(row.model)}">{"".join(cells)}</tr>'


def _quality(row: CandidateRow) -> str:
    if not math.isfinite(row.quality_mean):
        return "no scores"
    if not (math.isfinite(row.quality_low) and math.isfinite(row.quality_high)):
        return f"{row.quality_mean:.2f}"
    return f"{row.quality_mean:.2f} [{row.quality_low:.2f}, {row.quality_high:.2f}]"


def _spend_section(report: PolicyReport) -> str:
    savings = report.savings
    heading = '<section id="spend">\n<h2>Spend and savings</h2>'
    share = "" if savings.saved_share is None else f" ({savings.saved_share:.0%})"
    summary = (
        f"<p>Saved <strong>{_usd(savings.saved_usd)}{share}</strong> to date over "
        f"{savings.requests:,} requests: spent {_usd(savings.spend_usd)}, the reference model "
        f"would have cost {_usd(savings.reference_usd)}.</p>\n"
        f'<p class="method">Method: {esc(savings.method)}</p>'
    )
    series = report.spend
    if not series.buckets:
        return (
            f"{heading}\n{summary}\n"
            '<p class="empty">No request of this policy is recorded yet.</p>\n</section>'
        )
    rows = "\n".join(
        f'<tr><td>{esc(time_label(bucket, series.unit))}</td><td class="number">'
        f'{bucket.requests:,}</td><td class="number">{_usd(bucket.spend_usd)}</td>'
        f'<td class="number">{_usd(bucket.reference_usd)}</td>'
        f'<td class="number">{_usd(bucket.saved_usd)}</td></tr>'
        for bucket in reversed(series.buckets)
        if bucket.requests
    )
    table = (
        f"<details>\n<summary>Spend per {series.unit} as a table (UTC, newest first)</summary>\n"
        f'<table class="spend">\n<thead><tr><th scope="col">{series.unit} (UTC)</th>'
        '<th class="number" scope="col">requests</th><th class="number" scope="col">spent</th>'
        '<th class="number" scope="col">reference estimate</th>'
        '<th class="number" scope="col">saved</th></tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody>\n</table>\n</details>"
    )
    figure = (
        f"<figure>\n{render_spend_chart(series)}\n<figcaption>Spend per {series.unit} "
        "(UTC). The outline is what the reference model would have cost by the method above, "
        "so the space above each filled bar is that period's saving.</figcaption>\n</figure>"
    )
    return f"{heading}\n{summary}\n{figure}\n{table}\n</section>"


def _history_section(report: PolicyReport) -> str:
    heading = '<section id="history">\n<h2>Decision history</h2>'
    if not report.history:
        return f'{heading}\n<p class="empty">No decision is stored yet.</p>\n</section>'
    rows = "\n".join(_history_row(decision) for decision in report.history)
    count = len(report.history)
    note = f"The {count} newest decisions, newest first." if count > 1 else "One decision."
    return (
        f"{heading}\n<p>{note}</p>\n"
        '<table class="history">\n<thead><tr><th scope="col">decision</th>'
        '<th scope="col">time (UTC)</th><th scope="col">change</th><th scope="col">mode</th>'
        '<th scope="col">applied</th><th scope="col">reason</th></tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody>\n</table>\n</section>"
    )


def _history_row(decision: StoredDecision) -> str:
    previous = esc(decision.previous_model) if decision.previous_model else "(none)"
    applied = '<span class="yes">yes</span>' if decision.applied else '<span class="no">no</span>'
    when = format_time(decision.created_at).removesuffix(" UTC")
    return (
        f'<tr data-decision="{decision.id}"><td class="number">{decision.id}</td>'
        f'<td class="number">{esc(when)}</td>'
        f"<td>{previous} → {esc(decision.chosen_model)}</td>"
        f"<td>{esc(decision.mode)}, {'operator' if decision.source == 'operator' else 'eval'}"
        f"</td><td>{applied}</td><td>{esc(decision.reason)}</td></tr>"
    )


def _settings_section(report: PolicyReport) -> str:
    heading = '<section id="settings">\n<h2>Policy settings</h2>'
    settings = report.settings
    if settings is None:
        return (
            f'{heading}\n<p class="empty">No settings are known: give the configuration file '
            "to see them.</p>\n</section>"
        )
    items = [
        ("reference model", esc(report.reference_model or "unknown")),
        ("candidates", esc(", ".join(report.candidates)) or "none"),
        ("mode", esc(_mode(settings))),
        ("min_quality", _optional(settings.min_quality, "{:g} (mean judge score, 1 to 10)")),
        ("min_quality_ratio", _optional(settings.min_quality_ratio, "{:.0%} of the reference")),
        ("confidence", f"{settings.confidence:.0%} (floors apply to the interval's lower bound)"),
        ("max_latency_p95_ms", _optional(settings.max_latency_p95_ms, "{:,.0f} ms")),
        ("max_error_rate", _optional(settings.max_error_rate, "{:.1%}")),
        ("min_cases", f"{settings.min_cases}"),
        ("min_savings", f"{settings.min_savings:.0%} cheaper per request to switch"),
    ]
    rows = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in items)
    return (
        f"{heading}\n<p>From {esc(report.settings_source)}.</p>\n"
        f'<dl class="settings">\n{rows}\n</dl>\n</section>'
    )


def _footer(report: PolicyReport, live: LiveLinks | None) -> str:
    where = "served by the gateway" if live is not None else "written by pareto report"
    return (
        f"<footer>Generated at {esc(format_time(report.generated_at))}, {where}. The page "
        "loads nothing from the network.</footer>"
    )


def _mode(settings: PolicySettings) -> str:
    if settings.pin is not None:
        return f"{settings.mode.value} to {settings.pin}"
    return settings.mode.value


def _optional(value: float | None, pattern: str) -> str:
    return "off" if value is None else esc(pattern.format(value))


def _usd(value: float) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):.4f}"
