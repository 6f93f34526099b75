"""The local-model test configuration: `offline.yaml` pointed at the servers a test started.

`offline.yaml` names fixed ports (8081 SmolLM2, 8082 Gemma, 8090 the reference stand-in) for
the documented evaluation. Tests start their servers on free ports, so `offline_config`
rewrites each `api_base` to the matching running server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "config" / "local-models.yaml"
OFFLINE_CONFIG = Path(__file__).with_name("offline.yaml")

SMOLLM2_BASE = "http://127.0.0.1:8081/v1"
GEMMA_BASE = "http://127.0.0.1:8082/v1"
REFERENCE_BASE = "http://127.0.0.1:8090/v1"

POLICY = "local-qa"
SMOLLM2 = "smollm2-135m"
GEMMA = "gemma3-270m"
EMBEDDINGS = "smollm2-135m-embeddings"
REFERENCE = "gpt-4o-mini"


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def offline_config(
    *,
    smollm2_base: str,
    gemma_base: str,
    reference_base: str,
    database_url: str,
    master_key: str | None = None,
) -> dict[str, Any]:
    """Return `offline.yaml` with each `api_base` replaced by a running server's base URL."""
    config = load_yaml(OFFLINE_CONFIG)
    bases = {SMOLLM2_BASE: smollm2_base, GEMMA_BASE: gemma_base, REFERENCE_BASE: reference_base}
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        params["api_base"] = bases[params["api_base"]]
    settings: dict[str, Any] = {"database_url": database_url}
    if master_key is not None:
        settings["master_key"] = master_key
    config["general_settings"] = settings
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
