"""The case sampler: successful requests become a policy's sampled benchmark cases.

The request path calls `should_sample` with the policy's ``sample_rate`` and, when it returns
true, `CaseSampler.offer`. An offer only appends to a bounded in-memory queue. A background
task writes the queue in batches from a worker thread, and for each offer there:

1. redacts the messages and the answer with the policy's redaction settings, so that nothing
   unredacted is stored, hashed or compared;
2. skips it when the policy already has a case with the same content hash (see
   `evaluator.cases.content_hash`);
3. keeps the answer as the expected output only when the policy's reference model served it;
4. stores it under the policy's ``max_cases`` cap by reservoir sampling (`choose_slot`), so
   that the sampled cases stay a uniform sample of all distinct requests offered so far.

While the database is unreachable, offers wait in the queue. An offer that arrives when the
queue is full is dropped, counted in `CaseSampler.dropped` and reported through ``on_drop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import Session, col, select

from evaluator.cases import (
    CaseRowError,
    check_storable,
    content_hash,
    lock_sampling_state,
    parse_messages,
    utc_now,
)
from evaluator.redaction import Redactor
from evaluator.tables import BenchmarkCase, EvalResult, Judgment

logger = logging.getLogger(__name__)

SAMPLED = "sampled"
IMPORTED = "imported"
REQUEST_ID_MAX_LENGTH = 64
LOG_INTERVAL_SECONDS = 10.0


def should_sample(rng: random.Random, rate: float) -> bool:
    """Decide with probability ``rate`` whether a successful request is offered to the sampler."""
    return rate > 0 and rng.random() < rate


def choose_slot(rng: random.Random, seen: int, filled: int, capacity: int) -> int | None:
    """Place the ``seen``-th distinct item in a reservoir of ``capacity`` (algorithm R).

    ``filled`` is the number of items in the reservoir. Returns ``filled`` to append the item,
    a smaller index to replace the item there, or None to leave the new item out. Once the
    reservoir is full, each of the ``seen`` items so far is in it with probability
    ``capacity / seen``.
    """
    if filled < capacity:
        return filled
    if capacity <= 0 or filled == 0 or rng.random() >= capacity / seen:
        return None
    return rng.randrange(filled)


@dataclass(frozen=True)
class SamplingPolicy:
    """Sampler settings of one policy: its reference model, case cap and redactor."""

    reference: str
    max_cases: int
    redactor: Redactor

    @classmethod
    def from_settings(
        cls, reference: str, max_cases: int, redaction: Mapping[str, Any]
    ) -> SamplingPolicy:
        """Build from config values. ``redaction`` has the keys of `Redactor.from_settings`.

        Raises `evaluator.redaction.RedactionConfigError` for an invalid custom pattern.
        """
        return cls(reference, max_cases, Redactor.from_settings(redaction))


class _Offer(NamedTuple):
    policy: str
    messages: Sequence[Mapping[str, Any]]
    answer: str | None
    served_model: str
    request_id: str
    offered_at: float  # Unix time


@dataclass(frozen=True)
class _Candidate:
    """A redacted offer, ready to store."""

    policy: str
    content_hash: str
    messages: list[dict[str, Any]]
    expected: str | None
    expected_model: str | None
    request_id: str
    created_at: datetime


@dataclass
class SamplerCounts:
    """Outcomes of the offers written so far, by kind."""

    stored: int = 0  # cases inserted, including those that replaced another case
    replaced: int = 0  # stored cases that took the place of an older sampled case
    duplicates: int = 0  # offers whose content hash the policy already had
    skipped: int = 0  # distinct offers that the full reservoir left out
    rejected: int = 0  # offers with an unknown policy or messages that cannot be stored
    failed: int = 0  # offers that a retry could not store, such as a value too long

    def add(self, other: SamplerCounts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


class CaseSampler:
    """Background writer of sampled `BenchmarkCase` rows, as the module docstring describes."""

    def __init__(
        self,
        engine: Engine,
        policies: Mapping[str, SamplingPolicy],
        *,
        rng: random.Random | None = None,
        max_queue: int = 10_000,
        batch_size: int = 200,
        interval: float = 1.0,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._policies = dict(policies)
        # Only the writer uses this generator, one batch at a time, so it needs no lock.
        self._rng = rng or random.Random()
        self._queue: deque[_Offer] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._interval = interval
        self._on_drop = on_drop
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_drop_log = -LOG_INTERVAL_SECONDS
        self._last_reject_log = -LOG_INTERVAL_SECONDS
        self.counts = SamplerCounts()
        self.dropped = 0
        self.database_ok = True

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(
        self,
        policy: str,
        messages: Sequence[Mapping[str, Any]],
        answer: str | None,
        served_model: str,
        request_id: str,
    ) -> bool:
        """Queue one successful request of ``policy``; never blocks and never reads the database.

        ``messages`` are the request's chat messages and ``answer`` the text of the reply.
        They are read later by the writer thread, so the caller must not change them
        afterwards. Returns False when the offer was not queued: the policy is not one of the
        sampler's, or the queue is full.
        """
        if policy not in self._policies:
            self._reject(f"unknown policy {policy!r}", request_id)
            self.counts.rejected += 1
            return False
        if len(self._queue) >= self._max_queue:
            self._drop(1)
            return False
        self._queue.append(_Offer(policy, messages, answer, served_model, request_id, time.time()))
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()
        return True

    def start(self) -> None:
        """Start the background writer on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="case-sampler")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a drain deadline
        """Stop the background writer, then write every queued offer.

        Offers still queued when the database stays unreachable past ``timeout`` seconds are
        lost, and logged as lost.
        """
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            if not await self._write_batch():
                await asyncio.sleep(0.2)
        if self._queue:
            logger.error(
                "sampled requests lost at shutdown: offers=%d reason=database unavailable",
                len(self._queue),
            )
        logger.info(
            "case sampler stopped: stored=%d replaced=%d duplicates=%d dropped=%d failed=%d",
            self.counts.stored,
            self.counts.replaced,
            self.counts.duplicates,
            self.dropped,
            self.counts.failed,
        )

    async def flush(self) -> None:
        """Write everything queued now, unless the database is unreachable."""
        while self._queue:
            if not await self._write_batch():
                return

    async def _run(self) -> None:
        # Batches are never cancelled halfway: a cancelled await would leave the worker
        # thread writing offers that are no longer queued.
        backoff = self._interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and not self._stopping:
                if await self._write_batch():
                    backoff = self._interval
                    continue
                backoff = min(backoff * 2, 30.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._wakeup.wait()
                break

    async def _write_batch(self) -> bool:
        size = min(self._batch_size, len(self._queue))
        batch = [self._queue.popleft() for _ in range(size)]
        try:
            counts = await asyncio.to_thread(self._write, batch)
        except (SQLAlchemyError, OSError) as exc:
            self._requeue(batch)
            if self.database_ok:
                logger.error("sampled cases not written, will retry: error=%s", _first_line(exc))
            self.database_ok = False
            return False

        if not self.database_ok:
            logger.info("sampled cases written again after a database outage")
        self.database_ok = True
        self.counts.add(counts)
        return True

    def _requeue(self, batch: list[_Offer]) -> None:
        self._queue.extendleft(reversed(batch))
        overflow = len(self._queue) - self._max_queue
        for _ in range(max(0, overflow)):
            self._queue.pop()
        if overflow > 0:
            self._drop(overflow)

    def _drop(self, count: int) -> None:
        self.dropped += count
        if self._on_drop is not None:
            self._on_drop(count)
        now = time.monotonic()
        if now - self._last_drop_log >= LOG_INTERVAL_SECONDS:
            self._last_drop_log = now
            logger.error(
                "sampled requests dropped: the queue is full (%d offers); dropped so far: %d",
                self._max_queue,
                self.dropped,
            )

    def _reject(self, reason: str, request_id: str) -> None:
        # Both the event loop and the writer thread call this. A race between them only
        # changes how often the line is logged; `counts.rejected` has the exact number.
        now = time.monotonic()
        if now - self._last_reject_log >= LOG_INTERVAL_SECONDS:
            self._last_reject_log = now
            logger.warning(
                "sampled request not stored (repeats are logged every %.0f s): "
                "request_id=%s reason=%s",
                LOG_INTERVAL_SECONDS,
                request_id,
                reason,
            )

    # -----------------------------------------------------------------------
    # The worker thread
    # -----------------------------------------------------------------------

    def _write(self, batch: Sequence[_Offer]) -> SamplerCounts:
        """Redact and store a batch. Raises only errors that retrying the whole batch may fix."""
        counts = SamplerCounts()
        candidates = []
        for offer in batch:
            candidate = self._prepare(offer)
            if candidate is None:
                counts.rejected += 1
            else:
                candidates.append(candidate)

        try:
            counts.add(self._store(candidates))
        except SQLAlchemyError as exc:
            if _is_transient(exc):
                raise
            # One bad case must not block the queue: store the batch case by case instead,
            # and give up on the cases that fail again.
            for candidate in candidates:
                counts.add(self._store_alone(candidate))
        return counts

    def _store_alone(self, candidate: _Candidate) -> SamplerCounts:
        try:
            return self._store([candidate])
        except SQLAlchemyError as exc:
            if _is_transient(exc):
                raise
            logger.error(
                "sampled case not stored: policy=%s request_id=%s error=%s",
                candidate.policy,
                candidate.request_id,
                _first_line(exc),
            )
            return SamplerCounts(failed=1)

    def _prepare(self, offer: _Offer) -> _Candidate | None:
        policy = self._policies[offer.policy]
        redactor = policy.redactor
        expected = None
        expected_model = None
        try:
            messages = redactor.redact_messages(parse_messages(offer.messages))
            check_storable(messages, "messages")
            if offer.served_model == policy.reference and offer.answer:
                expected = redactor.redact_text(offer.answer)
                expected_model = offer.served_model
                check_storable(expected, "answer")
        except CaseRowError as exc:
            self._reject(str(exc), offer.request_id)
            return None

        return _Candidate(
            policy=offer.policy,
            content_hash=content_hash(messages),
            messages=messages,
            expected=expected,
            expected_model=expected_model,
            request_id=offer.request_id[:REQUEST_ID_MAX_LENGTH],
            created_at=datetime.fromtimestamp(offer.offered_at, UTC),
        )

    def _store(self, candidates: Sequence[_Candidate]) -> SamplerCounts:
        counts = SamplerCounts()
        by_policy: dict[str, list[_Candidate]] = {}
        for candidate in candidates:
            by_policy.setdefault(candidate.policy, []).append(candidate)

        with Session(self._engine) as session:
            # Policies in name order, so that two writers locking the same ones cannot deadlock.
            for policy in sorted(by_policy):
                counts.add(self._store_policy(session, policy, by_policy[policy]))
            session.commit()
        return counts

    def _store_policy(
        self, session: Session, policy: str, candidates: Sequence[_Candidate]
    ) -> SamplerCounts:
        counts = SamplerCounts()
        state = lock_sampling_state(session, policy)
        hashes = {candidate.content_hash for candidate in candidates}
        known = set(
            session.exec(
                select(BenchmarkCase.content_hash).where(
                    BenchmarkCase.policy == policy, col(BenchmarkCase.content_hash).in_(hashes)
                )
            ).all()
        )
        reservoir = _sampled_ids(session, policy)
        # Imported cases are never replaced, so sampled cases share what they leave of the cap.
        capacity = max(0, self._policies[policy].max_cases - _imported_count(session, policy))
        # A count behind the stored cases (a state row lost or added later) would make every
        # new request replace one, so it starts at no fewer than the sampled cases stored.
        seen = max(state.seen, len(reservoir))

        for candidate in candidates:
            if candidate.content_hash in known:
                counts.duplicates += 1
                continue
            known.add(candidate.content_hash)
            seen += 1
            slot = choose_slot(self._rng, seen, len(reservoir), capacity)
            if slot is None:
                counts.skipped += 1
                continue
            # Insert before deleting: SQLite reuses the largest id once its row is gone, and
            # a new case under an old id would inherit references to the replaced case.
            case_id = _insert_case(session, candidate)
            counts.stored += 1
            if slot == len(reservoir):
                reservoir.append(case_id)
                continue
            _delete_case(session, reservoir[slot])
            reservoir[slot] = case_id
            counts.replaced += 1

        state.seen = seen
        state.updated_at = utc_now()
        session.add(state)
        return counts


def _sampled_ids(session: Session, policy: str) -> list[int]:
    query = (
        select(BenchmarkCase.id)
        .where(BenchmarkCase.policy == policy, BenchmarkCase.source == SAMPLED)
        .order_by(col(BenchmarkCase.id))
    )
    return [case_id for case_id in session.exec(query).all() if case_id is not None]


def _imported_count(session: Session, policy: str) -> int:
    query = (
        select(func.count())
        .select_from(BenchmarkCase)
        .where(BenchmarkCase.policy == policy, BenchmarkCase.source == IMPORTED)
    )
    return session.exec(query).one()


def _insert_case(session: Session, candidate: _Candidate) -> int:
    statement = (
        insert(BenchmarkCase)
        .values(
            policy=candidate.policy,
            source=SAMPLED,
            content_hash=candidate.content_hash,
            messages=candidate.messages,
            expected=candidate.expected,
            expected_model=candidate.expected_model,
            request_id=candidate.request_id,
            created_at=candidate.created_at,
        )
        .returning(col(BenchmarkCase.id))
    )
    case_id: int = session.execute(statement).scalar_one()
    return case_id


def _delete_case(session: Session, case_id: int) -> None:
    """Delete a case replaced in the reservoir, with its evaluation results and judgments."""
    # NOTE: the replaced case's results leave past runs too, because eval_result rows
    # reference the case by a foreign key; the stored routing decisions keep their tables.
    results = select(EvalResult.id).where(EvalResult.case_id == case_id)
    session.execute(
        delete(Judgment).where(
            or_(col(Judgment.case_id) == case_id, col(Judgment.result_id).in_(results))
        )
    )
    session.execute(delete(EvalResult).where(col(EvalResult.case_id) == case_id))
    session.execute(delete(BenchmarkCase).where(col(BenchmarkCase.id) == case_id))


def _is_transient(exc: SQLAlchemyError) -> bool:
    """Tell errors that a later retry may fix (connection, lock, pool) from the others."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
