"""Pytest fixtures for the fake upstream, meant to be imported by a conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.upstream import FakeUpstream


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """Yield a running FakeUpstream without an API key, and stop it after the test."""
    with FakeUpstream() as upstream:
        yield upstream
