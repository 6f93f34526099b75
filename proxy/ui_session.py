"""Session cookies of the /ui pages, so that a browser need not send the master key each time.

A cookie value is `EXPIRES.SIGNATURE`: the Unix time at which the session ends, and the
HMAC-SHA256 of that time keyed by the master key. The cookie never contains the key itself,
and changing the master key ends every session.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE_NAME = "pareto_ui_session"
SESSION_SECONDS = 12 * 3600
_PURPOSE = b"pareto /ui session v1:"


def issue_session(master_key: bytes, now: float) -> str:
    """Return a cookie value that `verify_session` accepts until `SESSION_SECONDS` from `now`."""
    expires = str(int(now) + SESSION_SECONDS)
    return f"{expires}.{_sign(master_key, expires)}"


def verify_session(master_key: bytes, value: str, now: float) -> bool:
    """Return True when `value` was issued with this master key and has not expired at `now`."""
    expires, _, signature = value.partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    if not hmac.compare_digest(signature.encode(), _sign(master_key, expires).encode()):
        return False
    return now < int(expires)


def _sign(master_key: bytes, expires: str) -> str:
    return hmac.new(master_key, _PURPOSE + expires.encode(), hashlib.sha256).hexdigest()
