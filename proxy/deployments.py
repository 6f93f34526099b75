"""Deployments (one `model_list` entry each) and the groups that share a `model_name`.

A repeated `model_name` is a load-balanced group: each request picks a deployment at random,
weighted by `weight` or else `rpm`, skipping deployments that are cooling down after repeated
failures.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from evaluator.pricing import Prices, lookup_prices
from proxy.config import ModelEntry, ParetoConfig

logger = logging.getLogger(__name__)

# Providers whose API is OpenAI's: requests go straight to them, only `model` rewritten.
OPENAI_COMPATIBLE_BASES = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together_ai": "https://api.together.xyz/v1",
    "groq": "https://api.groq.com/openai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "mistral": "https://api.mistral.ai/v1",
    "xai": "https://api.x.ai/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "perplexity": "https://api.perplexity.ai",
    "hosted_vllm": None,
    "llamafile": None,
    "lm_studio": None,
    "custom_openai": None,
    "openai_like": None,
}

# Providers with their own wire format: requests are translated by litellm.
TRANSLATED_PROVIDERS = frozenset(
    {
        "anthropic",
        "azure",
        "azure_ai",
        "bedrock",
        "cohere",
        "gemini",
        "vertex_ai",
        "ollama",
        "ollama_chat",
        "huggingface",
        "replicate",
        "sagemaker",
        "watsonx",
        "databricks",
        "cloudflare",
    }
)

# OpenAI request parameters that a `litellm_params` entry may set as defaults.
REQUEST_PARAMETERS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "response_format",
        "user",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "service_tier",
        "metadata",
        "store",
        "dimensions",
        "encoding_format",
    }
)


@dataclass
class Deployment:
    """One upstream the gateway forwards to, with everything a call needs."""

    id: str
    model_name: str
    litellm_model: str
    upstream_model: str
    provider: str
    direct: bool
    api_base: str | None
    headers: dict[str, str]
    api_key: str | None
    timeout: float
    stream_timeout: float
    max_retries: int
    weight: float
    defaults: dict[str, Any]
    litellm_extra: dict[str, Any]
    prices: Prices
    failures: deque[float] = field(default_factory=deque)
    cooldown_until: float = 0.0
    _urls: dict[str, URL] = field(default_factory=dict)
    _client_timeout: aiohttp.ClientTimeout | None = None

    @property
    def client_timeout(self) -> aiohttp.ClientTimeout:
        """Return the total timeout of a non-streaming call, built once."""
        if self._client_timeout is None:
            self._client_timeout = aiohttp.ClientTimeout(total=self.timeout)
        return self._client_timeout

    def url(self, endpoint: str) -> URL:
        """Return the endpoint's URL, parsed once per deployment instead of once per call."""
        url = self._urls.get(endpoint)
        if url is None:
            base = (self.api_base or "").rstrip("/")
            url = self._urls[endpoint] = URL(f"{base}/{endpoint}")
        return url

    def cooling_down(self, now: float) -> bool:
        return now < self.cooldown_until

    def record_failure(self, now: float, allowed_fails: int, cooldown_time: float) -> bool:
        """Count a failure; return True when it starts a cooldown."""
        self.failures.append(now)
        while self.failures and self.failures[0] < now - 60.0:
            self.failures.popleft()
        if len(self.failures) < allowed_fails or cooldown_time <= 0:
            return False
        self.failures.clear()
        self.cooldown_until = now + cooldown_time
        return True


class DeploymentGroups:
    """The deployments of every `model_name`, with weighted picking and cooldowns."""

    def __init__(self, groups: dict[str, list[Deployment]], rng: random.Random | None = None):
        self._groups = groups
        self._rng = rng or random.Random()

    def __contains__(self, model_name: object) -> bool:
        return model_name in self._groups

    def names(self) -> list[str]:
        return list(self._groups)

    def deployments(self, model_name: str) -> list[Deployment]:
        return self._groups.get(model_name, [])

    def all(self) -> list[Deployment]:
        return [deployment for group in self._groups.values() for deployment in group]

    def ordered(self, model_name: str, now: float | None = None) -> list[Deployment]:
        """Return the group's available deployments, the weighted pick first."""
        moment = time.monotonic() if now is None else now
        available = [d for d in self._groups.get(model_name, []) if not d.cooling_down(moment)]
        if len(available) <= 1:
            return available
        remaining = list(available)
        ordered = []
        while remaining:
            pick = self._rng.choices(remaining, weights=[d.weight for d in remaining])[0]
            ordered.append(pick)
            remaining.remove(pick)
        return ordered

    def cooldown_remaining(self, model_name: str, now: float | None = None) -> float:
        moment = time.monotonic() if now is None else now
        waits = [d.cooldown_until - moment for d in self._groups.get(model_name, [])]
        return max(0.0, min(waits, default=0.0))


def build_groups(config: ParetoConfig, warnings: list[str] | None = None) -> DeploymentGroups:
    """Build every deployment of `config`; unusable extra keys are reported in `warnings`."""
    groups: dict[str, list[Deployment]] = {}
    for index, entry in enumerate(config.model_list):
        deployment = build_deployment(config, entry, index, warnings)
        groups.setdefault(entry.model_name, []).append(deployment)
    return DeploymentGroups(groups)


def split_provider(litellm_model: str) -> tuple[str, str]:
    """Split "provider/name" into its parts; a bare name is an OpenAI model."""
    provider, slash, name = litellm_model.partition("/")
    if slash and (provider in OPENAI_COMPATIBLE_BASES or provider in TRANSLATED_PROVIDERS):
        return provider, name
    return "openai", litellm_model


def build_deployment(
    config: ParetoConfig, entry: ModelEntry, index: int, warnings: list[str] | None = None
) -> Deployment:
    params = entry.litellm_params
    provider, upstream_model = split_provider(params.model)
    direct = provider in OPENAI_COMPATIBLE_BASES
    api_base = params.api_base or (OPENAI_COMPATIBLE_BASES.get(provider) if direct else None)
    api_key = params.api_key.get_secret_value() if params.api_key else None
    if direct and api_base is None:
        direct = False

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(params.extra_headers or {})

    defaults: dict[str, Any] = {}
    litellm_extra: dict[str, Any] = {}
    for key, value in (params.model_extra or {}).items():
        if key in REQUEST_PARAMETERS:
            defaults[key] = value
        elif direct:
            if warnings is not None:
                warnings.append(
                    f"model_list[{index}].litellm_params.{key}: not supported by Pareto "
                    "for OpenAI-compatible upstreams yet; ignored"
                )
        else:
            litellm_extra[key] = value

    timeout = params.timeout or config.timeout()
    info = entry.model_info
    prices = lookup_prices(
        params.model,
        _first(info.input_cost_per_token, params.input_cost_per_token),
        _first(info.output_cost_per_token, params.output_cost_per_token),
        info.cache_read_input_token_cost,
    )
    return Deployment(
        id=info.id or f"{entry.model_name}#{index}",
        model_name=entry.model_name,
        litellm_model=params.model,
        upstream_model=upstream_model if direct else params.model,
        provider=provider,
        direct=direct,
        api_base=api_base,
        headers=headers,
        api_key=api_key,
        timeout=timeout,
        stream_timeout=params.stream_timeout or timeout,
        max_retries=params.max_retries if params.max_retries is not None else config.num_retries(),
        weight=float(params.weight or params.rpm or 1),
        defaults=defaults,
        litellm_extra=litellm_extra,
        prices=prices,
    )


def _first(*values: float | None) -> float | None:
    for value in values:
        if value is not None:
            return value
    return None
