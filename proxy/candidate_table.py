"""The candidate table of a decision as aligned text lines, for the CLI and the demo."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

CANDIDATE_HEADERS = (
    "model",
    "cost/request",
    "quality mean [low, high]",
    "p95 latency",
    "error rate",
    "cases",
    "frontier",
    "eligible",
)


def candidate_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return a header line and one line per candidate row of a stored decision."""
    cells = [CANDIDATE_HEADERS]
    for row in rows:
        latency = row["latency_p95_ms"]
        reasons = row["ineligible_reasons"]
        cells.append(
            (
                row["model"],
                f"${row['cost_per_request_usd']:.6f}",
                quality_text(row["quality_mean"], row["quality_low"], row["quality_high"]),
                "-" if latency is None else f"{latency:.0f} ms",
                f"{row['error_rate']:.1%}",
                str(row["cases"]),
                "yes" if row["on_frontier"] else "no",
                "yes" if not reasons else "no: " + "; ".join(reasons),
            )
        )
    widths = [max(len(line[column]) for line in cells) for column in range(len(cells[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]


def quality_text(mean: float | None, low: float | None, high: float | None) -> str:
    """Format a quality mean with its interval, or "no scores"."""
    if mean is None or low is None or high is None or math.isnan(mean):
        return "no scores"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"
