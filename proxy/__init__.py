"""Pareto gateway: the running service (app, routes, forwarding, request record, CLI)."""
