"""Settings of one routing policy: quality floors, ceilings, switching threshold and mode."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    """Policy mode, which sets whether a decision is applied, only recorded, or pinned."""

    AUTO = "auto"
    """The decision is applied to the route table."""
    RECOMMEND = "recommend"
    """The decision is recorded but not applied."""
    PINNED = "pinned"
    """The decision always chooses the ``pin`` model and is applied."""


@dataclass(frozen=True)
class PolicySettings:
    """Floors, ceilings and switching rules of one policy, with the defaults of the config file.

    Quality floors apply to the lower bound of the ``confidence`` bootstrap interval of a
    candidate's mean judge score (1 to 10). ``min_quality`` is an absolute floor and
    ``min_quality_ratio`` a share of the reference model's mean score. None turns a floor or a
    ceiling off. ``min_savings`` is the share of the current model's cost per request that a
    cheaper model must save before the route changes to it. ``mode`` may also be given as its
    string value. Construction raises ValueError naming the first invalid setting.
    """

    min_quality: float | None = 8.0
    min_quality_ratio: float | None = 0.95
    confidence: float = 0.90
    max_latency_p95_ms: float | None = 4000.0
    max_error_rate: float | None = 0.02
    min_cases: int = 30
    min_savings: float = 0.10
    mode: Mode = Mode.AUTO
    pin: str | None = None

    def __post_init__(self) -> None:
        _validate_number(
            "min_quality",
            self.min_quality,
            lambda value: 1.0 <= value <= 10.0,
            "a judge score from 1 to 10, or null for no absolute floor",
        )
        _validate_number(
            "min_quality_ratio",
            self.min_quality_ratio,
            lambda value: 0.0 < value <= 1.0,
            "a share of the reference model's mean score greater than 0 and at most 1, "
            "or null for no relative floor",
        )
        _validate_number(
            "confidence",
            self.confidence,
            lambda value: 0.0 < value < 1.0,
            "a number strictly between 0 and 1, such as 0.90",
            optional=False,
        )
        _validate_number(
            "max_latency_p95_ms",
            self.max_latency_p95_ms,
            lambda value: value > 0.0,
            "a number of milliseconds greater than 0, or null for no latency ceiling",
        )
        _validate_number(
            "max_error_rate",
            self.max_error_rate,
            lambda value: 0.0 <= value <= 1.0,
            "a share from 0 to 1 such as 0.02, or null for no error rate ceiling",
        )
        _validate_min_cases(self.min_cases)
        _validate_number(
            "min_savings",
            self.min_savings,
            lambda value: 0.0 <= value < 1.0,
            "a share of the current cost from 0 to below 1, such as 0.10",
            optional=False,
        )
        self._validate_mode_and_pin()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PolicySettings:
        """Build settings from config keys, using the defaults for missing keys.

        Raises ValueError for an unknown key or an invalid value.
        """
        known = [field.name for field in fields(cls)]
        for key in values:
            if key not in known:
                raise ValueError(
                    f"Unknown policy setting {key!r}: expected one of {', '.join(known)}."
                )
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as config keys and plain JSON values."""
        data = asdict(self)
        data["mode"] = self.mode.value
        return data

    def _validate_mode_and_pin(self) -> None:
        # The config file gives the mode as a string, so accept one and store the member.
        mode: object = self.mode
        if not isinstance(mode, Mode):
            if not isinstance(mode, str) or mode not in {member.value for member in Mode}:
                choices = ", ".join(member.value for member in Mode)
                raise ValueError(f"Invalid mode {mode!r}: expected one of {choices}.")
            object.__setattr__(self, "mode", Mode(mode))

        if self.pin is not None and (not isinstance(self.pin, str) or not self.pin.strip()):
            raise ValueError(f"Invalid pin {self.pin!r}: expected a model name.")
        if self.mode is Mode.PINNED and self.pin is None:
            raise ValueError("Missing pin: mode is pinned, so set pin to the model to route to.")
        if self.mode is not Mode.PINNED and self.pin is not None:
            raise ValueError(
                f"Invalid pin {self.pin!r} with mode {self.mode.value!r}: pin takes effect only "
                "when mode is pinned, so set mode to pinned or remove pin."
            )


def _validate_number(
    name: str,
    value: object,
    in_range: Callable[[float], bool],
    expected: str,
    *,
    optional: bool = True,
) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not in_range(value)
    ):
        raise ValueError(f"Invalid {name} {value!r}: expected {expected}.")


def _validate_min_cases(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"Invalid min_cases {value!r}: expected a whole number of judged cases of at least 1."
        )
