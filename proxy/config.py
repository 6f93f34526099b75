"""The gateway's YAML configuration: LiteLLM proxy's keys with their meaning, plus Pareto's own.

`load_config(path)` reads the file, resolves `os.environ/NAME` values, validates every section
and returns a `LoadedConfig` with the warnings it produced. Invalid files raise `ConfigError`,
whose messages name the key path and the bad value, for example
"model_list[2].litellm_params.model: missing". Secret values (`api_key`, `master_key`) never
appear in a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from proxy.policy_config import EvaluationConfig, PolicyConfig, check_policies, routing_problems

ENV_PREFIX = "os.environ/"
# Keys whose value stops `pareto serve` when it names an unset environment variable. Without
# the master key the gateway would accept any caller. Without an api_base a deployment would
# send its traffic to the provider's default address instead of the intended one.
REQUIRED_ENV_KEYS = frozenset({"master_key", "api_base"})
SECRET_KEYS = frozenset({"api_key", "master_key", "aws_secret_access_key", "vertex_credentials"})
DEFAULT_DATABASE_URL = "sqlite:///pareto.db"


class ConfigError(Exception):
    """The configuration file cannot be used; `problems` lists one sentence per bad key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    # Unknown keys are reported as warnings by `_unknown_keys`, then ignored here.
    model_config = ConfigDict(extra="ignore", frozen=True)


class LitellmParams(BaseModel):
    """`model_list[].litellm_params`: where and how to call one deployment.

    Keys other than the named fields are kept in `model_extra`: OpenAI request parameters
    there (temperature, max_tokens, ...) are defaults added to requests that do not set them.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: SecretStr | None = None
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    weight: float | None = Field(default=None, gt=0)
    extra_headers: dict[str, str] | None = None
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class ModelInfo(BaseModel):
    """`model_list[].model_info`: prices and metadata of one deployment."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None
    mode: str | None = None
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    cache_read_input_token_cost: float | None = Field(default=None, ge=0)


class ModelEntry(_Section):
    """One `model_list` entry: a deployment behind the public `model_name`."""

    model_name: str = Field(min_length=1)
    litellm_params: LitellmParams
    model_info: ModelInfo = ModelInfo()


Fallbacks = list[dict[str, list[str]]]


class LitellmSettings(_Section):
    num_retries: int | None = Field(default=None, ge=0)
    request_timeout: float | None = Field(default=None, gt=0)
    fallbacks: Fallbacks = []
    drop_params: bool = False
    # Unlike LiteLLM proxy, the default is True: metrics name models and spend.
    require_auth_for_metrics_endpoint: bool = True


class RouterSettings(_Section):
    timeout: float | None = Field(default=None, gt=0)
    num_retries: int | None = Field(default=None, ge=0)
    allowed_fails: int = Field(default=3, ge=1)
    cooldown_time: float = Field(default=5.0, ge=0)
    fallbacks: Fallbacks = []
    retry_after: float = Field(default=0.0, ge=0)
    # Pareto's addition: the first retry waits about this long, doubling on each next one.
    retry_backoff_seconds: float = Field(default=0.25, ge=0)
    # Other LiteLLM strategies are accepted with a warning and served as simple-shuffle.
    routing_strategy: str = "simple-shuffle"


class GeneralSettings(_Section):
    master_key: SecretStr | None = None
    database_url: str | None = None
    max_request_size_mb: float = Field(default=20.0, gt=0)
    # Pareto's additions: the request header limit, and how long request rows and cases stay.
    max_header_size_kb: float = Field(default=32.0, gt=0)
    retention_days: int | None = Field(default=None, ge=1)
    retention_include_imported: bool = False
    # Pareto's addition: request rows held in memory while the database cannot take them.
    request_log_max_queue: int = Field(default=100_000, ge=1)


class ParetoConfig(_Section):
    """The whole validated file."""

    model_list: list[ModelEntry] = Field(min_length=1)
    litellm_settings: LitellmSettings = LitellmSettings()
    router_settings: RouterSettings = RouterSettings()
    general_settings: GeneralSettings = GeneralSettings()
    policies: dict[str, PolicyConfig] = {}
    evaluation: EvaluationConfig = EvaluationConfig()

    def model_names(self) -> list[str]:
        """Return the public model names in file order, each once."""
        return list(dict.fromkeys(entry.model_name for entry in self.model_list))

    def fallbacks(self) -> dict[str, list[str]]:
        """Merge `router_settings.fallbacks` over `litellm_settings.fallbacks`."""
        merged: dict[str, list[str]] = {}
        for rule in [*self.litellm_settings.fallbacks, *self.router_settings.fallbacks]:
            merged.update(rule)
        return merged

    def num_retries(self) -> int:
        for value in (self.router_settings.num_retries, self.litellm_settings.num_retries):
            if value is not None:
                return value
        return 2

    def timeout(self) -> float:
        for value in (self.router_settings.timeout, self.litellm_settings.request_timeout):
            if value is not None:
                return value
        return 600.0


@dataclass(frozen=True)
class LoadedConfig:
    config: ParetoConfig
    database_url: str
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None
    # Unset environment variables that `pareto serve` refuses to start without (see
    # `REQUIRED_ENV_KEYS`); `check-config` reports them as warnings only.
    unset_required: list[str] = field(default_factory=list)


_KNOWN_SECTIONS: dict[str, type[BaseModel]] = {
    "model_list": ModelEntry,
    "litellm_settings": LitellmSettings,
    "router_settings": RouterSettings,
    "general_settings": GeneralSettings,
}


# Pareto's own sections, validated strictly by their models.
_PARETO_SECTIONS = frozenset({"policies", "evaluation"})


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> LoadedConfig:
    """Read, resolve and validate the configuration file at `path`."""
    env = dict(os.environ) if environ is None else environ
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{file_path}: file not found"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file_path}: cannot be read: {exc}"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{file_path}: {_yaml_problem(exc)}"]) from exc
    loaded = parse_config(raw, env)
    return LoadedConfig(
        loaded.config, loaded.database_url, loaded.warnings, file_path, loaded.unset_required
    )


def parse_config(raw: Any, environ: dict[str, str]) -> LoadedConfig:
    """Validate an already parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping with model_list, got " + _kind(raw)])

    warnings: list[str] = []
    unset_required: list[str] = []
    resolved = _resolve_env(raw, "", environ, warnings, unset_required)
    secrets = _secret_values(resolved)
    warnings.extend(_unknown_keys(resolved))
    try:
        config = ParetoConfig.model_validate(resolved)
    except ValidationError as exc:
        # Routing keys are checked apart from the model, so report theirs in the same pass.
        problems = _describe(exc, resolved) + _raw_routing_problems(resolved)
        raise ConfigError(_mask(problems, secrets)) from exc
    warnings.extend(_unsupported_values(config))

    problems = _check_references(config)
    policy_problems, policy_warnings = check_policies(
        config.policies, config.evaluation, set(config.model_names())
    )
    problems.extend(policy_problems)
    warnings.extend(policy_warnings)
    if problems:
        raise ConfigError(_mask(problems, secrets))

    database_url = (
        environ.get("DATABASE_URL") or config.general_settings.database_url or DEFAULT_DATABASE_URL
    )
    return LoadedConfig(config, database_url, _mask(warnings, secrets), None, unset_required)


def _raw_routing_problems(resolved: dict[str, Any]) -> list[str]:
    policies = resolved.get("policies")
    if not isinstance(policies, dict):
        return []
    problems = []
    for name, policy in policies.items():
        if isinstance(policy, dict):
            problems.extend(routing_problems(f"policies.{name}", policy))
    return problems


def _secret_values(node: Any, key: str = "") -> set[str]:
    """Collect the values of secret keys anywhere in the document, to mask them in messages."""
    if isinstance(node, dict):
        found: set[str] = set()
        for child_key, value in node.items():
            found |= _secret_values(value, str(child_key))
        return found
    if isinstance(node, list):
        return set().union(*(_secret_values(value, key) for value in node)) if node else set()
    if key in SECRET_KEYS and node is not None and str(node):
        return {str(node)}
    return set()


def _mask(messages: list[str], secrets: set[str]) -> list[str]:
    masked = []
    for message in messages:
        for secret in sorted(secrets, key=len, reverse=True):
            message = message.replace(secret, "(hidden)")
        masked.append(message)
    return masked


def _unsupported_values(config: ParetoConfig) -> list[str]:
    warnings = []
    strategy = config.router_settings.routing_strategy
    if strategy != "simple-shuffle":
        warnings.append(
            f"router_settings.routing_strategy: '{strategy}' is not supported by Pareto yet; "
            "simple-shuffle is used"
        )
    for index, entry in enumerate(config.model_list):
        mode = entry.model_info.mode
        if mode is not None and mode not in ("chat", "embedding", "completion"):
            warnings.append(
                f"model_list[{index}].model_info.mode: '{mode}' is not supported by Pareto yet; "
                "only chat completions and embeddings are forwarded"
            )
    return warnings


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # PyYAML's own message quotes the offending line, which may hold a key: keep only the
    # position and the problem.
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _resolve_env(
    node: Any, path: str, environ: dict[str, str], warnings: list[str], unset_required: list[str]
) -> Any:
    if isinstance(node, dict):
        return {
            key: _resolve_env(value, _join(path, str(key)), environ, warnings, unset_required)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _resolve_env(value, f"{path}[{index}]", environ, warnings, unset_required)
            for index, value in enumerate(node)
        ]
    if isinstance(node, str) and node.startswith(ENV_PREFIX):
        name = node[len(ENV_PREFIX) :]
        if name not in environ:
            warnings.append(f"{path}: environment variable {name} is not set; the value is empty")
            if path.rsplit(".", 1)[-1] in REQUIRED_ENV_KEYS:
                unset_required.append(f"{path}: environment variable {name} is not set")
            return None
        return environ[name]
    return node


def _unknown_keys(raw: dict[str, Any]) -> list[str]:
    warnings = []
    for key in raw:
        if key not in _KNOWN_SECTIONS and key not in _PARETO_SECTIONS:
            warnings.append(f"{key}: not supported by Pareto yet; ignored")
    for name, model in _KNOWN_SECTIONS.items():
        section = raw.get(name)
        items = section if name == "model_list" and isinstance(section, list) else [section]
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            where = f"model_list[{index}]" if name == "model_list" else name
            for key in item:
                if key not in model.model_fields:
                    warnings.append(f"{where}.{key}: not supported by Pareto yet; ignored")
    return warnings


def _check_references(config: ParetoConfig) -> list[str]:
    names = set(config.model_names())
    problems = []
    for section in ("litellm_settings", "router_settings"):
        rules: Fallbacks = getattr(config, section).fallbacks
        for index, rule in enumerate(rules):
            for source, targets in rule.items():
                where = f"{section}.fallbacks[{index}].{source}"
                if source not in names:
                    problems.append(f"{where}: model '{source}' is not in model_list")
                for position, target in enumerate(targets):
                    if target not in names:
                        problems.append(
                            f"{where}[{position}]: model '{target}' is not in model_list"
                        )
    return problems


def _describe(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    problems = []
    for error in exc.errors():
        location = _location(error["loc"])
        if error["type"] == "missing":
            problems.append(f"{location}: missing")
            continue
        last = str(error["loc"][-1]) if error["loc"] else ""
        shown = _shown_value(last, error.get("input"))
        problems.append(f"{location}: invalid value {shown}: {error['msg']}")
    return problems


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, part)
    return text or "(top level)"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# Keys whose string values are printed in error messages at any length. Other strings are
# printed only when short, because a long value in the wrong place may be a pasted key.
SHOWN_STRING_KEYS = frozenset(
    {"model", "model_name", "api_base", "mode", "routing_strategy", "judge", "schedule", "pin"}
)
SHOWN_STRING_LENGTH = 8


def _shown_value(key: str, value: Any) -> str:
    if key in SECRET_KEYS:
        return "(hidden)"
    if isinstance(value, str) and len(value) > SHOWN_STRING_LENGTH and key not in SHOWN_STRING_KEYS:
        return f"(a string of {len(value)} characters)"
    return _short(value)


def _short(value: Any) -> str:
    # Containers are described, not printed: their values may hold keys.
    if isinstance(value, dict) and value:
        return _short_text(f"(a mapping with keys {', '.join(map(str, value))})")
    if isinstance(value, list) and value:
        return f"(a list of {len(value)} items)"
    return _short_text(repr(value))


def _short_text(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
