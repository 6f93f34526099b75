"""Redaction of personal data from text and chat messages before they are stored.

A `Redactor` replaces e-mail addresses with ``[EMAIL]``, phone numbers with ``[PHONE]``,
payment card numbers with ``[CARD]``, and matches of custom regular expressions with
``[REDACTED]`` or a placeholder of their own. Detection is by pattern, so it is a safety net
that reduces what is stored, not a guarantee that no personal data remains.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EMAIL_PLACEHOLDER = "[EMAIL]"
PHONE_PLACEHOLDER = "[PHONE]"
CARD_PLACEHOLDER = "[CARD]"
DEFAULT_PLACEHOLDER = "[REDACTED]"

_SETTING_KEYS = ("emails", "phones", "cards", "custom_patterns")
_CUSTOM_PATTERN_KEYS = ("pattern", "name", "placeholder")

# The lookbehind starts a match only at the beginning of a run of address characters, which
# keeps a long run without "@" (such as base64 text) linear to scan.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# Card candidates: runs of 13-19 digits, contiguous or in groups of at least three digits that
# are all split by the same single space or dash ("4111 1111 1111 1111", "3782-822463-10005").
# Each candidate must also pass the Luhn checksum, see `_redact_card_run`.
_CARD_RUN = re.compile(
    r"(?<![\d.,])\d{3,19}(?:(?P<sep>[ -])\d{3,19}(?:(?P=sep)\d{3,19})*)?(?!\d|[.,]\d)"
)
_CARD_MIN_DIGITS = 13
_CARD_MAX_DIGITS = 19

# International numbers start with "+" and a country code, then digit groups that may be
# split by a space, dot or dash or wrapped in parentheses. E.164 allows at most 15 digits, and
# fewer than 8 is more likely a score or a count than a phone number.
_INTERNATIONAL_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?!\d)"
)
_INTERNATIONAL_MIN_DIGITS = 8
_INTERNATIONAL_MAX_DIGITS = 15

# US numbers need separators, as in "(415) 555-2671", "415-555-2671", "415.555.2671" or
# "1-800-555-0199", so that ten-digit order ids and amounts are left alone. Separators never
# span a line break, so a column of numbers is not read as one phone number.
_US_PHONE = re.compile(r"(?<![\w+])(?:1[-. ])?(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?!\d)")


class RedactionConfigError(ValueError):
    """Raised for invalid redaction settings; the message names the setting and the value."""


@dataclass(frozen=True)
class CustomPattern:
    """A regular expression whose matches are replaced with ``placeholder``.

    ``name`` appears in error messages next to the pattern's position in the list.
    """

    pattern: str
    name: str | None = None
    placeholder: str = DEFAULT_PLACEHOLDER


class Redactor:
    """Replace e-mail addresses, phone numbers, card numbers and custom matches in text.

    Custom patterns run first, in the order given, so they can claim text that a built-in
    kind would also match. Then come e-mail addresses, card numbers and phone numbers, with
    cards before phones because a grouped card number also looks like digit groups.
    """

    def __init__(
        self,
        *,
        emails: bool = True,
        phones: bool = True,
        cards: bool = True,
        custom_patterns: Sequence[CustomPattern] = (),
    ) -> None:
        """Compile the custom patterns, raising `RedactionConfigError` for an invalid one."""
        self.emails = emails
        self.phones = phones
        self.cards = cards
        self._custom = [
            _compile_custom(custom, f"custom_patterns[{index}]")
            for index, custom in enumerate(custom_patterns)
        ]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str = "redaction") -> Redactor:
        """Build a redactor from a settings mapping such as a parsed YAML section.

        Keys, all optional: ``emails``, ``phones`` and ``cards`` (booleans, default true), and
        ``custom_patterns``, a list of regular expression strings or of objects with
        ``pattern`` and optional ``name`` and ``placeholder``. ``where`` prefixes error
        locations, as in ``redaction.custom_patterns[1].pattern``.
        """
        _reject_unknown_keys(settings, where, _SETTING_KEYS)
        flags = {key: _read_flag(settings, where, key) for key in ("emails", "phones", "cards")}

        raw_patterns = settings.get("custom_patterns", [])
        if not isinstance(raw_patterns, list):
            raise RedactionConfigError(
                f"{where}.custom_patterns: expected a list, got {raw_patterns!r}"
            )
        custom = [
            _read_custom_pattern(raw, f"{where}.custom_patterns[{index}]")
            for index, raw in enumerate(raw_patterns)
        ]
        try:
            return cls(**flags, custom_patterns=custom)
        except RedactionConfigError as exc:
            raise RedactionConfigError(f"{where}.{exc}") from exc

    def redact_text(self, text: str) -> str:
        """Return ``text`` with every enabled kind of personal data replaced by its placeholder."""
        for pattern, placeholder in self._custom:
            text = pattern.sub(placeholder, text)
        if self.emails:
            text = _EMAIL.sub(EMAIL_PLACEHOLDER, text)
        if self.cards:
            text = _CARD_RUN.sub(_redact_card_run, text)
        if self.phones:
            text = _INTERNATIONAL_PHONE.sub(_redact_international_phone, text)
            text = _US_PHONE.sub(PHONE_PLACEHOLDER, text)
        return text

    def redact_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Return copies of OpenAI chat messages with their text content redacted.

        String content and the ``text`` of ``{"type": "text"}`` content parts are redacted.
        Other parts, such as images, and other message fields are copied unchanged. The input
        messages are never modified.
        """
        # NOTE: tool call arguments are copied unredacted, because they are JSON whose numbers
        # a placeholder would turn into invalid JSON.
        return [self._redact_message(message) for message in messages]

    def _redact_message(self, message: Mapping[str, Any]) -> dict[str, Any]:
        redacted = copy.deepcopy(dict(message))
        content = redacted.get("content")
        if isinstance(content, str):
            redacted["content"] = self.redact_text(content)
        elif isinstance(content, list):
            for part in content:
                if _is_text_part(part):
                    part["text"] = self.redact_text(part["text"])
        return redacted


def _is_text_part(part: object) -> bool:
    return (
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
    )


# ---------------------------------------------------------------------------
# Card and phone matching
# ---------------------------------------------------------------------------


def _redact_card_run(match: re.Match[str]) -> str:
    """Replace the Luhn-valid card numbers inside one run of digit groups.

    A run can be longer than a card, as in "4111 1111 1111 1111 123" with a security code
    after it, so the longest Luhn-valid stretch of 13-19 digits from each group start wins.
    """
    separator = match.group("sep") or ""
    groups = match.group(0).split(separator) if separator else [match.group(0)]

    pieces = []
    start = 0
    while start < len(groups):
        end = _card_end(groups, start)
        if end is None:
            pieces.append(groups[start])
            start += 1
        else:
            pieces.append(CARD_PLACEHOLDER)
            start = end
    return separator.join(pieces)


def _card_end(groups: Sequence[str], start: int) -> int | None:
    for end in range(len(groups), start, -1):
        digits = "".join(groups[start:end])
        if _CARD_MIN_DIGITS <= len(digits) <= _CARD_MAX_DIGITS and luhn_valid(digits):
            return end
    return None


def luhn_valid(digits: str) -> bool:
    """Check a string of digits against the Luhn checksum used by payment card numbers."""
    total = 0
    for position, character in enumerate(reversed(digits)):
        value = int(character)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _redact_international_phone(match: re.Match[str]) -> str:
    digit_count = sum(character.isdigit() for character in match.group(0))
    if _INTERNATIONAL_MIN_DIGITS <= digit_count <= _INTERNATIONAL_MAX_DIGITS:
        return PHONE_PLACEHOLDER
    return match.group(0)


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


def _compile_custom(custom: CustomPattern, where: str) -> tuple[re.Pattern[str], str]:
    label = f"{where} ({custom.name!r})" if custom.name else where
    try:
        compiled = re.compile(custom.pattern)
    except re.error as exc:
        raise RedactionConfigError(
            f"{label}: invalid regular expression {custom.pattern!r}: {exc}"
        ) from exc
    if compiled.fullmatch(""):
        raise RedactionConfigError(
            f"{label}: {custom.pattern!r} matches the empty string, "
            "so it would insert placeholders everywhere"
        )
    # re.sub reads backslashes in a replacement string as group references, so escape them.
    return compiled, custom.placeholder.replace("\\", "\\\\")


def _read_custom_pattern(raw: object, where: str) -> CustomPattern:
    if isinstance(raw, str):
        return CustomPattern(raw)
    if not isinstance(raw, Mapping):
        raise RedactionConfigError(
            f"{where}: expected a regular expression string or an object with 'pattern', "
            f"got {raw!r}"
        )

    _reject_unknown_keys(raw, where, _CUSTOM_PATTERN_KEYS)
    if "pattern" not in raw:
        raise RedactionConfigError(f"{where}.pattern: missing")
    for key in _CUSTOM_PATTERN_KEYS:
        if key in raw and not isinstance(raw[key], str):
            raise RedactionConfigError(f"{where}.{key}: expected a string, got {raw[key]!r}")
    return CustomPattern(
        pattern=raw["pattern"],
        name=raw.get("name"),
        placeholder=raw.get("placeholder", DEFAULT_PLACEHOLDER),
    )


def _read_flag(settings: Mapping[str, Any], where: str, key: str) -> bool:
    value = settings.get(key, True)
    if not isinstance(value, bool):
        raise RedactionConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _reject_unknown_keys(raw: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise RedactionConfigError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(allowed)}"
        )
