"""Fixtures: a dataset, a persona config and replay files in tmp_path, and running simulators."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.simulator import Catalog, ThreadedSimulator, build_catalog
from tests.proxy.simulator.helpers import (
    persona,
    recording,
    write_config,
    write_dataset,
    write_jsonl,
)

FAST = 1000.0

StartSimulator = Callable[..., ThreadedSimulator]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    """Two personas on a 20-conversation dataset (no jitter) and one replayed model."""
    write_dataset(tmp_path, 20)
    config = write_config(
        tmp_path,
        [
            persona("sim-good", flaw_rate=0.0, jitter=0),
            persona("sim-weak", flaw_rate=0.5, jitter=0, ttft_ms=200, tokens_per_second=100),
        ],
    )
    replay = write_jsonl(
        tmp_path / "replay.jsonl",
        [
            recording(
                "gpt-4",
                "What are your opening hours?",
                "We are open 9am to 6pm, Monday to Saturday.",
            ),
        ],
    )
    return build_catalog(config, [replay])


@pytest.fixture
def start_simulator(catalog: Catalog) -> Iterator[StartSimulator]:
    started: list[ThreadedSimulator] = []

    def start(speed: float = FAST, models: Catalog | None = None) -> ThreadedSimulator:
        simulator = ThreadedSimulator(models or catalog, speed=speed).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def simulator(start_simulator: StartSimulator) -> ThreadedSimulator:
    return start_simulator()
