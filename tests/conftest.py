"""Shared fixtures: the fake upstream, databases and a running gateway."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel, create_engine

from proxy.db import normalize_url
from tests.fakes.fixtures import fake_upstream
from tests.gateway import RunningGateway

__all__ = ["fake_upstream"]

# PARETO_TEST_POSTGRES_URL lets two test runs on one machine use separate databases.
POSTGRES_URL = os.environ.get(
    "PARETO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def reset_postgres(url: str = POSTGRES_URL) -> None:
    """Drop every table of the gateway in the test database."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))
        SQLModel.metadata.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pareto.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on the local PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pareto.db'}"
    reset_postgres()
    return POSTGRES_URL


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def start_gateway(sqlite_url: str) -> Iterator[GatewayFactory]:
    """Start gateways for a test and stop them afterwards."""
    started: list[RunningGateway] = []

    def start(
        config: dict[str, Any], database_url: str | None = None, **options: Any
    ) -> RunningGateway:
        gateway = RunningGateway(config, database_url or sqlite_url, **options).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
