"""Retention: deletes request rows and sampled cases older than `general_settings.retention_days`.

`prune` deletes in batches of `BATCH_SIZE` rows, each batch in its own short transaction, so a
large backlog never holds a long lock and a stop between batches loses nothing. A deleted case
takes its evaluation results and judgments with it, as a case replaced by the sampler does.
Runs, decisions and the sampler's state stay. Imported cases are kept unless
`general_settings.retention_include_imported` is true, because an operator chose them.

The running gateway prunes a minute after it starts and then every hour (`RetentionTask`), and
`pareto prune` prunes on demand. Every worker and replica prunes on its own. When two delete the
same batch, the second deletes nothing, or on a locked SQLite file logs the error and tries again
at its next interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Delete, Select, delete, func, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from evaluator.sampler import SAMPLED
from evaluator.tables import BenchmarkCase, EvalResult, Judgment
from proxy.tables import RequestLog

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
DEFAULT_FIRST_DELAY_SECONDS = 60.0
DEFAULT_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class RetentionSettings:
    """The retention period in days, and whether it applies to imported cases too."""

    days: int
    include_imported: bool = False

    def cutoff(self, now: datetime) -> datetime:
        """Return the moment before which rows are deleted."""
        return now - timedelta(days=self.days)


@dataclass(frozen=True)
class PruneReport:
    """How many rows one prune deleted, or would delete when `dry_run` is true."""

    request_rows: int
    cases: int
    results: int
    judgments: int
    dry_run: bool = False

    def describe(self, days: int) -> str:
        """Return one sentence for the log and the command line."""
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{verb} {_plural(self.request_rows, 'request row')} and "
            f"{_plural(self.cases, 'case')} (with {_plural(self.results, 'result')} and "
            f"{_plural(self.judgments, 'judgment')}) older than {_plural(days, 'day')}"
        )


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def prune(
    engine: Engine,
    settings: RetentionSettings,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
) -> PruneReport:
    """Delete (or, with `dry_run`, count) the rows older than the settings allow.

    `should_stop` is asked between batches; when it returns true, the report counts only the
    batches deleted so far. Raises SQLAlchemyError when the database fails.
    """
    cutoff = settings.cutoff(now or datetime.now(UTC))
    if dry_run:
        return _count(engine, settings, cutoff)

    request_rows = 0
    while not should_stop():
        deleted = _delete_request_batch(engine, cutoff, batch_size)
        request_rows += deleted
        if deleted < batch_size:
            break

    cases = results = judgments = 0
    while not should_stop():
        batch = _delete_case_batch(engine, _old_cases(settings, cutoff), batch_size)
        cases += batch.cases
        results += batch.results
        judgments += batch.judgments
        if batch.cases < batch_size:
            break
    return PruneReport(request_rows, cases, results, judgments)


def _old_cases(settings: RetentionSettings, cutoff: datetime) -> ColumnElement[bool]:
    condition = col(BenchmarkCase.created_at) < cutoff
    if settings.include_imported:
        return condition
    return condition & (col(BenchmarkCase.source) == SAMPLED)


def _delete_request_batch(engine: Engine, cutoff: datetime, batch_size: int) -> int:
    batch = (
        select(col(RequestLog.id))
        .where(col(RequestLog.created_at) < cutoff)
        .order_by(col(RequestLog.id))
        .limit(batch_size)
    )
    with engine.begin() as connection:
        ids = list(connection.execute(batch).scalars())
        if not ids:
            return 0
        connection.execute(delete(RequestLog).where(col(RequestLog.id).in_(ids)))
    return len(ids)


def _delete_case_batch(
    engine: Engine, old_cases: ColumnElement[bool], batch_size: int
) -> PruneReport:
    batch = (
        select(col(BenchmarkCase.id))
        .where(old_cases)
        .order_by(col(BenchmarkCase.id))
        .limit(batch_size)
    )
    with engine.begin() as connection:
        ids = list(connection.execute(batch).scalars())
        if not ids:
            return PruneReport(0, 0, 0, 0)
        results = select(col(EvalResult.id)).where(col(EvalResult.case_id).in_(ids))
        judgments = _rowcount(
            connection,
            delete(Judgment).where(
                or_(col(Judgment.case_id).in_(ids), col(Judgment.result_id).in_(results))
            ),
        )
        deleted_results = _rowcount(
            connection, delete(EvalResult).where(col(EvalResult.case_id).in_(ids))
        )
        connection.execute(delete(BenchmarkCase).where(col(BenchmarkCase.id).in_(ids)))
    return PruneReport(0, len(ids), deleted_results, judgments)


def _rowcount(connection: Connection, statement: Delete) -> int:
    count: int = connection.execute(statement).rowcount
    return count


def _count(engine: Engine, settings: RetentionSettings, cutoff: datetime) -> PruneReport:
    old_cases = _old_cases(settings, cutoff)
    case_ids = select(col(BenchmarkCase.id)).where(old_cases)
    result_ids = select(col(EvalResult.id)).where(col(EvalResult.case_id).in_(case_ids))
    with engine.connect() as connection:
        request_rows = _scalar_count(
            connection, select(func.count()).where(col(RequestLog.created_at) < cutoff)
        )
        cases = _scalar_count(connection, select(func.count()).where(old_cases))
        results = _scalar_count(
            connection, select(func.count()).where(col(EvalResult.case_id).in_(case_ids))
        )
        judgments = _scalar_count(
            connection,
            select(func.count()).where(
                or_(col(Judgment.case_id).in_(case_ids), col(Judgment.result_id).in_(result_ids))
            ),
        )
    return PruneReport(request_rows, cases, results, judgments, dry_run=True)


def _scalar_count(connection: Connection, statement: Select[int]) -> int:
    count: int = connection.execute(statement).scalar_one()
    return count


class RetentionTask:
    """Prunes on a fixed interval inside the gateway, one batch at a time off the event loop."""

    def __init__(
        self,
        engine: Engine,
        settings: RetentionSettings,
        first_delay: float = DEFAULT_FIRST_DELAY_SECONDS,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._first_delay = first_delay
        self._interval = interval

    async def run(self) -> None:
        """Prune after the first delay, then once per interval, until cancelled."""
        await asyncio.sleep(self._first_delay)
        while True:
            await self.prune_once()
            await asyncio.sleep(self._interval)

    async def prune_once(self) -> PruneReport | None:
        """Prune now; return the report, or None when the database failed (logged)."""
        stop = threading.Event()
        job = asyncio.ensure_future(
            asyncio.to_thread(prune, self._engine, self._settings, should_stop=stop.is_set)
        )
        try:
            report = await asyncio.shield(job)
        except asyncio.CancelledError:
            # Let the batch in progress commit, so that shutdown does not dispose of the engine
            # under it. The batches after it are left for the next start.
            stop.set()
            await asyncio.gather(job, return_exceptions=True)
            raise
        except SQLAlchemyError as exc:
            first_line = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            logger.error(
                "retention failed, will retry in %.0f s: error=%s", self._interval, first_line
            )
            return None
        logger.info("retention: %s", report.describe(self._settings.days))
        return report
