"""The in-memory route table: which model serves each policy right now.

A request belongs to a policy when its `model` is the policy's name or one of its
`match_models`, or when the `x-pareto-policy` header names the policy. Lookups are two dict
reads. `apply()` replaces a policy's route by swapping one immutable `Route` object, so a request
gets either the old route or the new one, never a mix, and none is dropped during a switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policy_config import PolicyConfig


@dataclass(frozen=True)
class Route:
    """The model serving a policy, and the decision that put it there (None: the default)."""

    model: str
    decision_id: int | None = None


class RouteTable:
    """Policies by name and by matched model, and each policy's current route."""

    def __init__(self, policies: dict[str, PolicyConfig]) -> None:
        self._policies = dict(policies)
        self._by_model = {
            model: name for name, policy in policies.items() for model in policy.match_models
        }
        self._routes = {name: Route(policy.reference) for name, policy in policies.items()}

    def __contains__(self, policy: object) -> bool:
        return policy in self._policies

    def __bool__(self) -> bool:
        return bool(self._policies)

    def names(self) -> list[str]:
        return list(self._policies)

    def policy(self, name: str) -> PolicyConfig:
        return self._policies[name]

    def policy_for(self, model: str, header: str | None = None) -> str | None:
        """Return the policy a request belongs to, or None for plain model traffic."""
        if header is not None:
            return header if header in self._policies else None
        if model in self._policies:
            return model
        return self._by_model.get(model)

    def route(self, policy: str) -> Route:
        return self._routes[policy]

    def apply(self, policy: str, model: str, decision_id: int | None) -> Route | None:
        """Point `policy` at `model`; return the route it replaced (None when unchanged)."""
        previous = self._routes[policy]
        new = Route(model, decision_id)
        if previous == new:
            return None
        # One dict item assignment: requests read either route, both valid.
        self._routes[policy] = new
        return previous
