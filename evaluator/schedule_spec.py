"""Evaluation schedules as written in the config: "every 6h" or a five-field cron expression."""

from __future__ import annotations

import re
from dataclasses import dataclass

from apscheduler.triggers.cron import CronTrigger

_EVERY = re.compile(r"^every\s+(\d+(?:\.\d+)?)\s*(s|m|h|d)$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed schedule: a fixed interval in seconds, or a cron expression."""

    text: str
    interval_seconds: float | None = None
    cron: str | None = None


def parse_schedule(text: str) -> ScheduleSpec:
    """Parse "every N{s,m,h,d}" or a cron expression; raise ValueError with the fix."""
    cleaned = text.strip()
    match = _EVERY.match(cleaned)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        if seconds < MIN_INTERVAL_SECONDS:
            raise ValueError(f"the interval of {text!r} is shorter than 1 second")
        return ScheduleSpec(cleaned, interval_seconds=seconds)
    if len(cleaned.split()) == 5:
        try:
            CronTrigger.from_crontab(cleaned, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {text!r}: {exc}") from exc
        return ScheduleSpec(cleaned, cron=cleaned)
    raise ValueError(
        f"invalid schedule {text!r}: write 'every 6h' (units s, m, h, d) "
        "or a five-field cron expression such as '0 */6 * * *'"
    )
