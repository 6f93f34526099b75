"""Small datasets, configs and replay files for the simulator's tests, written to tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

SYSTEM = "You are the support assistant of Example Shop. Answer in two sentences at most."


def conversation(number: int) -> dict[str, Any]:
    """Dataset row `number`: a question about order A-<number>, with one check on it."""
    order = f"A-{number:04d}"
    return {
        "id": f"order-{number:04d}",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Hello, where is my order {order}? It is late."},
        ],
        "expected": f"Order {order} left our warehouse yesterday and arrives on Friday.",
        "criteria": "Names the order and the delivery day.",
        "checks": [{"type": "contains", "value": [order, "Friday"]}],
        "flawed": [
            {"reply": "Your order is on its way and arrives soon.", "misses": "order and day"},
            {"reply": f"Order {order} arrives on Monday.", "misses": "the right day"},
        ],
        "tags": ["shipping"],
    }


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
        encoding="utf-8",
    )
    return path


def write_dataset(tmp_path: Path, count: int = 20, name: str = "dataset.jsonl") -> Path:
    return write_jsonl(tmp_path / name, (conversation(n) for n in range(count)))


def persona(name: str, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "ttft_ms": 400,
        "tokens_per_second": 80,
        "flaw_rate": 0.25,
        "dataset": "dataset.jsonl",
    }
    entry.update(fields)
    return entry


def write_config(tmp_path: Path, models: list[dict[str, Any]], name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"models": models}, sort_keys=False), encoding="utf-8")
    return path


def recording(model: str, user: str, answer: object, **fields: Any) -> dict[str, Any]:
    """A replay row of one user turn with the shop's system prompt."""
    row: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        "answer": answer,
    }
    row.update(fields)
    return row
