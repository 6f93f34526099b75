"""Masking of configured upstream secrets in text that an upstream or a provider library wrote.

An upstream may copy the key it received into its error body ("Incorrect API key provided:
sk-..."), and litellm's exception texts quote the provider's error body. Such text reaches the
client's error, the log line of the failed attempt, the request row and metric label of its
error code, and stored evaluation rows. So the retry loop first masks every deployment's key and
extra header values in it. Successful responses are relayed unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from proxy.deployments import Deployment
from proxy.upstream import UpstreamFailure

MASK = "***"
# Shorter values would mask ordinary words; the log filter uses the same bound.
MIN_SECRET_LENGTH = 6
# Header values that the gateway itself sets and that are never secret.
PUBLIC_HEADERS = frozenset({"content-type"})


def deployment_secrets(deployments: Iterable[Deployment]) -> list[str]:
    """Return the API keys and extra header values of `deployments`, longest first."""
    found: set[str] = set()
    for deployment in deployments:
        if deployment.api_key:
            found.add(deployment.api_key)
        found.update(
            value
            for name, value in deployment.headers.items()
            if name.lower() not in PUBLIC_HEADERS
        )
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def mask(text: str, secrets: Sequence[str]) -> str:
    """Replace each of `secrets` (longest first) in `text` with `***`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def masked_failure(failure: UpstreamFailure, secrets: Sequence[str]) -> UpstreamFailure:
    """Return `failure` with every text field masked, or `failure` itself when none held one."""
    fields = (failure.message, failure.error_type, failure.code, failure.param)
    if not any(text and secret in text for text in fields for secret in secrets):
        return failure
    masked = UpstreamFailure(
        failure.kind,
        mask(failure.message, secrets),
        status=failure.status,
        retry_after=failure.retry_after,
        error_type=_mask_optional(failure.error_type, secrets),
        code=_mask_optional(failure.code, secrets),
        param=_mask_optional(failure.param, secrets),
    )
    return masked


def _mask_optional(text: str | None, secrets: Sequence[str]) -> str | None:
    return None if text is None else mask(text, secrets)
