"""Small helpers of the report's inline SVG charts: escaping, axis ticks and number formats."""

from __future__ import annotations

import html
import math
from decimal import Decimal

# Estimated average advance width of the 12 px sans-serif label font, in px per character. It
# keeps labels apart, and is only an estimate because the server cannot measure the font.
CHAR_WIDTH_PX = 6.8


def esc(text: object) -> str:
    """Escape text for HTML and SVG content and for double- or single-quoted attributes."""
    return html.escape(str(text), quote=True)


def fmt(value: float) -> str:
    """Format a coordinate with at most one decimal."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def nice_step(span: float, target_ticks: int) -> float:
    """Return a step of 1, 2 or 5 times a power of ten giving about `target_ticks` ticks."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(target_ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def linear_ticks(low: float, high: float, target_ticks: int = 6) -> list[float]:
    """Return the multiples of a nice step from `low` to `high`, both included when on a step."""
    step = nice_step(high - low, target_ticks)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(index * step, 12) for index in range(first, last + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """Return 1, 2 and 5 times each power of ten from `low` to `high` (positive numbers).

    Across more than three powers of ten only the powers themselves are kept, so labels do not
    crowd each other.
    """
    first = math.floor(math.log10(low))
    last = math.ceil(math.log10(high))
    factors = (1,) if last - first > 3 else (1, 2, 5)
    ticks = []
    for exponent in range(first, last + 1):
        for factor in factors:
            value = float(Decimal(factor).scaleb(exponent))
            if low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
                ticks.append(value)
    return ticks


def format_usd(value: float, significant: int = 3) -> str:
    """Format US dollars with up to `significant` digits and no exponent, such as "$0.00025"."""
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    exponent = math.floor(math.log10(magnitude))
    rounded = round(magnitude, significant - 1 - exponent)
    text = f"{Decimal(repr(rounded)):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{sign}${text}"


def text_width(text: str, char_width: float = CHAR_WIDTH_PX) -> float:
    """Estimate the width in px of a label."""
    return len(text) * char_width
