"""Database set-up: processes that start together all get their tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CREATE = "import sys; from proxy.db import make_engine; make_engine(sys.argv[1]).dispose()"


def test_concurrent_table_creation(tmp_path: Path) -> None:
    failures = []
    for round_number in range(6):
        url = f"sqlite:///{tmp_path / f'round{round_number}.db'}"
        processes = [
            subprocess.Popen([sys.executable, "-c", CREATE, url], stderr=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        for process in processes:
            _, stderr = process.communicate(timeout=60)
            if process.returncode != 0:
                failures.append(stderr.strip().splitlines()[-1])

    assert failures == [], failures
