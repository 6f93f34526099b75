"""Parts of the local-model setup that need no model server, so they run without the extra.

The example configuration is valid, its offline copy stays in step with it, and a missing
extra skips the local-model tests, except in CI, where it fails them.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import parse_config
from proxy.deployments import build_groups
from tests.local_models.configs import (
    EMBEDDINGS,
    EXAMPLE_CONFIG,
    GEMMA,
    OFFLINE_CONFIG,
    POLICY,
    REFERENCE,
    SMOLLM2,
    load_yaml,
)
from tests.local_models.conftest import require_local_models


def test_example_config_is_valid() -> None:
    loaded = parse_config(load_yaml(EXAMPLE_CONFIG), {"OPENAI_API_KEY": "sk-example"})
    warnings: list[str] = []
    groups = build_groups(loaded.config, warnings)

    assert warnings == []
    assert groups.names() == [SMOLLM2, GEMMA, EMBEDDINGS, REFERENCE]
    for name in (SMOLLM2, GEMMA, EMBEDDINGS):
        (deployment,) = groups.deployments(name)
        assert deployment.direct, name
        assert deployment.api_base is not None
        assert deployment.api_base.startswith("http://127.0.0.1:"), name
        assert deployment.prices.cost(1000, 1000, 0) == 0, name
    (reference,) = groups.deployments(REFERENCE)
    assert reference.prices.cost(1_000_000, 1_000_000, 0) > 0
    policy = loaded.config.policies[POLICY]
    assert policy.reference == REFERENCE
    assert policy.candidates == [REFERENCE, SMOLLM2, GEMMA]
    assert policy.judge == "checks"


def test_offline_config_matches_example() -> None:
    example = load_yaml(EXAMPLE_CONFIG)
    offline = load_yaml(OFFLINE_CONFIG)
    example_models = {entry["model_name"]: entry for entry in example["model_list"]}
    offline_models = {entry["model_name"]: entry for entry in offline["model_list"]}

    assert offline["policies"] == example["policies"]
    assert offline["evaluation"] == example["evaluation"]
    assert list(offline_models) == list(example_models)
    for name, entry in offline_models.items():
        expected: dict[str, Any] = example_models[name]
        assert entry.get("model_info") == expected.get("model_info"), name
        if name != REFERENCE:
            assert entry["litellm_params"] == expected["litellm_params"], name
    reference_params = offline_models[REFERENCE]["litellm_params"]
    assert reference_params["model"] == example_models[REFERENCE]["litellm_params"]["model"]
    assert reference_params["api_base"].startswith("http://127.0.0.1:")
    assert "api_key" not in reference_params


def test_missing_extra_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.local_models.conftest.missing_modules", lambda: ["llama_cpp"])
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception) as caught:
        require_local_models()

    assert "llama_cpp" in str(caught.value)
    assert "make local-models" in str(caught.value)


def test_missing_extra_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.local_models.conftest.missing_modules", lambda: ["llama_cpp"])
    monkeypatch.setenv("CI", "1")

    with pytest.raises(pytest.fail.Exception) as caught:
        require_local_models()

    assert "llama_cpp" in str(caught.value)
