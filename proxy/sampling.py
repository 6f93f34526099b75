"""Sampler settings of the configured policies."""

from __future__ import annotations

from evaluator.sampler import SamplingPolicy
from proxy.config import ParetoConfig


def sampling_policies(config: ParetoConfig) -> dict[str, SamplingPolicy]:
    """Build the `CaseSampler` settings of every configured policy.

    A policy's own ``redaction`` section replaces ``evaluation.redaction`` as a whole. Raises
    `evaluator.redaction.RedactionConfigError` for an invalid custom pattern.
    """
    policies = {}
    for name, policy in config.policies.items():
        redaction = policy.redaction or config.evaluation.redaction
        policies[name] = SamplingPolicy.from_settings(
            policy.reference, policy.max_cases, redaction.model_dump()
        )
    return policies
