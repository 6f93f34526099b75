"""Database engine: SQLite by default, PostgreSQL for a postgresql:// URL."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import SQLModel, create_engine

from evaluator import tables as evaluator_tables  # noqa: F401 - registers the tables
from proxy import tables  # noqa: F401 - registers the tables on SQLModel.metadata


def normalize_url(url: str) -> str:
    """Pick the installed PostgreSQL driver (psycopg 3) for plain postgres:// URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """Create the engine and the tables that do not exist yet."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    # NOTE: tables are created, never migrated: a column added later needs a manual ALTER.
    _create_tables(engine)
    return engine


def _create_tables(engine: Engine, attempts: int = 5) -> None:
    # Worker processes started together (`pareto serve --workers N`) race to create the
    # tables: one finds a table the other has just created, or a locked SQLite file. The
    # creation checks what exists first, so trying again after a moment succeeds.
    for attempt in range(attempts):
        try:
            SQLModel.metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def ping(engine: Engine) -> None:
    """Run a trivial query; raises when the database cannot be reached."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
