"""The interface the server uses for a simulated model, whichever mode it comes from.

A `SimulatedModel` has a name, a token counter and a latency profile, and turns a request's
messages into a `Reply` (or raises `SimulatedAPIError`, as a replayed model does for a
conversation it has no recording of). Personas (`personas.Persona`) and replayed models
(`replay.ReplayModel`) implement it.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.simulator.latency import LatencyProfile, Timing, model_rng, profile_timing
from proxy.tokens import TokenCounter


@dataclass(frozen=True)
class Reply:
    """The text of one reply, with recorded usage and times when there are any."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None


class SimulatedModel(ABC):
    """A model served by the simulator."""

    kind: str = "model"

    def __init__(
        self, name: str, profile: LatencyProfile, counter: TokenCounter, seed: int = 0
    ) -> None:
        self.name = name
        self.profile = profile
        self.counter = counter
        self.rng: random.Random = model_rng(seed, name)

    @abstractmethod
    def reply(self, messages: Sequence[Mapping[str, Any]]) -> Reply:
        """Return the reply to a request with these messages."""

    def timing(self, reply: Reply, tokens: int) -> Timing:
        """Return the delays of `reply`, which has `tokens` tokens. Personas draw jitter here."""
        return profile_timing(self.profile, self.rng)

    @abstractmethod
    def describe(self) -> str:
        """Return one line for `pareto simulate`'s list of models."""
