"""Spend per hour or day as an inline SVG bar chart, against the reference model's estimate.

Each bucket is a `<g class="bucket">` with two bars: the estimated cost of the reference model
as an outline and the actual spend filled inside it, so the gap between them is the saving.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.report.data import SpendBucket, SpendSeries
from proxy.report.svg import esc, fmt, format_usd, linear_ticks, nice_step, text_width

WIDTH = 900
HEIGHT = 290
LEFT = 72
RIGHT = WIDTH - 24
TOP = 16
BOTTOM = HEIGHT - 74
MAX_BAR_WIDTH = 36.0
MAX_TIME_LABELS = 8

INK = "#1f2933"
MUTED = "#52606d"
GRID = "#e4e7eb"
SPENT = "#2563eb"
REFERENCE = "#9aa5b1"


def render_spend_chart(series: SpendSeries) -> str:
    """Return the `<svg>` element of a series with at least one bucket."""
    buckets = series.buckets
    top_value = max((max(b.spend_usd, b.reference_usd) for b in buckets), default=0.0)
    step = nice_step(top_value * 1.05 or 0.001, 4)
    high = (int(top_value * 1.05 / step) + 1) * step

    def y(value: float) -> float:
        return BOTTOM - value / high * (BOTTOM - TOP)

    slot = (RIGHT - LEFT) / max(len(buckets), 1)
    bar = min(slot * 0.7, MAX_BAR_WIDTH)
    parts = [_open(series)]
    parts += _axes(series, high, y, slot)
    for index, bucket in enumerate(buckets):
        center = LEFT + slot * (index + 0.5)
        parts.append(_bucket(bucket, series.unit, center, bar, y))
    parts += _legend()
    parts.append("</svg>")
    return "\n".join(parts)


def time_label(bucket: SpendBucket, unit: str) -> str:
    """Label a bucket's start: the date for a day, the date and hour for an hour (UTC)."""
    return bucket.start.strftime("%Y-%m-%d" if unit == "day" else "%Y-%m-%d %H:00")


def _axis_label(bucket: SpendBucket, unit: str) -> str:
    return bucket.start.strftime("%Y-%m-%d" if unit == "day" else "%m-%d %H:00")


def _open(series: SpendSeries) -> str:
    description = (
        f"Spend per {series.unit} (UTC) of the policy's requests as filled bars, and the "
        "estimated cost of the same requests on the reference model as outlined bars."
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart spend" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="spend-title spend-desc" font-family="system-ui, sans-serif">\n'
        f'<title id="spend-title">Spend per {series.unit}</title>\n'
        f'<desc id="spend-desc">{esc(description)}</desc>'
    )


YScale = Callable[[float], float]


def _axes(series: SpendSeries, high: float, y: YScale, slot: float) -> list[str]:
    parts = [f'<g class="axes" font-size="12" fill="{MUTED}">']
    for value in linear_ticks(0, high, 4):
        ty = y(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{RIGHT}" y1="{fmt(ty)}" y2="{fmt(ty)}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 8}" y="{fmt(ty + 4)}" text-anchor="end">'
            f"{esc(format_usd(value))}</text>"
        )
    # Label every n-th bucket, so that the labels keep at least 16 px between them.
    width = text_width(_axis_label(series.buckets[0], series.unit)) + 16 if series.buckets else 1
    fitting = max(1, int((RIGHT - LEFT) // width))
    every = max(1, -(-len(series.buckets) // min(fitting, MAX_TIME_LABELS)))
    for index, bucket in enumerate(series.buckets):
        if index % every:
            continue
        x = LEFT + slot * (index + 0.5)
        parts.append(
            f'<text x="{fmt(x)}" y="{BOTTOM + 18}" text-anchor="middle">'
            f"{esc(_axis_label(bucket, series.unit))}</text>"
        )
    parts.append(
        f'<path d="M{LEFT} {TOP} V{BOTTOM} H{RIGHT}" fill="none" stroke="{INK}"/>'
        f'<text transform="translate(18 {(TOP + BOTTOM) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle" font-size="13" fill="{INK}">USD per {series.unit}</text>'
    )
    parts.append("</g>")
    return parts


def _bucket(bucket: SpendBucket, unit: str, center: float, width: float, y: YScale) -> str:
    left = fmt(center - width / 2)
    tooltip = (
        f"{time_label(bucket, unit)} UTC: {bucket.requests} requests, spent "
        f"{format_usd(bucket.spend_usd, 4)}, reference model estimate "
        f"{format_usd(bucket.reference_usd, 4)}, saved {format_usd(bucket.saved_usd, 4)}"
    )
    reference_top, spend_top = y(bucket.reference_usd), y(bucket.spend_usd)
    return (
        f'<g class="bucket" data-start="{bucket.start.isoformat()}" '
        f'data-spend="{bucket.spend_usd!r}" data-reference="{bucket.reference_usd!r}">'
        f"<title>{esc(tooltip)}</title>"
        f'<rect x="{left}" y="{fmt(reference_top)}" width="{fmt(width)}" '
        f'height="{fmt(BOTTOM - reference_top)}" fill="#f5f7fa" stroke="{REFERENCE}" '
        'stroke-width="1.2"/>'
        f'<rect x="{fmt(center - width * 0.3)}" y="{fmt(spend_top)}" width="{fmt(width * 0.6)}" '
        f'height="{fmt(BOTTOM - spend_top)}" fill="{SPENT}"/>'
        "</g>"
    )


def _legend() -> list[str]:
    entries = [
        ("spent", f'<rect x="-6" y="-6" width="12" height="12" fill="{SPENT}"/>'),
        (
            "reference model estimate",
            f'<rect x="-6" y="-6" width="12" height="12" fill="#f5f7fa" stroke="{REFERENCE}"/>',
        ),
    ]
    parts = [f'<g class="legend" font-size="12" fill="{INK}">']
    x = float(LEFT)
    for label, symbol in entries:
        parts.append(
            f'<g transform="translate({fmt(x + 8)} {HEIGHT - 22})">{symbol}'
            f'<text x="14" y="4">{esc(label)}</text></g>'
        )
        x += 8 + 14 + text_width(label) + 24
    parts.append("</g>")
    return parts
