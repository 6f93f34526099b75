"""Configuration loading: LiteLLM proxy files, `os.environ/` values, warnings and error messages."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import DEFAULT_DATABASE_URL, ConfigError, load_config, parse_config
from proxy.deployments import build_groups

SECRET = "sk-leak-4f9a"

LITELLM_FILE = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: https://api.openai.com/v1
      api_key: os.environ/OPENAI_API_KEY
      timeout: 30
      stream_timeout: 60
      max_retries: 2
      rpm: 600
      extra_headers:
        X-Team: search
      temperature: 0.2
    model_info:
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
      mode: chat
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/OPENAI_API_KEY
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_key: os.environ/OPENAI_API_KEY
    model_info:
      mode: embedding

litellm_settings:
  num_retries: 3
  request_timeout: 120
  fallbacks: [{"gpt-4o": ["gpt-4o-mini"]}]
  drop_params: true

router_settings:
  timeout: 90
  num_retries: 1
  allowed_fails: 2
  cooldown_time: 30
  fallbacks: [{"gpt-4o-mini": ["gpt-4o"]}]

general_settings:
  master_key: os.environ/PARETO_MASTER_KEY
  database_url: postgresql://pareto@db.internal:5432/pareto
"""

LITELLM_ENV = {"OPENAI_API_KEY": "sk-openai-test", "PARETO_MASTER_KEY": "sk-master-test"}


def minimal() -> dict[str, Any]:
    return {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-fake"}}]}


def problems_of(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ or {})
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_litellm_file_loads(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, LITELLM_FILE), LITELLM_ENV)

    assert loaded.warnings == []
    assert loaded.path == tmp_path / "config.yaml"
    assert loaded.config.model_names() == ["gpt-4o", "gpt-4o-mini", "embed"]


def test_litellm_file_builds_deployments(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, LITELLM_FILE), LITELLM_ENV)
    warnings: list[str] = []

    groups = build_groups(loaded.config, warnings)

    assert warnings == []
    first = groups.deployments("gpt-4o")[0]
    assert first.api_key == "sk-openai-test"
    assert first.upstream_model == "gpt-4o"
    assert first.timeout == 30
    assert first.stream_timeout == 60
    assert first.max_retries == 2
    assert first.weight == 600
    assert first.headers["X-Team"] == "search"
    assert first.defaults == {"temperature": 0.2}


def test_litellm_file_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, LITELLM_FILE), LITELLM_ENV).config

    entry = config.model_list[0]
    assert entry.model_info.input_cost_per_token == pytest.approx(0.0000025)
    assert entry.model_info.output_cost_per_token == pytest.approx(0.00001)
    assert entry.model_info.mode == "chat"
    assert config.litellm_settings.drop_params is True
    assert config.router_settings.allowed_fails == 2
    assert config.router_settings.cooldown_time == 30
    assert config.num_retries() == 1
    assert config.timeout() == 90
    assert config.fallbacks() == {"gpt-4o": ["gpt-4o-mini"], "gpt-4o-mini": ["gpt-4o"]}


def test_litellm_settings_used_alone() -> None:
    raw = minimal()
    raw["litellm_settings"] = {"num_retries": 4, "request_timeout": 45}

    config = parse_config(raw, {}).config

    assert config.num_retries() == 4
    assert config.timeout() == 45


@pytest.mark.parametrize(
    ("section", "key", "value", "warning"),
    [
        pytest.param(
            None,
            "environment_variables",
            {"A": "b"},
            "environment_variables: not supported by Pareto yet; ignored",
            id="top-level",
        ),
        pytest.param(
            "general_settings",
            "alerting",
            ["slack"],
            "general_settings.alerting: not supported by Pareto yet; ignored",
            id="general",
        ),
        pytest.param(
            "litellm_settings",
            "success_callback",
            ["langfuse"],
            "litellm_settings.success_callback: not supported by Pareto yet; ignored",
            id="litellm",
        ),
        pytest.param(
            "router_settings",
            "redis_host",
            "redis.internal",
            "router_settings.redis_host: not supported by Pareto yet; ignored",
            id="router",
        ),
        pytest.param(
            "model_list[0]",
            "tpm_limit",
            1000,
            "model_list[0].tpm_limit: not supported by Pareto yet; ignored",
            id="model-entry",
        ),
    ],
)
def test_unsupported_key_warns_once(
    section: str | None, key: str, value: Any, warning: str
) -> None:
    raw = minimal()
    if section is None:
        raw[key] = value
    elif section == "model_list[0]":
        raw["model_list"][0][key] = value
    else:
        raw[section] = {key: value}

    loaded = parse_config(raw, {})

    assert loaded.warnings == [warning]


def test_unsupported_keys_one_warning_each() -> None:
    raw = minimal()
    raw["general_settings"] = {"alerting": ["slack"], "alert_types": ["llm_exceptions"]}
    raw["litellm_settings"] = {"cache": True, "callbacks": ["prometheus"]}

    warnings = parse_config(raw, {}).warnings

    assert len(warnings) == 4
    assert len(set(warnings)) == 4


@pytest.mark.parametrize(
    ("section", "values"),
    [
        pytest.param("router_settings", {"routing_strategy": "least-busy"}, id="routing-strategy"),
        pytest.param("model_info", {"mode": "image_generation"}, id="mode"),
    ],
)
def test_unsupported_litellm_value_warns(section: str, values: dict[str, Any]) -> None:
    raw = minimal()
    if section == "model_info":
        raw["model_list"][0]["model_info"] = values
    else:
        raw[section] = values

    loaded = parse_config(raw, {})

    assert len(loaded.warnings) == 1


def test_environ_values_resolved() -> None:
    raw = {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {
                    "model": "openai/gpt-fake",
                    "api_key": "os.environ/UPSTREAM_KEY",
                    "api_base": "os.environ/UPSTREAM_BASE",
                    "extra_headers": {"X-Org": "os.environ/ORG_ID"},
                },
            }
        ],
        "general_settings": {
            "master_key": "os.environ/MASTER",
            "database_url": "os.environ/PARETO_DB",
        },
    }
    environ = {
        "UPSTREAM_KEY": "sk-upstream",
        "UPSTREAM_BASE": "http://127.0.0.1:9/v1",
        "ORG_ID": "org-7",
        "MASTER": "sk-master",
        "PARETO_DB": "sqlite:///from-env.db",
    }

    loaded = parse_config(raw, environ)

    params = loaded.config.model_list[0].litellm_params
    general = loaded.config.general_settings
    assert params.api_key is not None
    assert params.api_key.get_secret_value() == "sk-upstream"
    assert params.api_base == "http://127.0.0.1:9/v1"
    assert params.extra_headers == {"X-Org": "org-7"}
    assert general.master_key is not None
    assert general.master_key.get_secret_value() == "sk-master"
    assert loaded.database_url == "sqlite:///from-env.db"
    assert loaded.warnings == []


def test_environ_value_in_list() -> None:
    raw = minimal()
    raw["model_list"][0]["litellm_params"]["stop"] = ["os.environ/STOP_WORD", "END"]

    loaded = parse_config(raw, {"STOP_WORD": "###"})

    assert loaded.config.model_list[0].litellm_params.model_extra == {"stop": ["###", "END"]}


def test_environ_unset_warns() -> None:
    raw = minimal()
    raw["model_list"][0]["litellm_params"]["api_key"] = "os.environ/MISSING_KEY"

    loaded = parse_config(raw, {})

    assert loaded.config.model_list[0].litellm_params.api_key is None
    assert loaded.warnings == [
        "model_list[0].litellm_params.api_key: environment variable MISSING_KEY is not set; "
        "the value is empty"
    ]


def test_environ_unset_required_value() -> None:
    raw = minimal()
    raw["model_list"][0]["litellm_params"]["model"] = "os.environ/MISSING_MODEL"

    problems = problems_of(raw)

    assert problems[0].startswith("model_list[0].litellm_params.model: invalid value None")


def test_environ_value_is_not_reparsed() -> None:
    raw = minimal()
    raw["general_settings"] = {"master_key": "os.environ/INDIRECT"}

    loaded = parse_config(raw, {"INDIRECT": "os.environ/OTHER"})

    master = loaded.config.general_settings.master_key
    assert master is not None
    assert master.get_secret_value() == "os.environ/OTHER"


def entry_with(**params: Any) -> dict[str, Any]:
    return {"model_name": "m", "litellm_params": {"model": "openai/gpt-fake", **params}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"model_list": [{"model_name": "m", "litellm_params": {"api_base": "http://x"}}]},
            "model_list[0].litellm_params.model: missing",
            id="model-missing",
        ),
        pytest.param(
            {"model_list": [entry_with(), {"model_name": "n", "litellm_params": {}}]},
            "model_list[1].litellm_params.model: missing",
            id="second-entry-model-missing",
        ),
        pytest.param(
            {"model_list": [{"litellm_params": {"model": "openai/gpt-fake"}}]},
            "model_list[0].model_name: missing",
            id="model-name-missing",
        ),
        pytest.param(
            {"model_list": [{"model_name": "m"}]},
            "model_list[0].litellm_params: missing",
            id="litellm-params-missing",
        ),
        pytest.param({"general_settings": {}}, "model_list: missing", id="model-list-missing"),
        pytest.param({"model_list": []}, "model_list: invalid value []", id="model-list-empty"),
        pytest.param(
            {"model_list": "gpt-4o"},
            "model_list: invalid value 'gpt-4o'",
            id="model-list-string",
        ),
        pytest.param(
            {"model_list": [entry_with(timeout="abc")]},
            "model_list[0].litellm_params.timeout: invalid value 'abc'",
            id="timeout-text",
        ),
        pytest.param(
            {"model_list": [entry_with(timeout=0)]},
            "model_list[0].litellm_params.timeout: invalid value 0",
            id="timeout-zero",
        ),
        pytest.param(
            {"model_list": [entry_with(max_retries=-1)]},
            "model_list[0].litellm_params.max_retries: invalid value -1",
            id="max-retries-negative",
        ),
        pytest.param(
            {"model_list": [entry_with(api_base="ftp://models.internal/v1")]},
            "model_list[0].litellm_params.api_base: invalid value 'ftp://models.internal/v1'",
            id="api-base-scheme",
        ),
        pytest.param(
            {"model_list": [entry_with(api_base="127.0.0.1:8000/v1")]},
            "model_list[0].litellm_params.api_base: invalid value '127.0.0.1:8000/v1'",
            id="api-base-no-scheme",
        ),
        pytest.param(
            {"model_list": [entry_with()], "router_settings": {"allowed_fails": 0}},
            "router_settings.allowed_fails: invalid value 0",
            id="allowed-fails-zero",
        ),
        pytest.param(
            {"model_list": [entry_with()], "litellm_settings": {"drop_params": "maybe"}},
            "litellm_settings.drop_params: invalid value 'maybe'",
            id="drop-params-text",
        ),
        pytest.param(
            {"model_list": [entry_with()], "general_settings": {"max_request_size_mb": -1}},
            "general_settings.max_request_size_mb: invalid value -1",
            id="max-request-size-negative",
        ),
        pytest.param(
            {"model_list": [entry_with()], "litellm_settings": {"fallbacks": {"m": ["m"]}}},
            "litellm_settings.fallbacks: invalid value (a mapping with keys m)",
            id="fallbacks-not-list",
        ),
        pytest.param(
            {"model_list": [entry_with()], "litellm_settings": {"fallbacks": [{"m": ["gpt-5"]}]}},
            "litellm_settings.fallbacks[0].m[0]: model 'gpt-5' is not in model_list",
            id="fallback-target-unknown",
        ),
        pytest.param(
            {"model_list": [entry_with()], "router_settings": {"fallbacks": [{"nope": ["m"]}]}},
            "router_settings.fallbacks[0].nope: model 'nope' is not in model_list",
            id="fallback-source-unknown",
        ),
        pytest.param(
            ["model_list"],
            "(top level): expected a mapping with model_list, got list",
            id="top-level-list",
        ),
    ],
)
def test_error_names_path_and_value(raw: Any, expected: str) -> None:
    problems = problems_of(raw)

    assert [problem for problem in problems if problem.startswith(expected)], problems


def test_every_problem_reported() -> None:
    raw = {
        "model_list": [
            entry_with(timeout="abc"),
            {"model_name": "n", "litellm_params": {"model": "openai/x", "max_retries": -1}},
        ]
    }

    problems = problems_of(raw)

    assert len(problems) == 2
    assert problems[0].startswith("model_list[0].litellm_params.timeout")
    assert problems[1].startswith("model_list[1].litellm_params.max_retries")


def test_long_value_shortened() -> None:
    problems = problems_of({"model_list": [entry_with(timeout="9" * 500 + "x")]})

    assert len(problems[0]) < 300


def secret_cases() -> list[Any]:
    valid = entry_with(api_key=SECRET)
    return [
        pytest.param({"model_list": [valid], "litellm_settings": SECRET}, id="section-string"),
        pytest.param(
            {"model_list": [valid], "general_settings": {"max_request_size_mb": SECRET}},
            id="number-field-string",
        ),
        pytest.param({"model_list": [entry_with(api_key=[SECRET])]}, id="api-key-list"),
        pytest.param({"model_list": [entry_with(api_key={"value": SECRET})]}, id="api-key-map"),
        pytest.param(
            {"model_list": [valid], "general_settings": {"master_key": [SECRET]}},
            id="master-key-list",
        ),
        pytest.param(
            {"model_list": [entry_with(api_key=SECRET, timeout="abc")]}, id="api-key-beside-error"
        ),
        pytest.param(
            {"model_list": [valid], "general_settings": {"master_key": SECRET, "extra": 1}},
            id="master-key-beside-warning",
        ),
        pytest.param(
            {"model_list": [valid, {"model_name": "n", "litellm_params": {"api_key": SECRET}}]},
            id="api-key-beside-missing",
        ),
        pytest.param(
            {"model_list": {"model_name": "m", "litellm_params": {"api_key": SECRET}}},
            id="model-list-mapping",
        ),
        pytest.param(
            {"model_list": [{"model_name": "m", "litellm_params": [{"api_key": SECRET}]}]},
            id="litellm-params-list",
        ),
        pytest.param(
            {"model_list": [valid], "general_settings": [{"master_key": SECRET}]},
            id="general-settings-list",
        ),
    ]


@pytest.mark.parametrize("raw", secret_cases())
def test_secret_not_in_messages(raw: dict[str, Any]) -> None:
    messages: list[str] = []
    try:
        messages.extend(parse_config(copy.deepcopy(raw), {}).warnings)
    except ConfigError as exc:
        messages.extend(exc.problems)
        messages.append(str(exc))

    assert messages
    assert SECRET not in "\n".join(messages)


def test_secret_from_environ_hidden() -> None:
    raw = minimal()
    raw["model_list"][0]["litellm_params"]["api_key"] = "os.environ/KEY"
    raw["model_list"][0]["litellm_params"]["timeout"] = "soon"
    raw["general_settings"] = {"master_key": "os.environ/KEY", "max_request_size_mb": "big"}

    problems = problems_of(raw, {"KEY": SECRET})

    assert len(problems) == 2
    assert SECRET not in "\n".join(problems)


def test_wrong_typed_secret_hidden() -> None:
    raw = {"model_list": [entry_with(api_key=[SECRET])]}

    problems = problems_of(raw)

    assert problems[0].startswith("model_list[0].litellm_params.api_key: invalid value (hidden)")


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(f"  master_key: {SECRET}: x", id="colon-in-value"),
        pytest.param(f'  master_key: "{SECRET}', id="unclosed-quote"),
    ],
)
def test_secret_not_in_yaml_error(tmp_path: Path, line: str) -> None:
    text = yaml.safe_dump(minimal()) + "general_settings:\n" + line + "\n"

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})

    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("model_list: [\n", id="unclosed-bracket"),
        pytest.param("model_list:\n  - a\n - b\n", id="bad-indent"),
        pytest.param("a: 1\na: [\tb\n", id="tab"),
    ],
)
def test_invalid_yaml_rejected(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: invalid YAML")


def test_missing_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert caught.value.problems == [f"{path}: file not found"]


def test_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})

    assert caught.value.problems[0].startswith(f"{tmp_path}: cannot be read")


def test_non_utf8_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"model_list:\n  - model_name: caf\xe9\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert caught.value.problems[0].startswith(f"{path}: cannot be read")


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comment"])
def test_empty_file_rejected(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})

    assert caught.value.problems == ["(top level): expected a mapping with model_list, got nothing"]


def test_database_url_environ_overrides() -> None:
    raw = minimal()
    raw["general_settings"] = {"database_url": "sqlite:///from-file.db"}

    loaded = parse_config(raw, {"DATABASE_URL": "postgresql://pareto@127.0.0.1:5432/env"})

    assert loaded.database_url == "postgresql://pareto@127.0.0.1:5432/env"


def test_database_url_from_file() -> None:
    raw = minimal()
    raw["general_settings"] = {"database_url": "sqlite:///from-file.db"}

    assert parse_config(raw, {}).database_url == "sqlite:///from-file.db"


def test_database_url_default() -> None:
    loaded = parse_config(minimal(), {})

    assert loaded.database_url == DEFAULT_DATABASE_URL
    assert loaded.database_url == "sqlite:///pareto.db"


def test_repeated_name_makes_group() -> None:
    raw = {
        "model_list": [
            entry_with(api_base="http://127.0.0.1:9001/v1"),
            {"model_name": "other", "litellm_params": {"model": "openai/other"}},
            entry_with(api_base="http://127.0.0.1:9002/v1"),
        ]
    }
    config = parse_config(raw, {}).config

    group = build_groups(config).deployments("m")

    assert len(group) == 2
    assert [d.api_base for d in group] == ["http://127.0.0.1:9001/v1", "http://127.0.0.1:9002/v1"]
    assert config.model_names() == ["m", "other"]


def test_example_configs_load() -> None:
    # demo-models.yaml is a `pareto simulate` persona config, checked in
    # tests/proxy/simulator/test_personas.py.
    examples = sorted(
        path
        for path in (Path(__file__).parents[2] / "config").glob("*.yaml")
        if path.name != "demo-models.yaml"
    )

    for path in examples:
        assert load_config(path, {}).config.model_list, path
