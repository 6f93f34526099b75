"""Pareto's own configuration sections: `policies:` (workloads) and `evaluation:`.

```yaml
policies:
  support-bot:                 # a workload; clients may send model="support-bot"
    match_models: [gpt-5]      # requests naming these models belong to this policy too
    reference: gpt-5           # the incumbent; its answers are the default expected outputs
    candidates: [gpt-5, claude-haiku, llama-local]
    sample_rate: 0.05          # share of the policy's successful requests kept as cases
    max_cases: 500
    judge: llm                 # llm | checks | recorded
    min_quality: 8.0           # routing floors and mode, see policies.PolicySettings
evaluation:
  judge_model: claude-opus     # a model_name from model_list
  schedule: "every 6h"         # or a five-field cron expression
  concurrency: 8
  budget_usd: 5.00             # per run
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evaluator.redaction import RedactionConfigError, Redactor
from evaluator.schedule_spec import parse_schedule
from policies import PolicySettings

ROUTING_KEYS = frozenset(PolicySettings.__dataclass_fields__)


class RedactionConfig(BaseModel):
    """Redaction settings: what is replaced in prompts and answers before a case is stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    emails: bool = True
    phones: bool = True
    cards: bool = True
    custom_patterns: list[str | dict[str, str]] = []


class PolicyConfig(BaseModel):
    """One workload: its candidates, reference model, sampling, judge and routing settings.

    The routing keys (`min_quality`, `mode`, ...) are validated by `PolicySettings`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    match_models: list[str] = []
    reference: str
    candidates: list[str] = Field(min_length=1)
    sample_rate: float = Field(default=0.05, ge=0, le=1)
    max_cases: int = Field(default=500, ge=1)
    judge: Literal["llm", "checks", "recorded"] = "llm"
    schedule: str | None = None
    redaction: RedactionConfig | None = None

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value

    def routing(self) -> PolicySettings:
        """Build the routing settings from the keys that `PolicySettings` defines."""
        extra = self.model_extra or {}
        return PolicySettings.from_mapping({k: v for k, v in extra.items() if k in ROUTING_KEYS})

    def unknown_keys(self) -> list[str]:
        return [key for key in self.model_extra or {} if key not in ROUTING_KEYS]


class EvaluationConfig(BaseModel):
    """Evaluation settings: the judge model, schedule, concurrency, budget and reuse window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    judge_model: str | None = None
    schedule: str | None = None
    concurrency: int = Field(default=8, ge=1, le=256)
    budget_usd: float = Field(default=5.0, gt=0)
    freshness_hours: float = Field(default=24.0, ge=0)
    judge_retries: int = Field(default=2, ge=0, le=10)
    redaction: RedactionConfig = RedactionConfig()

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value


def check_policies(
    policies: dict[str, PolicyConfig], evaluation: EvaluationConfig, model_names: set[str]
) -> tuple[list[str], list[str]]:
    """Check references between policies and models; return (problems, warnings)."""
    problems: list[str] = []
    warnings: list[str] = []
    claimed: dict[str, str] = {}
    for name, policy in policies.items():
        where = f"policies.{name}"
        if name in model_names:
            problems.append(
                f"{where}: the policy name is also a model_name in model_list; rename one"
            )
        for key in ("reference",):
            _require_model(problems, f"{where}.{key}", getattr(policy, key), model_names)
        for index, candidate in enumerate(policy.candidates):
            _require_model(problems, f"{where}.candidates[{index}]", candidate, model_names)
        if policy.reference not in policy.candidates:
            problems.append(
                f"{where}.reference: '{policy.reference}' must also be one of the candidates"
            )
        for index, model in enumerate(policy.match_models):
            path = f"{where}.match_models[{index}]"
            if model in claimed:
                problems.append(
                    f"{path}: '{model}' is already matched by policy '{claimed[model]}'"
                )
            claimed[model] = name
        for key in policy.unknown_keys():
            warnings.append(f"{where}.{key}: not supported by Pareto yet; ignored")
        try:
            settings = policy.routing()
        except ValueError:
            problems.extend(routing_problems(where, policy.model_extra or {}))
            continue
        if settings.pin is not None and settings.pin not in policy.candidates:
            problems.append(f"{where}.pin: '{settings.pin}' is not one of the candidates")
        if policy.judge == "llm" and evaluation.judge_model is None:
            problems.append(
                f"{where}.judge: 'llm' needs evaluation.judge_model (a model_name from model_list)"
            )
    if evaluation.judge_model is not None:
        _require_model(problems, "evaluation.judge_model", evaluation.judge_model, model_names)
    redactions = {"evaluation.redaction": evaluation.redaction}
    redactions.update(
        {f"policies.{name}.redaction": p.redaction for name, p in policies.items() if p.redaction}
    )
    for path, redaction in redactions.items():
        try:
            Redactor.from_settings(redaction.model_dump(), where=path)
        except RedactionConfigError as exc:
            problems.append(str(exc))
    return problems, warnings


def routing_problems(where: str, values: Mapping[str, Any]) -> list[str]:
    """Check each routing key of one policy on its own; one line per invalid key.

    `PolicySettings` stops at its first invalid value, so each key is tried alone (with the
    defaults for the others), and `pin` together with `mode`, which it depends on.
    """
    routing = {key: value for key, value in values.items() if key in ROUTING_KEYS}
    problems = []
    for key, value in routing.items():
        if key == "pin":
            continue
        try:
            PolicySettings.from_mapping({key: value})
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    if not problems:
        try:
            PolicySettings.from_mapping(routing)
        except ValueError as exc:
            problems.append(f"{where}.pin: {exc}")
    return problems


def _require_model(problems: list[str], path: str, name: Any, model_names: set[str]) -> None:
    if name not in model_names:
        problems.append(f"{path}: model '{name}' is not in model_list")
