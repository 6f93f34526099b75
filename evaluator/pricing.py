"""Per-token prices and the cost of one call.

Prices come from a deployment's `model_info` first, else from the price table that litellm
bundles (`model_prices_and_context_window_backup.json`, read as a file so that the seconds-long
`import litellm` stays off the gateway's start), else they are unknown and cost 0.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

logger = logging.getLogger(__name__)

PRICE_TABLE_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class Prices:
    """USD per token. `known` is False when no source had a price for the model."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    known: bool = False

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """Cost in USD of one call; cached input tokens are billed at the cached price."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (prompt_tokens - cached) * self.input
            + cached * cached_price
            + completion_tokens * self.output
        )


@cache
def bundled_price_table() -> dict[str, dict[str, Any]]:
    """Load litellm's bundled price table, or an empty table when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    table_path = Path(next(iter(spec.submodule_search_locations))) / PRICE_TABLE_FILE
    try:
        table = orjson.loads(table_path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        logger.warning("cannot read litellm's price table at %s: %s", table_path, exc)
        return {}
    return table if isinstance(table, dict) else {}


def lookup_prices(
    model: str,
    input_cost: float | None = None,
    output_cost: float | None = None,
    cached_input_cost: float | None = None,
    table: dict[str, dict[str, Any]] | None = None,
) -> Prices:
    """Resolve the prices of `model` (a litellm model string such as "openai/gpt-4o").

    Explicit costs win. Otherwise the bundled table is searched for the whole string, then for
    the name without its provider prefix.
    """
    if input_cost is not None or output_cost is not None:
        return Prices(input_cost or 0.0, output_cost or 0.0, cached_input_cost, known=True)

    entries = bundled_price_table() if table is None else table
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        entry = entries.get(name)
        if entry and "input_cost_per_token" in entry:
            return Prices(
                float(entry.get("input_cost_per_token") or 0.0),
                float(entry.get("output_cost_per_token") or 0.0),
                _optional_float(entry.get("cache_read_input_token_cost")),
                known=True,
            )
    return Prices()


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
