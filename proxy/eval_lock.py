"""A per-policy lock so that one process at a time evaluates a policy.

On PostgreSQL it is a session advisory lock, held on its own connection for the whole run: the
server releases it when that connection closes, so a process that dies cannot leave it taken.
On SQLite, whose replicas share one host, it is an exclusive `flock` on a file next to the
database, which the kernel releases when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine


def advisory_key(policy: str) -> int:
    """Map a policy name to a signed 64-bit advisory lock key, the same in every process."""
    digest = hashlib.blake2b(f"pareto-evaluation:{policy}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class EvaluationLock:
    """The policy's evaluation lock, taken without waiting. `acquired` is True while held."""

    def __init__(self, engine: Engine, policy: str) -> None:
        self._engine = engine
        self._policy = policy
        self._connection: Connection | None = None
        self._file: IO[Any] | None = None
        self.acquired = False

    def acquire(self) -> bool:
        if self._engine.dialect.name == "postgresql":
            self.acquired = self._acquire_advisory()
        else:
            self.acquired = self._acquire_file()
        return self.acquired

    def release(self) -> None:
        if self._connection is not None:
            try:
                if self.acquired:
                    key = advisory_key(self._policy)
                    self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            finally:
                self._connection.close()
                self._connection = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self.acquired = False

    def _acquire_advisory(self) -> bool:
        self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        key = advisory_key(self._policy)
        query = text("SELECT pg_try_advisory_lock(:key)")
        taken = bool(self._connection.execute(query, {"key": key}).scalar())
        if not taken:
            self._connection.close()
            self._connection = None
        return taken

    def _acquire_file(self) -> bool:
        database = self._engine.url.database
        if not database or database == ":memory:":
            return True  # an in-memory database lives in one process only
        digest = hashlib.sha256(self._policy.encode()).hexdigest()[:16]
        path = Path(f"{database}.evaluation-{digest}.lock")
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {self._policy}\n")
        handle.flush()
        self._file = handle
        return True

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
