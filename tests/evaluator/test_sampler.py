"""The case sampler: sampling rate, dedupe, reservoir cap, redaction, expected outputs, queue."""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, create_engine, select

from evaluator.cases import CaseRow, import_cases
from evaluator.redaction import Redactor
from evaluator.sampler import CaseSampler, SamplingPolicy, choose_slot, should_sample
from evaluator.tables import BenchmarkCase, EvalResult, EvalRun, Judgment, SamplingState
from proxy.db import make_engine

REFERENCE = "big"


def policy(max_cases: int = 1_000, **redaction: Any) -> SamplingPolicy:
    return SamplingPolicy(REFERENCE, max_cases, Redactor(**redaction))


def ask(text_content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text_content}]


def stored_cases(engine: Engine, policy_name: str = "support") -> list[BenchmarkCase]:
    with Session(engine) as session:
        query = (
            select(BenchmarkCase)
            .where(BenchmarkCase.policy == policy_name)
            .order_by(col(BenchmarkCase.id))
        )
        return list(session.exec(query).all())


def seen_count(engine: Engine, policy_name: str = "support") -> int:
    with Session(engine) as session:
        state = session.get(SamplingState, policy_name)
        return state.seen if state is not None else 0


def kept_indexes(engine: Engine) -> list[int]:
    """The stream positions of the stored cases, whose messages read "request <index>"."""
    return sorted(int(case.messages[0]["content"].split()[1]) for case in stored_cases(engine))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    yield made
    made.dispose()


async def offer_stream(
    sampler: CaseSampler, first: int, last: int, served_model: str = "small"
) -> None:
    for index in range(first, last):
        sampler.offer(
            "support", ask(f"request {index}"), f"answer {index}", served_model, f"r{index}"
        )
    await sampler.flush()


# ---------------------------------------------------------------------------
# The request path's decision
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_should_sample_rate(seed: int) -> None:
    rng = random.Random(seed)

    kept = sum(should_sample(rng, 0.1) for _ in range(2_000))

    # Binomial(2000, 0.1) has mean 200 and standard deviation 13.4. Allow four deviations.
    assert 146 <= kept <= 254


def test_should_sample_edges() -> None:
    rng = random.Random(7)

    assert not any(should_sample(rng, 0.0) for _ in range(1_000))
    assert all(should_sample(rng, 1.0) for _ in range(1_000))


async def test_sampled_requests_all_stored(engine: Engine) -> None:
    rng = random.Random(11)
    sampler = CaseSampler(engine, {"support": policy()})
    chosen = [index for index in range(2_000) if should_sample(rng, 0.1)]

    for index in chosen:
        sampler.offer("support", ask(f"request {index}"), "ok", "small", f"r{index}")
    await sampler.flush()

    assert 146 <= len(chosen) <= 254
    assert kept_indexes(engine) == chosen
    assert sampler.counts.stored == len(chosen)


# ---------------------------------------------------------------------------
# Reservoir
# ---------------------------------------------------------------------------


def test_choose_slot_fills_then_replaces() -> None:
    rng = random.Random(3)

    assert choose_slot(rng, seen=1, filled=0, capacity=2) == 0
    assert choose_slot(rng, seen=2, filled=1, capacity=2) == 1
    assert choose_slot(rng, seen=5, filled=4, capacity=0) is None
    slots = {choose_slot(rng, seen=3, filled=2, capacity=2) for _ in range(200)}
    assert slots == {None, 0, 1}


def test_choose_slot_keeps_uniform_sample() -> None:
    stream_length = 1_000
    capacity = 50
    runs = 400
    per_decile = [0] * 10
    for seed in range(runs):
        rng = random.Random(seed)
        reservoir: list[int] = []
        for index in range(stream_length):
            slot = choose_slot(rng, index + 1, len(reservoir), capacity)
            if slot == len(reservoir):
                reservoir.append(index)
            elif slot is not None:
                reservoir[slot] = index
        assert len(reservoir) == capacity
        for index in reservoir:
            per_decile[index * 10 // stream_length] += 1

    # Each item is kept with probability 50/1000, so each decile contains 2,000 of the 20,000
    # kept items on average; the standard deviation is about 42.
    expected = runs * capacity / 10
    for count in per_decile:
        assert abs(count - expected) < 200


async def test_cap_keeps_exactly_max_cases(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy(max_cases=50)}, rng=random.Random(5))

    await offer_stream(sampler, 0, 1_000)

    assert len(stored_cases(engine)) == 50
    assert seen_count(engine) == 1_000
    assert sampler.counts.stored == 50 + sampler.counts.replaced
    assert sampler.counts.skipped == 1_000 - sampler.counts.stored


async def test_cap_spreads_kept_cases(engine: Engine) -> None:
    indexes: list[int] = []
    for seed in range(4):
        with Session(engine) as session:
            for case in stored_cases(engine):
                session.delete(case)
            state = session.get(SamplingState, "support")
            if state is not None:
                session.delete(state)
            session.commit()
        sampler = CaseSampler(
            engine, {"support": policy(max_cases=50)}, rng=random.Random(seed), batch_size=250
        )
        await offer_stream(sampler, 0, 1_000)
        kept = kept_indexes(engine)
        assert len(kept) == 50
        indexes.extend(kept)

    # Uniform over 0..999: mean 499.5, and the mean of 200 kept items varies by about 20.
    assert abs(statistics.mean(indexes) - 499.5) < 80
    assert min(indexes) < 100
    assert max(indexes) >= 900


async def test_cap_continues_after_restart(engine: Engine) -> None:
    first = CaseSampler(engine, {"support": policy(max_cases=50)}, rng=random.Random(21))
    first.start()
    await offer_stream(first, 0, 500)
    await first.stop()

    second = CaseSampler(engine, {"support": policy(max_cases=50)}, rng=random.Random(22))
    await offer_stream(second, 500, 1_000)

    kept = kept_indexes(engine)
    assert seen_count(engine) == 1_000
    assert len(kept) == 50
    # Each half contains 25 on average (standard deviation about 3.5). A count that restarted
    # from zero would let the second half take almost every place.
    from_second_half = sum(index >= 500 for index in kept)
    assert 12 <= from_second_half <= 38


async def test_cap_never_replaces_imported(engine: Engine) -> None:
    imported = [CaseRow(messages=ask(f"imported {index}")) for index in range(10)]
    import_cases(engine, "support", imported)
    sampler = CaseSampler(engine, {"support": policy(max_cases=20)}, rng=random.Random(8))

    await offer_stream(sampler, 0, 300)

    cases = stored_cases(engine)
    assert sum(case.source == "imported" for case in cases) == 10
    assert sum(case.source == "sampled" for case in cases) == 10
    assert sampler.counts.replaced > 0


async def test_cap_full_of_imports_keeps_nothing(engine: Engine) -> None:
    import_cases(engine, "support", [CaseRow(messages=ask(f"imported {i}")) for i in range(5)])
    sampler = CaseSampler(engine, {"support": policy(max_cases=5)}, rng=random.Random(8))

    await offer_stream(sampler, 0, 20)

    assert {case.source for case in stored_cases(engine)} == {"imported"}
    assert sampler.counts.skipped == 20


async def test_replaced_case_takes_its_results(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy(max_cases=1)}, rng=random.Random(1))
    await offer_stream(sampler, 0, 1)
    (old,) = stored_cases(engine)
    assert old.id is not None
    with Session(engine) as session:
        run = EvalRun(
            policy="support",
            status="completed",
            trigger="cli",
            models=["big"],
            case_ids=[old.id],
            budget_usd=1.0,
            started_at=old.created_at,
        )
        session.add(run)
        session.flush()
        assert run.id is not None
        result = EvalResult(
            run_id=run.id, case_id=old.id, model="big", status="ok", created_at=old.created_at
        )
        session.add(result)
        session.flush()
        assert result.id is not None
        session.add(
            Judgment(
                result_id=result.id,
                case_id=old.id,
                output_hash="h",
                judge="checks",
                rubric_version="1",
                created_at=old.created_at,
            )
        )
        session.commit()

    # With one place, request n replaces the kept case with probability 1/n, so at least one
    # of requests 2 to 40 replaces it with probability 39/40 (seed 1 does).
    await offer_stream(sampler, 1, 40)

    assert sampler.counts.replaced > 0
    assert [case.id for case in stored_cases(engine)] != [old.id]
    with Session(engine) as session:
        assert session.exec(select(EvalResult)).all() == []
        assert session.exec(select(Judgment)).all() == []
        assert len(session.exec(select(EvalRun)).all()) == 1


async def test_two_writers_share_one_reservoir(database_url: str) -> None:
    engines = [make_engine(database_url), make_engine(database_url)]
    samplers = [
        CaseSampler(
            made, {"support": policy(max_cases=30)}, rng=random.Random(index), batch_size=25
        )
        for index, made in enumerate(engines)
    ]
    try:
        await asyncio.gather(offer_stream(samplers[0], 0, 300), offer_stream(samplers[1], 300, 600))

        assert len(stored_cases(engines[0])) == 30
        assert seen_count(engines[0]) == 600
    finally:
        for made in engines:
            made.dispose()


# ---------------------------------------------------------------------------
# Dedupe, redaction and expected outputs
# ---------------------------------------------------------------------------


async def test_same_messages_stored_once(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})

    sampler.offer("support", ask("What is 2+2?"), "4", "small", "r1")
    sampler.offer("support", ask("What is 2+2?"), "4", "small", "r2")
    await sampler.flush()
    sampler.offer("support", ask("What is 2+2?"), "4", "small", "r3")
    await sampler.flush()

    assert [case.request_id for case in stored_cases(engine)] == ["r1"]
    assert sampler.counts.duplicates == 2
    assert seen_count(engine) == 1


async def test_whitespace_variants_stored_once(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})
    variants: list[list[dict[str, Any]]] = [
        [{"role": "user", "content": "What is  2+2?"}],
        [{"role": "user", "content": "  What is\n2+2?\t"}],
        [{"role": "user", "content": [{"type": "text", "text": "What is 2+2? "}]}],
    ]

    for index, messages in enumerate(variants):
        sampler.offer("support", messages, "4", "small", f"r{index}")
    await sampler.flush()

    assert len(stored_cases(engine)) == 1


async def test_same_messages_in_two_policies(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy(), "sales": policy()})

    sampler.offer("support", ask("Hi"), "Hello", "small", "r1")
    sampler.offer("sales", ask("Hi"), "Hello", "small", "r2")
    await sampler.flush()

    assert len(stored_cases(engine, "support")) == 1
    assert len(stored_cases(engine, "sales")) == 1


PERSONAL = {
    "jane.doe@example.com": "[EMAIL]",
    "+1 415 555 2671": "[PHONE]",
    "4111 1111 1111 1111": "[CARD]",
}


def stored_text(engine: Engine) -> str:
    """Every column of every case row, as the database returns it in text form."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT CAST(messages AS TEXT), expected, expected_model, criteria, "
                "CAST(checks AS TEXT), CAST(tags AS TEXT), request_id FROM benchmark_case"
            )
        ).all()
    return "\n".join(str(value) for row in rows for value in row)


async def test_redaction_before_storage(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})
    question = "I am jane.doe@example.com, phone +1 415 555 2671, card 4111 1111 1111 1111."
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Support bot. Escalate to jane.doe@example.com."},
        {"role": "user", "content": [{"type": "text", "text": question}]},
    ]
    answer = "Thanks, jane.doe@example.com: we will call +1 415 555 2671 about 4111 1111 1111 1111."

    sampler.offer("support", messages, answer, REFERENCE, "r1")
    await sampler.flush()

    dump = stored_text(engine)
    for value, placeholder in PERSONAL.items():
        assert value not in dump
        assert placeholder in dump
    for fragment in ("jane.doe", "555 2671", "1111 1111"):
        assert fragment not in dump
    (case,) = stored_cases(engine)
    assert case.expected == "Thanks, [EMAIL]: we will call [PHONE] about [CARD]."
    assert messages[1]["content"][0]["text"] == question


async def test_redacted_duplicates_stored_once(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})

    sampler.offer("support", ask("Reset the password of ann@example.com"), "ok", "small", "r1")
    sampler.offer("support", ask("Reset the password of bob@example.org"), "ok", "small", "r2")
    await sampler.flush()

    (case,) = stored_cases(engine)
    assert case.messages == ask("Reset the password of [EMAIL]")


async def test_redaction_follows_policy_settings(engine: Engine) -> None:
    settings = {
        "emails": False,
        "custom_patterns": [{"pattern": r"ORD-\d+", "placeholder": "[ORDER]"}],
    }
    sampler = CaseSampler(
        engine,
        {"support": SamplingPolicy.from_settings(REFERENCE, 10, settings)},
    )

    sampler.offer("support", ask("Order ORD-1234 for ann@example.com"), "ok", "small", "r1")
    await sampler.flush()

    (case,) = stored_cases(engine)
    assert case.messages == ask("Order [ORDER] for ann@example.com")


async def test_reference_answer_becomes_expected(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})

    sampler.offer("support", ask("From the reference"), "Answer A", REFERENCE, "r1")
    sampler.offer("support", ask("From another model"), "Answer B", "small", "r2")
    sampler.offer("support", ask("Reference, no text"), None, REFERENCE, "r3")
    await sampler.flush()

    by_request = {case.request_id: case for case in stored_cases(engine)}
    assert by_request["r1"].expected == "Answer A"
    assert by_request["r1"].expected_model == REFERENCE
    assert by_request["r2"].expected is None
    assert by_request["r2"].expected_model is None
    assert by_request["r3"].expected is None
    assert {case.source for case in by_request.values()} == {"sampled"}


async def test_case_fields(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})
    long_id = "x" * 100

    sampler.offer("support", ask("Hi"), "Hello", "small", long_id)
    await sampler.flush()

    (case,) = stored_cases(engine)
    assert case.request_id == long_id[:64]
    assert case.checks is None
    assert case.criteria is None
    assert case.created_at.tzinfo is not None


# ---------------------------------------------------------------------------
# Rejected offers
# ---------------------------------------------------------------------------


async def test_unknown_policy_rejected(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})

    queued = sampler.offer("other", ask("Hi"), "Hello", "small", "r1")

    assert not queued
    assert sampler.queued == 0
    assert sampler.counts.rejected == 1


@pytest.mark.parametrize(
    "messages",
    [
        "not a list",
        [],
        [{"role": "user"}],
        [{"role": "user", "content": "nul \x00 character"}],
    ],
)
async def test_unusable_messages_rejected(
    engine: Engine, messages: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sampler = CaseSampler(engine, {"support": policy()})

    sampler.offer("support", messages, "Hello", "small", "r1")
    await sampler.flush()

    assert stored_cases(engine) == []
    assert sampler.counts.rejected == 1
    assert "request_id=r1" in caplog.text


async def test_bad_case_does_not_block_batch(engine: Engine) -> None:
    poison_trigger(engine)
    sampler = CaseSampler(engine, {"support": policy()})

    sampler.offer("support", ask("first"), "a", "small", "r1")
    sampler.offer("support", ask("poison"), "b", "small", "poison")
    sampler.offer("support", ask("third"), "c", "small", "r3")
    await sampler.flush()

    assert [case.request_id for case in stored_cases(engine)] == ["r1", "r3"]
    assert sampler.counts.failed == 1
    assert sampler.queued == 0
    assert sampler.database_ok


def poison_trigger(engine: Engine) -> None:
    """Make the database reject any case whose request id is "poison"."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON benchmark_case "
                    "WHEN NEW.request_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                )
            )
            return
        connection.execute(
            text(
                "CREATE OR REPLACE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                "IF NEW.request_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER poison BEFORE INSERT ON benchmark_case "
                "FOR EACH ROW EXECUTE FUNCTION poison()"
            )
        )


# ---------------------------------------------------------------------------
# Queue and lifecycle
# ---------------------------------------------------------------------------


async def test_offer_never_writes(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()})

    for index in range(20):
        assert sampler.offer("support", ask(f"q{index}"), "a", "small", f"r{index}")

    assert sampler.queued == 20
    assert stored_cases(engine) == []


async def test_overflow_counted_and_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    reported: list[int] = []
    sampler = CaseSampler(engine, {"support": policy()}, max_queue=5, on_drop=reported.append)

    with caplog.at_level(logging.ERROR, logger="evaluator.sampler"):
        results = [
            sampler.offer("support", ask(f"q{index}"), "a", "small", f"r{index}")
            for index in range(8)
        ]

    assert results == [True] * 5 + [False] * 3
    assert sampler.dropped == 3
    assert sum(reported) == 3
    assert "sampled requests dropped: the queue is full (5 offers)" in caplog.text
    await sampler.stop()
    assert len(stored_cases(engine)) == 5


async def test_stop_writes_everything_queued(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()}, batch_size=100, interval=60.0)
    sampler.start()

    for index in range(250):
        sampler.offer("support", ask(f"q{index}"), "a", "small", f"r{index}")
    await sampler.stop()

    assert len(stored_cases(engine)) == 250
    assert sampler.queued == 0
    assert sampler.counts.stored == 250


async def test_background_writer_writes_full_batch(engine: Engine) -> None:
    sampler = CaseSampler(engine, {"support": policy()}, batch_size=10, interval=60.0)
    sampler.start()
    try:
        for index in range(10):
            sampler.offer("support", ask(f"q{index}"), "a", "small", f"r{index}")
        for _ in range(200):
            if sampler.counts.stored == 10:
                break
            await asyncio.sleep(0.01)

        assert len(stored_cases(engine)) == 10
    finally:
        await sampler.stop()


async def test_database_outage_keeps_offers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "later"
    engine = create_engine(f"sqlite:///{directory / 'cases.db'}")
    sampler = CaseSampler(engine, {"support": policy()})
    try:
        for index in range(3):
            sampler.offer("support", ask(f"q{index}"), "a", "small", f"r{index}")

        await sampler.flush()

        ok_during_outage = sampler.database_ok
        assert sampler.queued == 3
        assert not ok_during_outage
        assert "sampled cases not written, will retry" in caplog.text

        directory.mkdir()
        SQLModel.metadata.create_all(engine)
        await sampler.flush()

        assert sampler.queued == 0
        assert sampler.database_ok
        assert len(stored_cases(engine)) == 3
    finally:
        engine.dispose()


async def test_stop_reports_offers_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'cases.db'}")
    sampler = CaseSampler(engine, {"support": policy()})
    sampler.offer("support", ask("q"), "a", "small", "r1")
    try:
        await sampler.stop(timeout=0.3)
    finally:
        engine.dispose()

    assert "sampled requests lost at shutdown: offers=1" in caplog.text
