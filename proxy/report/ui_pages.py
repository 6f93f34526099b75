"""The small pages around the live report at /ui: the policy list, the login form and errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.report.layout import document
from proxy.report.svg import esc


@dataclass(frozen=True)
class PolicyLink:
    """One line of the policy list: the policy, the model it routes to and its page."""

    policy: str
    model: str
    href: str


def render_index(
    policies: Sequence[PolicyLink], *, logout_action: str | None, open_gateway: bool
) -> str:
    """Return the page that lists the gateway's policies with links to their reports."""
    logout = ""
    if logout_action is not None:
        logout = (
            f'<nav class="live"><form method="post" action="{esc(logout_action)}">'
            '<button type="submit">Log out</button></form></nav>'
        )
    if policies:
        items = "\n".join(
            f'<li><a href="{esc(link.href)}">{esc(link.policy)}</a>, routes to '
            f"{esc(link.model)}</li>"
            for link in policies
        )
        listing = f'<ul class="policies">\n{items}\n</ul>'
    else:
        listing = (
            '<p class="empty">No policies are configured on this gateway. Add one under '
            "<code>policies:</code> in the configuration file.</p>"
        )
    warning = ""
    if open_gateway:
        warning = (
            '<p class="problems">This gateway has no master key '
            "(<code>general_settings.master_key</code>), so these pages are open to anyone "
            "who can reach it.</p>"
        )
    body = f"{logout}\n<h1>Pareto policies</h1>\n{warning}\n{listing}"
    return document("Pareto policies", body)


def render_login(action: str, message: str | None = None) -> str:
    """Return the login form, which takes the gateway's master key."""
    notice = f'<p class="problems">{esc(message)}</p>' if message else ""
    body = (
        "<h1>Pareto</h1>\n"
        "<p>Enter the gateway's master key (<code>general_settings.master_key</code>) to see "
        "its policy reports. The browser keeps a signed session cookie, not the key.</p>\n"
        f"{notice}\n"
        f'<form method="post" action="{esc(action)}">\n'
        # A hidden user name lets password managers store the key. The gateway ignores it.
        '<input type="text" name="username" value="pareto" autocomplete="username" hidden>\n'
        '<p><label for="key">Master key</label><br>\n'
        '<input type="password" id="key" name="key" autocomplete="current-password" '
        "required autofocus></p>\n"
        '<p><button type="submit">Log in</button></p>\n</form>'
    )
    return document("Pareto: log in", body)


def render_error(status: int, title: str, message: str, back_href: str | None = None) -> str:
    """Return an error page with the status, a title and one or two sentences."""
    back = f'<p><a href="{esc(back_href)}">All policies</a></p>' if back_href else ""
    body = f"<h1>{status}: {esc(title)}</h1>\n<p>{esc(message)}</p>\n{back}"
    return document(f"{status} {title}", body)
