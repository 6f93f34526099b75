"""App factory for worker processes started by `pareto serve --workers N`."""

from __future__ import annotations

import os

from proxy import logs
from proxy.app import Gateway, build_state, create_app
from proxy.cli import CONFIG_ENV
from proxy.config import load_config


def app() -> Gateway:
    """Build the app from the configuration file named by PARETO_CONFIG."""
    loaded = load_config(os.environ[CONFIG_ENV])
    state = build_state(loaded)
    logs.configure(os.environ.get("PARETO_LOG_LEVEL", "info"), state.secrets)
    return create_app(loaded, state)
