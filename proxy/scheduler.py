"""The evaluation schedule: each policy's evaluation and decision, run by APScheduler.

A policy runs on its own `schedule`, else on `evaluation.schedule`, else never. Every replica
schedules every policy, and the per-policy `EvaluationLock` lets one of them run it while the
others skip that turn. A run that fails is logged and does not stop the schedule. A run left
"running" by a process that died is continued as soon as the gateway starts, not at the next
scheduled time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from evaluator.run_errors import EvaluationError
from evaluator.run_store import running_run
from evaluator.schedule_spec import ScheduleSpec, parse_schedule
from proxy.eval_lock import EvaluationLock
from proxy.evaluation import evaluate_and_decide
from proxy.model_caller import GatewayModelCaller
from proxy.state import AppState

logger = logging.getLogger(__name__)


def policy_schedules(state: AppState) -> dict[str, ScheduleSpec]:
    """Return the schedule of every policy that has one."""
    config = state.loaded.config
    schedules = {}
    for name, policy in config.policies.items():
        text = policy.schedule or config.evaluation.schedule
        if text is not None:
            schedules[name] = parse_schedule(text)
    return schedules


async def acquire(lock: EvaluationLock) -> bool:
    """Take `lock` in a worker thread; if cancelled meanwhile, release what the thread took."""
    attempt = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        await attempt
        lock.release()
        raise


class EvaluationScheduler:
    """Runs scheduled evaluations inside the gateway process, on its event loop."""

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> int:
        """Schedule every policy that has a schedule; return how many are scheduled."""
        schedules = policy_schedules(self._state)
        for policy, spec in schedules.items():
            trigger = (
                IntervalTrigger(seconds=spec.interval_seconds, timezone=UTC)
                if spec.interval_seconds is not None
                else CronTrigger.from_crontab(spec.cron, timezone=UTC)
            )
            first_run: dict[str, Any] = {}
            unfinished = self._unfinished_run(policy)
            if unfinished is not None:
                first_run["next_run_time"] = datetime.now(UTC)
                logger.info("evaluation run to continue now: policy=%s run=%d", policy, unfinished)
            self._scheduler.add_job(
                self._launch,
                trigger,
                args=[policy],
                id=f"evaluate:{policy}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                **first_run,
            )
            logger.info("evaluation scheduled: policy=%s schedule=%s", policy, spec.text)
        if schedules:
            self._scheduler.start()
        return len(schedules)

    def _unfinished_run(self, policy: str) -> int | None:
        """Return the id of the policy's run still marked "running", if there is one.

        At start this process runs no evaluation, so such a run was left by a process that
        stopped or died mid-run, or another process runs it now. `run_policy` takes the
        evaluation lock before it continues the run, so only a run left behind is continued.
        """
        assert self._state.engine is not None
        run = running_run(self._state.engine, policy)
        return None if run is None else run.id

    async def stop(self) -> None:
        """Stop scheduling and cancel runs in progress (a later run continues them)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def running(self, policy: str) -> bool:
        """Tell whether this process is evaluating `policy` right now."""
        return any(task.get_name() == f"evaluate:{policy}" for task in self._running)

    def start_now(self, policy: str) -> bool:
        """Start an evaluation of `policy` now; False if this process already runs one.

        Another process may hold the policy's lock; the run then ends at once with a log line,
        as a scheduled run would.
        """
        if self.running(policy):
            return False
        self._start_task(policy, "api")
        return True

    async def _launch(self, policy: str) -> None:
        if self.running(policy):
            logger.info("evaluation skipped: policy=%s reason=a run is in progress", policy)
            return
        self._start_task(policy, "schedule")

    def _start_task(self, policy: str, trigger: str) -> None:
        # The run is a task of its own so that the job returns at once and stop() can cancel it.
        task = asyncio.create_task(self.run_policy(policy, trigger), name=f"evaluate:{policy}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def run_policy(self, policy: str, trigger: str = "schedule") -> None:
        """Evaluate one policy now if no other process is evaluating it."""
        state = self._state
        assert state.engine is not None and state.forwarder is not None
        lock = EvaluationLock(state.engine, policy)
        if not await acquire(lock):
            logger.info("evaluation skipped: policy=%s reason=another process runs it", policy)
            return
        try:
            logger.info("evaluation started: policy=%s trigger=%s", policy, trigger)
            outcome = await evaluate_and_decide(
                state.engine,
                state.loaded,
                GatewayModelCaller(state.forwarder),
                policy,
                routes=state.routes,
                trigger=trigger,
            )
            summary = outcome.summary
            decided = outcome.decision_id or f"none ({outcome.no_decision_reason})"
            logger.info(
                "evaluation finished: policy=%s run=%d status=%s spent_usd=%.6f decision=%s",
                policy,
                summary.run_id,
                summary.status,
                summary.report.spent_usd,
                decided,
            )
        except EvaluationError as exc:
            logger.warning("evaluation not run: policy=%s reason=%s", policy, exc)
        except Exception:
            logger.exception("evaluation failed: policy=%s", policy)
        finally:
            await asyncio.to_thread(lock.release)
