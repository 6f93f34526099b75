"""The cost/quality chart of one decision as inline SVG: one point per candidate.

Each candidate is a `<g class="candidate" data-model="...">` holding its marker, its interval as
an error bar and its label. The chart also draws the Pareto frontier as a polyline, the binding
quality floor as a dashed line, and a legend. The cost axis is logarithmic when the positive
costs span more than `LOG_SCALE_RATIO` times. Candidates without a quality score sit in a band
under the plot, at their cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from policies import CandidateRow
from policies.eligibility import QualityFloor
from proxy.report.data import ChartDecision
from proxy.report.svg import esc, fmt, format_usd, log_ticks, nice_step, text_width

LOG_SCALE_RATIO = 20.0

WIDTH = 900
HEIGHT = 520
LEFT = 72
RIGHT = WIDTH - 24
TOP = 24
BOTTOM = HEIGHT - 112  # bottom of the plot area, above the axis title and the legend
PAD = 18  # space between the plot's edges and its outermost points
UNSCORED_BAND = 40  # height of the band for candidates without a quality score
ZERO_SLOT = 34  # width kept left of a logarithmic axis for candidates that cost $0

INK = "#1f2933"
MUTED = "#52606d"
GRID = "#e4e7eb"
ELIGIBLE = "#2563eb"
INELIGIBLE = "#7b8794"
LATENCY = "#c2410c"
FRONTIER = "#0f766e"
FLOOR = "#b91c1c"
CHOSEN = "#15803d"

MARKER_RADIUS = 6.5
LABEL_HEIGHT = 14.0
MAX_LABEL_STEPS = 8  # a label may move up to 8 x 16 px up or down from its point

Box = tuple[float, float, float, float]


class CostAxis:
    """The x scale: cost per request in USD to an x coordinate, linear or logarithmic."""

    def __init__(self, costs: Sequence[float], left: float, right: float) -> None:
        positive = [cost for cost in costs if cost > 0]
        self.log = len(positive) >= 2 and max(positive) / min(positive) > LOG_SCALE_RATIO
        self.has_zero = any(cost <= 0 for cost in costs)
        self.zero_x = left + PAD
        self.step = 0.0  # the tick step of a linear scale
        if self.log:
            self.low, self.high = min(positive) / 1.5, max(positive) * 1.5
            self.left = left + (ZERO_SLOT + PAD if self.has_zero else PAD)
        else:
            top = max(positive, default=0.0) or 0.001
            self.step = nice_step(top * 1.05, 8)
            self.low, self.high = 0.0, math.ceil(top * 1.05 / self.step) * self.step
            self.left = left + PAD
        self.right = right - PAD

    def x(self, cost: float) -> float:
        """Return the x coordinate of `cost`."""
        if self.log:
            if cost <= 0:
                return self.zero_x
            share = math.log(cost / self.low) / math.log(self.high / self.low)
        else:
            share = (cost - self.low) / (self.high - self.low)
        return self.left + share * (self.right - self.left)

    def ticks(self) -> list[tuple[float, str]]:
        """Return (x, label) pairs for the axis, including "$0" left of a logarithmic axis."""
        if not self.log:
            count = round(self.high / self.step)
            values = [round(index * self.step, 12) for index in range(count + 1)]
            return [(self.x(value), format_usd(value)) for value in values]
        ticks = [(self.x(value), format_usd(value)) for value in log_ticks(self.low, self.high)]
        if self.has_zero:
            ticks.insert(0, (self.zero_x, "$0"))
        return ticks

    @property
    def title(self) -> str:
        scale = "logarithmic scale" if self.log else "linear scale"
        return f"cost per request (USD, {scale})"


class QualityAxis:
    """The y scale: mean judge score (1 to 10) to a y coordinate, zoomed to the scores shown."""

    def __init__(self, values: Sequence[float], top: float, bottom: float) -> None:
        low = min(values, default=1.0)
        high = max(values, default=10.0)
        if high - low < 1.0:
            middle = (high + low) / 2
            low, high = middle - 0.5, middle + 0.5
        step = nice_step(high - low, 6)
        self.low = math.floor(low / step + 1e-9) * step
        self.high = math.ceil(high / step - 1e-9) * step
        self.step = step
        self.top = top + PAD / 2
        self.bottom = bottom - PAD / 2

    def y(self, score: float) -> float:
        share = (score - self.low) / (self.high - self.low)
        return self.bottom - share * (self.bottom - self.top)

    def ticks(self) -> list[tuple[float, str]]:
        decimals = 2
        if self.step >= 1:
            decimals = 0
        elif self.step >= 0.1:
            decimals = 1
        count = round((self.high - self.low) / self.step)
        values = [round(self.low + index * self.step, 9) for index in range(count + 1)]
        return [(self.y(value), f"{value:.{decimals}f}") for value in values]


@dataclass(frozen=True)
class _Point:
    """A candidate's position; `interval` is the y of its low and high bounds, when known."""

    row: CandidateRow
    x: float
    y: float
    interval: tuple[float, float] | None
    scored: bool
    chosen: bool
    current: bool
    over_latency: bool

    @property
    def radius(self) -> float:
        """The radius of the outermost circle drawn for the point."""
        if self.current:
            return MARKER_RADIUS + 8
        return MARKER_RADIUS + 4 if self.chosen else MARKER_RADIUS

    @property
    def label(self) -> str:
        roles = [name for name, on in (("current", self.current), ("chosen", self.chosen)) if on]
        return self.row.model + (f" ({', '.join(roles)})" if roles else "")


def render_scatter(chart: ChartDecision, current_model: str | None) -> str:
    """Return the `<svg>` element of the chart of `chart`'s candidate table."""
    rows = chart.candidates
    scored = [row for row in rows if math.isfinite(row.quality_mean)]
    bottom = BOTTOM - UNSCORED_BAND if len(scored) < len(rows) else BOTTOM
    floor = chart.quality_floor
    values = [row.quality_mean for row in scored]
    values += [bound for row in scored for bound in (row.quality_low, row.quality_high)]
    values += [floor.value] if floor is not None else []
    cost_axis = CostAxis([row.cost_per_request_usd for row in rows], LEFT, RIGHT)
    quality_axis = QualityAxis([value for value in values if math.isfinite(value)], TOP, bottom)
    points = [_point(row, chart, current_model, cost_axis, quality_axis, bottom) for row in rows]

    parts = [_open(chart, cost_axis)]
    parts += _grid_and_axes(cost_axis, quality_axis, bottom, unscored=len(scored) < len(rows))
    occupied: list[Box] = [_marker_box(point) for point in points]
    occupied += [_error_bar_box(point) for point in points if point.interval is not None]
    if floor is not None:
        parts += _floor(floor, quality_axis, occupied)
    parts.append(_frontier(points))
    labels = _place_labels(points, occupied)
    parts += [_candidate(point, labels[point.row.model]) for point in _drawing_order(points)]
    parts += _legend(points, floor is not None, chart)
    parts.append("</svg>")
    return "\n".join(parts)


def _point(
    row: CandidateRow,
    chart: ChartDecision,
    current_model: str | None,
    cost_axis: CostAxis,
    quality_axis: QualityAxis,
    bottom: float,
) -> _Point:
    scored = math.isfinite(row.quality_mean)
    y = quality_axis.y(row.quality_mean) if scored else bottom + UNSCORED_BAND / 2
    interval = None
    if scored and math.isfinite(row.quality_low) and math.isfinite(row.quality_high):
        interval = (quality_axis.y(row.quality_low), quality_axis.y(row.quality_high))
    return _Point(
        row=row,
        x=cost_axis.x(row.cost_per_request_usd),
        y=y,
        interval=interval,
        scored=scored,
        chosen=row.model == chart.chosen_model,
        current=row.model == current_model,
        over_latency=chart.over_latency_ceiling(row),
    )


def _open(chart: ChartDecision, cost_axis: CostAxis) -> str:
    description = (
        f"Candidates of decision {chart.decision_id}: cost per request on the x axis "
        f"({'logarithmic' if cost_axis.log else 'linear'} scale), mean judge score on the y "
        "axis with its confidence interval as an error bar. The solid line joins the Pareto "
        "frontier."
    )
    if chart.quality_floor is not None:
        description += " The dashed line is the quality floor."
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart scatter" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="scatter-title scatter-desc" font-family="system-ui, sans-serif">\n'
        f'<title id="scatter-title">Cost and quality of each candidate</title>\n'
        f'<desc id="scatter-desc">{esc(description)}</desc>'
    )


def _grid_and_axes(
    cost_axis: CostAxis, quality_axis: QualityAxis, bottom: float, *, unscored: bool
) -> list[str]:
    parts = ['<g class="axes" font-size="12" fill="' + MUTED + '">']
    axis_bottom = bottom + (UNSCORED_BAND if unscored else 0)
    for y, label in quality_axis.ticks():
        parts.append(
            f'<line x1="{LEFT}" x2="{RIGHT}" y1="{fmt(y)}" y2="{fmt(y)}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 8}" y="{fmt(y + 4)}" text-anchor="end">{label}</text>'
        )
    for x, label in cost_axis.ticks():
        parts.append(
            f'<line x1="{fmt(x)}" x2="{fmt(x)}" y1="{TOP}" y2="{fmt(axis_bottom)}" '
            f'stroke="{GRID}"/>'
            f'<text x="{fmt(x)}" y="{fmt(axis_bottom + 18)}" text-anchor="middle">'
            f"{esc(label)}</text>"
        )
    if cost_axis.log and cost_axis.has_zero:
        # Two short strokes on the axis mark the gap between $0 and the logarithmic range.
        gap = (cost_axis.zero_x + cost_axis.left) / 2
        for dx in (-3, 3):
            parts.append(
                f'<line x1="{fmt(gap + dx - 3)}" x2="{fmt(gap + dx + 3)}" '
                f'y1="{fmt(axis_bottom + 5)}" y2="{fmt(axis_bottom - 5)}" stroke="{INK}"/>'
            )
    if unscored:
        parts.append(
            f'<line x1="{LEFT}" x2="{RIGHT}" y1="{fmt(bottom)}" y2="{fmt(bottom)}" '
            f'stroke="{INELIGIBLE}" stroke-dasharray="2 3"/>'
            f'<text x="{LEFT - 8}" y="{fmt(bottom + UNSCORED_BAND / 2 + 4)}" '
            f'text-anchor="end">no score</text>'
        )
    parts.append(
        f'<path d="M{LEFT} {TOP} V{fmt(axis_bottom)} H{RIGHT}" fill="none" stroke="{INK}"/>'
        f'<text x="{(LEFT + RIGHT) / 2:.0f}" y="{fmt(axis_bottom + 40)}" text-anchor="middle" '
        f'font-size="13" fill="{INK}">{esc(cost_axis.title)}</text>'
        f'<text transform="translate(18 {fmt((TOP + bottom) / 2)}) rotate(-90)" '
        f'text-anchor="middle" font-size="13" fill="{INK}">quality: mean judge score</text>'
    )
    parts.append("</g>")
    return parts


def _floor(floor: QualityFloor, axis: QualityAxis, occupied: list[Box]) -> list[str]:
    """Draw the floor line, with its label at the first free end: right or left, above or below."""
    value = floor.value
    y = axis.y(value)
    text = f"quality floor {value:.2f}{floor.basis or f' ({floor.floor.value})'}"
    width = text_width(text)
    options = [
        _Label(RIGHT - 6, y - 6, "end"),
        _Label(RIGHT - 6, y + 16, "end"),
        _Label(LEFT + 6, y - 6, "start"),
        _Label(LEFT + 6, y + 16, "start"),
    ]
    label = next(
        (
            option
            for option in options
            if not any(_overlaps(option.box(width), other) for other in occupied)
        ),
        options[0],
    )
    occupied.append(label.box(width))
    occupied.append((LEFT, y - 2, RIGHT, y + 2))
    return [
        f'<g class="quality-floor" data-value="{value:.4f}">',
        f'<line x1="{LEFT}" x2="{RIGHT}" y1="{fmt(y)}" y2="{fmt(y)}" stroke="{FLOOR}" '
        f'stroke-width="1.5" stroke-dasharray="7 5"/>',
        f'<text x="{fmt(label.x)}" y="{fmt(label.y)}" text-anchor="{label.anchor}" '
        f'font-size="12" fill="{FLOOR}">{esc(text)}</text>',
        "</g>",
    ]


def _frontier(points: Sequence[_Point]) -> str:
    on_frontier = sorted(
        (point for point in points if point.row.on_frontier and point.scored),
        key=lambda point: (point.x, point.y),
    )
    coordinates = " ".join(f"{fmt(point.x)},{fmt(point.y)}" for point in on_frontier)
    models = esc(" ".join(point.row.model for point in on_frontier))
    return (
        f'<polyline class="frontier" data-models="{models}" points="{coordinates}" fill="none" '
        f'stroke="{FRONTIER}" stroke-width="2" stroke-linejoin="round" opacity="0.85"/>'
    )


def _marker_box(point: _Point) -> Box:
    radius = point.radius + 1
    return (point.x - radius, point.y - radius, point.x + radius, point.y + radius)


@dataclass(frozen=True)
class _Label:
    """The position of a label's text: its baseline's x and y, and its `text-anchor`."""

    x: float
    y: float
    anchor: str

    def box(self, width: float) -> Box:
        if self.anchor == "start":
            left = self.x
        elif self.anchor == "end":
            left = self.x - width
        else:
            left = self.x - width / 2
        return (left, self.y - LABEL_HEIGHT + 3, left + width, self.y + 3)


def _error_bar_box(point: _Point) -> Box:
    assert point.interval is not None
    low, high = point.interval
    return (point.x - 5, min(low, high), point.x + 5, max(low, high))


def _place_labels(points: Sequence[_Point], occupied: list[Box]) -> dict[str, _Label]:
    """Choose each label's position so that labels, markers and the floor label do not overlap.

    Chosen and current models are placed first, then the others from top to bottom. Each label
    takes the first free position of: right, left, above, below, then right or left moved up
    or down in steps of 16 px. When none is free it takes the one it overlaps least.
    Widths are estimated (see `svg.CHAR_WIDTH_PX`), so labels in a wider font may touch.
    """
    placed: dict[str, _Label] = {}
    order = sorted(points, key=lambda point: (not (point.chosen or point.current), point.y))
    for point in order:
        width = text_width(point.label)
        gap = point.radius + 4
        options = [
            _Label(point.x + gap, point.y + 4, "start"),
            _Label(point.x - gap, point.y + 4, "end"),
            _Label(point.x, point.y - gap - 3, "middle"),
            _Label(point.x, point.y + gap + 12, "middle"),
        ]
        for step in range(1, MAX_LABEL_STEPS + 1):
            for dy in (-16 * step, 16 * step):
                options.append(_Label(point.x + gap, point.y + 4 + dy, "start"))
                options.append(_Label(point.x - gap, point.y + 4 + dy, "end"))
        inside = [option for option in options if _inside_plot(option.box(width))] or options
        label = min(inside, key=lambda option: _overlap_area(option.box(width), occupied))
        occupied.append(label.box(width))
        placed[point.row.model] = label
    return placed


def _inside_plot(box: Box) -> bool:
    return box[0] >= LEFT + 2 and box[2] <= RIGHT - 2 and box[1] >= TOP - 8


def _overlap_area(box: Box, occupied: Sequence[Box]) -> float:
    total = 0.0
    for other in occupied:
        width = min(box[2], other[2]) - max(box[0], other[0])
        height = min(box[3], other[3]) - max(box[1], other[1])
        if width > 0 and height > 0:
            total += width * height
    return total


def _overlaps(first: Box, second: Box) -> bool:
    return not (
        first[2] <= second[0]
        or second[2] <= first[0]
        or first[3] <= second[1]
        or second[3] <= first[1]
    )


def _drawing_order(points: Sequence[_Point]) -> list[_Point]:
    # Highlighted candidates last, so that their rings are drawn over their neighbours.
    return sorted(points, key=lambda point: (point.chosen or point.current, point.row.model))


def _candidate(point: _Point, label: _Label) -> str:
    row = point.row
    classes = ["candidate", "eligible" if row.eligible else "ineligible"]
    classes += ["over-latency"] if point.over_latency else []
    classes += ["chosen"] if point.chosen else []
    classes += ["current"] if point.current else []
    quality = f"{row.quality_mean:.4f}" if point.scored else ""
    parts = [
        f'<g class="{" ".join(classes)}" data-model="{esc(row.model)}" '
        f'data-cost="{row.cost_per_request_usd!r}" data-quality="{quality}">',
        f"<title>{esc(_tooltip(point))}</title>",
    ]
    parts += _error_bar(point)
    parts += _marker(point)

    if label.anchor != "middle" and abs(label.y - 4 - point.y) > 12:
        # A label moved off its point's row gets a thin line back to the point.
        parts.append(
            f'<line class="leader" x1="{fmt(point.x)}" y1="{fmt(point.y)}" '
            f'x2="{fmt(label.x)}" y2="{fmt(label.y - 4)}" stroke="{INELIGIBLE}" '
            'stroke-width="0.75"/>'
        )
    weight = ' font-weight="600"' if point.chosen or point.current else ""
    parts.append(
        f'<text class="label" x="{fmt(label.x)}" y="{fmt(label.y)}" '
        f'text-anchor="{label.anchor}" font-size="12" fill="{INK}"{weight}>'
        f"{esc(point.label)}</text>"
    )
    parts.append("</g>")
    return "".join(parts)


def _tooltip(point: _Point) -> str:
    row = point.row
    quality = "no quality score"
    if point.scored:
        quality = f"quality {row.quality_mean:.2f}"
        if math.isfinite(row.quality_low) and math.isfinite(row.quality_high):
            quality += f" [{row.quality_low:.2f}, {row.quality_high:.2f}]"
    latency = "no latency" if row.latency_p95_ms is None else f"p95 {row.latency_p95_ms:.0f} ms"
    status = "eligible" if row.eligible else "not eligible: " + "; ".join(row.ineligible_reasons)
    cost = format_usd(row.cost_per_request_usd, 4)
    return f"{row.model}: {cost} per request, {quality}, {latency}, {status}"


def _error_bar(point: _Point) -> list[str]:
    if point.interval is None:
        return []
    y_low, y_high = (fmt(y) for y in point.interval)
    left, right = fmt(point.x - 4), fmt(point.x + 4)
    return [
        f'<path class="error-bar" data-low="{point.row.quality_low:.4f}" '
        f'data-high="{point.row.quality_high:.4f}" d="M{fmt(point.x)} {y_low} V{y_high} '
        f'M{left} {y_low} H{right} M{left} {y_high} H{right}" stroke="{_color(point)}" '
        'stroke-width="1.5" fill="none"/>'
    ]


def _color(point: _Point) -> str:
    if point.over_latency:
        return LATENCY
    return ELIGIBLE if point.row.eligible else INELIGIBLE


def _marker(point: _Point) -> list[str]:
    x, y = fmt(point.x), fmt(point.y)
    color = _color(point)
    parts = []
    if point.row.eligible:
        parts.append(
            f'<circle class="marker" cx="{x}" cy="{y}" r="{MARKER_RADIUS}" fill="{color}" '
            'stroke="#ffffff" stroke-width="1.5"/>'
        )
    else:
        parts.append(
            f'<circle class="marker" cx="{x}" cy="{y}" r="{MARKER_RADIUS}" fill="#ffffff" '
            f'stroke="{color}" stroke-width="2"/>'
        )
    if point.over_latency:
        arm = MARKER_RADIUS * 0.7
        parts.append(
            f'<path class="cross" d="M{fmt(point.x - arm)} {fmt(point.y - arm)} '
            f"L{fmt(point.x + arm)} {fmt(point.y + arm)} M{fmt(point.x - arm)} "
            f'{fmt(point.y + arm)} L{fmt(point.x + arm)} {fmt(point.y - arm)}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
    if point.chosen:
        parts.append(
            f'<circle class="ring-chosen" cx="{x}" cy="{y}" r="{MARKER_RADIUS + 4}" '
            f'fill="none" stroke="{CHOSEN}" stroke-width="2.5"/>'
        )
    if point.current:
        parts.append(
            f'<circle class="ring-current" cx="{x}" cy="{y}" r="{MARKER_RADIUS + 8}" '
            f'fill="none" stroke="{INK}" stroke-width="1.5" stroke-dasharray="3 2"/>'
        )
    return parts


def _legend(points: Sequence[_Point], has_floor: bool, chart: ChartDecision) -> list[str]:
    confidence = chart.settings.confidence if chart.settings is not None else None
    interval = f"{confidence:.0%} interval" if confidence is not None else "confidence interval"
    entries = [("eligible", _legend_marker(ELIGIBLE, filled=True))]
    if any(not point.row.eligible and not point.over_latency for point in points):
        entries.append(("not eligible", _legend_marker(INELIGIBLE, filled=False)))
    if any(point.over_latency for point in points):
        entries.append(("over latency ceiling", _legend_marker(LATENCY, filled=False, cross=True)))
    entries.append(("chosen", f'<circle r="9" fill="none" stroke="{CHOSEN}" stroke-width="2.5"/>'))
    entries.append(
        (
            "current",
            f'<circle r="9" fill="none" stroke="{INK}" stroke-width="1.5" stroke-dasharray="3 2"/>',
        )
    )
    entries.append((interval, f'<path d="M0 -9 V9 M-4 -9 H4 M-4 9 H4" stroke="{ELIGIBLE}"/>'))
    entries.append(
        ("Pareto frontier", f'<path d="M-10 4 L10 -4" stroke="{FRONTIER}" stroke-width="2"/>')
    )
    if has_floor:
        entries.append(
            (
                "quality floor",
                f'<path d="M-11 0 H11" stroke="{FLOOR}" stroke-width="1.5" '
                'stroke-dasharray="7 5"/>',
            )
        )

    parts = [f'<g class="legend" font-size="12" fill="{INK}">']
    x, y = float(LEFT), HEIGHT - 44
    for label, symbol in entries:
        width = 10 + 16 + text_width(label) + 22
        if x + width > RIGHT:
            x, y = float(LEFT), y + 24
        parts.append(
            f'<g transform="translate({fmt(x + 10)} {y})">{symbol}'
            f'<text x="16" y="4">{esc(label)}</text></g>'
        )
        x += width
    parts.append("</g>")
    return parts


def _legend_marker(color: str, *, filled: bool, cross: bool = False) -> str:
    fill = color if filled else "#ffffff"
    marker = f'<circle r="{MARKER_RADIUS}" fill="{fill}" stroke="{color}" stroke-width="2"/>'
    if cross:
        arm = MARKER_RADIUS * 0.7
        marker += (
            f'<path d="M{-arm:.1f} {-arm:.1f} L{arm:.1f} {arm:.1f} M{-arm:.1f} {arm:.1f} '
            f'L{arm:.1f} {-arm:.1f}" stroke="{color}" stroke-width="2"/>'
        )
    return marker
