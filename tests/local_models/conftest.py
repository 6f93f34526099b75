"""Fixtures of the local-model tests: the two real llama.cpp servers, started once per session.

Without the `local` extra (llama-cpp-python and the two model packages) these tests are
skipped, except in CI (`CI` set), where they fail so that a broken install cannot pass unseen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.local_models.servers import (
    INSTALL_HINT,
    LlamaServer,
    gemma_server,
    missing_modules,
    smollm2_server,
)


@dataclass(frozen=True)
class LocalServers:
    """The running SmolLM2 and Gemma servers."""

    smollm2: LlamaServer
    gemma: LlamaServer


def require_local_models() -> None:
    """Skip the test (fail it in CI) when a package of the `local` extra is missing."""
    missing = missing_modules()
    if not missing:
        return
    message = f"local model packages not installed: {', '.join(missing)}; {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def local_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    require_local_models()
    log_dir = tmp_path_factory.mktemp("llama-servers")
    with smollm2_server(log_dir) as smollm2, gemma_server(log_dir) as gemma:
        yield LocalServers(smollm2, gemma)
