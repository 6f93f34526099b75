"""The set of models one simulator serves, built from persona configs and replay files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from proxy.simulator.errors import SimulatedAPIError, SimulatorFileError
from proxy.simulator.latency import load_profiles
from proxy.simulator.models import SimulatedModel
from proxy.simulator.personas import build_personas, load_persona_specs
from proxy.simulator.replay import build_replay_models


@dataclass
class Catalog:
    """Models by name. Names are unique across personas and replayed models."""

    models: dict[str, SimulatedModel] = field(default_factory=dict)

    @classmethod
    def of(cls, models: Iterable[SimulatedModel]) -> Catalog:
        """Build a catalog of these models. Raises `SimulatorFileError` when two share a name."""
        catalog = cls()
        problems = []
        for model in models:
            other = catalog.models.get(model.name)
            if other is not None:
                problems.append(
                    f"model name '{model.name}' is used twice: by a {other.kind} and by a "
                    f"{model.kind}; names must be unique across --config and --replay"
                )
                continue
            catalog.models[model.name] = model
        if problems:
            raise SimulatorFileError(problems)
        return catalog

    def __iter__(self) -> Iterator[SimulatedModel]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def names(self) -> list[str]:
        return list(self.models)

    def get(self, name: str) -> SimulatedModel:
        """Return the model named `name`, or raise a 404 `model_not_found` naming the others."""
        model = self.models.get(name)
        if model is not None:
            return model
        known = "; ".join(
            f"{kind}: {', '.join(m.name for m in self if m.kind == kind)}"
            for kind in dict.fromkeys(m.kind for m in self)
        )
        raise SimulatedAPIError(
            404,
            f"The model '{name}' does not exist on this simulator. Known models ({known}).",
            code="model_not_found",
            param="model",
        )


def build_catalog(
    config: Path | None = None,
    replay: Sequence[Path] = (),
    profile: Path | None = None,
    seed: int = 0,
) -> Catalog:
    """Load a persona config and replay files into one catalog.

    Raises `SimulatorFileError` listing every problem found, in any of the files.
    """
    if config is None and not replay:
        raise SimulatorFileError(["give a persona config, a replay file, or both"])
    problems: list[str] = []
    models: list[SimulatedModel] = []
    if config is not None:
        try:
            models.extend(build_personas(load_persona_specs(config), seed))
        except SimulatorFileError as exc:
            problems.extend(exc.problems)
    if replay:
        try:
            profiles = load_profiles(profile) if profile is not None else {}
            models.extend(build_replay_models(replay, profiles, seed))
        except SimulatorFileError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SimulatorFileError(problems)
    return Catalog.of(models)
