"""Errors that stop an evaluation run before it starts, or a report before it is read.

Hierarchy::

    EvaluationError          the run or report cannot go ahead, and the message states why
    ├── UnknownPolicyError   the policy is not in the configuration
    ├── UnknownModelError    a requested model is not a candidate of the policy
    ├── NoCasesError         the policy has no benchmark cases
    └── RunNotFoundError     no run has the requested id, or the policy has no run yet

Messages are single sentences meant for the command line, which prints them after "error: ".
"""

from __future__ import annotations


class EvaluationError(Exception):
    """A run or report that cannot go ahead. The message is one sentence for the user."""


class UnknownPolicyError(EvaluationError):
    def __init__(self, policy: str, known: list[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"policy '{policy}' is not in the configuration (configured policies: {names})."
        )


class UnknownModelError(EvaluationError):
    def __init__(self, policy: str, models: list[str], candidates: list[str]) -> None:
        shown = ", ".join(f"'{model}'" for model in models)
        verb = "is" if len(models) == 1 else "are"
        super().__init__(
            f"{shown} {verb} not a candidate of policy '{policy}', whose candidates are "
            f"{', '.join(candidates)}."
        )


class NoCasesError(EvaluationError):
    def __init__(self, policy: str, without: int = 0, needs: str | None = None) -> None:
        if without and needs is not None:
            judge = "checks" if needs == "checks" else "recorded"
            message = (
                f"policy {policy} has {without} cases, but none has {needs}, which the "
                f"{judge} judge needs; attach them with `pareto cases annotate`."
            )
        else:
            message = f"policy {policy} has no cases; import some with `pareto cases import`."
        super().__init__(message)


class RunNotFoundError(EvaluationError):
    """Raised for a run id that does not exist, or a policy that has never been evaluated."""
