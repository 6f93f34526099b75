"""Number formatting for the sentences that explain a decision."""

from __future__ import annotations

_MAX_DECIMALS = 4


def format_pair(value: float, limit: float, decimals: int) -> tuple[str, str]:
    """Format a value and the limit it is compared with, so that the two strings differ.

    Both numbers get ``decimals`` places, or more (up to 4) when the shorter form would print
    them equal, so that "7.96 < 8.00" is not shown as "8.0 < 8.0".
    """
    places = decimals
    while True:
        value_text = f"{value:.{places}f}"
        limit_text = f"{limit:.{places}f}"
        if value_text != limit_text or places >= _MAX_DECIMALS:
            return value_text, limit_text
        places += 1


def format_score(score: float) -> str:
    """Format a judge score with one decimal."""
    return f"{score:.1f}"


def format_share(share: float) -> str:
    """Format a share from 0 to 1 as a percentage, such as "62%".

    Shares below 1% keep one significant digit, so that a small saving does not print as "0%".
    """
    percent = share * 100
    if 0 < abs(percent) < 1:
        return f"{percent:.1g}%"
    return f"{percent:.0f}%"
