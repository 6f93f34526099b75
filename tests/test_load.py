"""The short variant of benchmarks/load.py: 5 s at 16 connections, with its pass conditions.

The full run (60 s at 64 connections) and its figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_load(*options: str) -> tuple[int, dict[str, Any]]:
    command = [sys.executable, str(ROOT / "benchmarks/load.py"), "--json", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.stdout.strip(), result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return result.returncode, report


@pytest.mark.slow
def test_short_load_loses_nothing() -> None:
    code, report = run_load("--seconds", "5", "--connections", "16", "--warmup-seconds", "2")

    assert report["errors"] == {}
    assert report["sent"] > 100, "the load generator sent too few requests to judge"
    assert report["rows"] == report["sent"] + report["warmup_sent"]
    assert report["rss_growth"] < 0.10
    assert report["gateway_exit_code"] == 0
    assert report["failures"] == []
    assert code == 0
    # The upstream answers in about 0.3 s, so 16 connections allow about 50 requests/s.
    assert report["requests_per_second"] > 25
    assert report["p99_ms"] < 2000
