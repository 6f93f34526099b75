"""Tests for redacting e-mail addresses, phone numbers, card numbers and custom patterns."""

from __future__ import annotations

import copy
import re

import pytest

from evaluator.redaction import (
    CustomPattern,
    RedactionConfigError,
    Redactor,
    luhn_valid,
)

REDACTED_CASES = [
    # e-mail addresses
    ("Write to jane.doe@example.com today", "Write to [EMAIL] today"),
    ("jane.doe+billing@mail.example.co.uk.", "[EMAIL]."),
    ("JOHN_SMITH@Example.COM, please", "[EMAIL], please"),
    ("mailto:ops@example.org", "mailto:[EMAIL]"),
    ("<a.b@c-d.io>", "<[EMAIL]>"),
    # US phone numbers
    ("Call (415) 555-2671 now", "Call [PHONE] now"),
    ("Call (415)555-2671 now", "Call [PHONE] now"),
    ("Call 415-555-2671.", "Call [PHONE]."),
    ("Call 415.555.2671", "Call [PHONE]"),
    ("Call 415 555 2671", "Call [PHONE]"),
    ("Call 1-800-555-0199 toll free", "Call [PHONE] toll free"),
    # international phone numbers
    ("Call +1 (415) 555-2671", "Call [PHONE]"),
    ("Call +1-415-555-2671", "Call [PHONE]"),
    ("London: +44 20 7946 0958", "London: [PHONE]"),
    ("London: +44 (0)20 7946 0958", "London: [PHONE]"),
    ("Compact +442079460958 works", "Compact [PHONE] works"),
    ("Berlin +49 30 123456", "Berlin [PHONE]"),
    ("Paris +33 1.23.45.67.89", "Paris [PHONE]"),
    # payment card numbers (all Luhn-valid test numbers)
    ("Card 4111 1111 1111 1111 on file", "Card [CARD] on file"),
    ("Card 4111-1111-1111-1111", "Card [CARD]"),
    ("Card 4111111111111111.", "Card [CARD]."),
    ("Amex 3782 822463 10005", "Amex [CARD]"),
    ("Amex 378282246310005", "Amex [CARD]"),
    ("Mastercard 5555555555554444", "Mastercard [CARD]"),
    ("13 digits 4222222222222", "13 digits [CARD]"),
    ("19 digits 4111 1111 1111 1111 110", "19 digits [CARD]"),
    ("Discover 6011 0009 9013 9424", "Discover [CARD]"),
    ("Card 4111 1111 1111 1111 123 exp 12/26", "Card [CARD] 123 exp 12/26"),
    ("Cards 4111111111111111 and 5555555555554444", "Cards [CARD] and [CARD]"),
]


@pytest.mark.parametrize(("text", "expected"), REDACTED_CASES)
def test_redact_text_replaces(text: str, expected: str) -> None:
    assert Redactor().redact_text(text) == expected


UNCHANGED_CASES = [
    "The total is $5.99, or $1,299.00 with tax.",
    "Founded in 2024, renewed 2025-05-06.",
    "Order A-10023 shipped; order #10023 too.",
    "Order 1234567890 was paid.",
    "We need 3 x 12 boxes and 250 g of flour at 10:30.",
    "Population 1,234,567 and ratio 3.14159265358979.",
    "Local 555-1234 is too short to tell apart from a range.",
    "Version 1.2.3 on 192.168.1.10.",
    "Team scored +5 points, then +15 20 30.",
    # Luhn-invalid runs of card length
    "Reference 1234 5678 9012 3456.",
    "Reference 1234567812345678.",
    "Tracking 4111111111111112.",
    # a card-shaped run that is part of a decimal number
    "Total 4111111111111111.50 units",
    # numbers on separate lines are not one phone number
    "Counts:\n415\n555\n2671",
    # an @ without a domain is not an address
    "Ping @support or user@localhost",
]


@pytest.mark.parametrize("text", UNCHANGED_CASES)
def test_redact_text_leaves_ordinary_numbers(text: str) -> None:
    assert Redactor().redact_text(text) == text


def test_redact_text_mixed_kinds() -> None:
    text = "Jane (jane@example.com, +1 415-555-2671) paid $5.99 with 4111 1111 1111 1111."

    redacted = Redactor().redact_text(text)

    assert redacted == "Jane ([EMAIL], [PHONE]) paid $5.99 with [CARD]."


# ---------------------------------------------------------------------------
# Kinds switched off and custom patterns
# ---------------------------------------------------------------------------

MIXED_TEXT = "jane@example.com 415-555-2671 4111111111111111"


def test_kinds_can_be_switched_off() -> None:
    assert Redactor(emails=False).redact_text(MIXED_TEXT) == "jane@example.com [PHONE] [CARD]"
    assert Redactor(phones=False).redact_text(MIXED_TEXT) == "[EMAIL] 415-555-2671 [CARD]"
    assert Redactor(cards=False).redact_text(MIXED_TEXT) == "[EMAIL] [PHONE] 4111111111111111"

    nothing = Redactor(emails=False, phones=False, cards=False)
    assert nothing.redact_text(MIXED_TEXT) == MIXED_TEXT


def test_custom_pattern_default_placeholder() -> None:
    redactor = Redactor(custom_patterns=[CustomPattern(r"EMP-\d{6}")])

    assert redactor.redact_text("Employee EMP-123456 asked") == "Employee [REDACTED] asked"


def test_custom_pattern_own_placeholder() -> None:
    redactor = Redactor(
        custom_patterns=[
            CustomPattern(r"EMP-\d{6}", name="employee id", placeholder="[EMPLOYEE]"),
            CustomPattern(r"(?i)project\s+falcon", placeholder="[PROJECT]"),
        ]
    )

    redacted = redactor.redact_text("EMP-123456 works on Project  Falcon.")

    assert redacted == "[EMPLOYEE] works on [PROJECT]."


def test_custom_placeholder_kept_literally() -> None:
    redactor = Redactor(custom_patterns=[CustomPattern(r"(EMP)-\d+", placeholder=r"[\1 \g<0>\d]")])

    assert redactor.redact_text("EMP-42 left") == r"[\1 \g<0>\d] left"


def test_custom_pattern_runs_before_builtin_kinds() -> None:
    redactor = Redactor(custom_patterns=[CustomPattern(r"\S+@internal\.example\.com", "staff")])

    redacted = redactor.redact_text("bob@internal.example.com and ann@example.com")

    assert redacted == "[REDACTED] and [EMAIL]"


def test_custom_pattern_invalid_regex_named() -> None:
    pattern = CustomPattern(r"TKT-[0-9", name="ticket")

    with pytest.raises(RedactionConfigError) as excinfo:
        Redactor(custom_patterns=[CustomPattern("ok"), pattern])

    message = str(excinfo.value)
    assert message.startswith("custom_patterns[1] ('ticket'): invalid regular expression")
    assert "'TKT-[0-9'" in message
    assert "unterminated character set" in message
    assert isinstance(excinfo.value, ValueError)


def test_custom_pattern_empty_match_rejected() -> None:
    with pytest.raises(RedactionConfigError, match=r"'x\*' matches the empty string"):
        Redactor(custom_patterns=[CustomPattern("x*")])


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


def test_from_settings_defaults_enable_all_kinds() -> None:
    redactor = Redactor.from_settings({})

    assert redactor.redact_text(MIXED_TEXT) == "[EMAIL] [PHONE] [CARD]"


def test_from_settings_flags_and_custom_patterns() -> None:
    settings = {
        "emails": True,
        "phones": False,
        "cards": True,
        "custom_patterns": [
            r"ACCT-\d+",
            {"pattern": r"EMP-\d{6}", "name": "employee id", "placeholder": "[EMPLOYEE]"},
        ],
    }

    redactor = Redactor.from_settings(settings)

    assert redactor.redact_text("ACCT-77 EMP-123456 415-555-2671 a@b.io") == (
        "[REDACTED] [EMPLOYEE] 415-555-2671 [EMAIL]"
    )


BAD_SETTINGS = [
    ({"email": True}, r"^redaction: unknown key 'email'; allowed keys are emails, phones, "),
    ({"phones": "no"}, r"^redaction\.phones: expected true or false, got 'no'$"),
    ({"custom_patterns": "EMP-\\d+"}, r"^redaction\.custom_patterns: expected a list, got "),
    (
        {"custom_patterns": [5]},
        r"^redaction\.custom_patterns\[0\]: expected a regular expression string or an object",
    ),
    (
        {"custom_patterns": [{"name": "ticket"}]},
        r"^redaction\.custom_patterns\[0\]\.pattern: missing$",
    ),
    (
        {"custom_patterns": [{"pattern": "x", "label": "y"}]},
        r"^redaction\.custom_patterns\[0\]: unknown key 'label'; allowed keys are pattern, ",
    ),
    (
        {"custom_patterns": [{"pattern": "x", "placeholder": 3}]},
        r"^redaction\.custom_patterns\[0\]\.placeholder: expected a string, got 3$",
    ),
    (
        {"custom_patterns": ["ok", {"pattern": "(unclosed", "name": "broken"}]},
        r"^redaction\.custom_patterns\[1\] \('broken'\): invalid regular expression '\(unclosed'",
    ),
    (
        {"custom_patterns": ["[a-"]},
        r"^redaction\.custom_patterns\[0\]: invalid regular expression '\[a-'",
    ),
]


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS)
def test_from_settings_rejects(settings: dict[str, object], message: str) -> None:
    with pytest.raises(RedactionConfigError, match=message):
        Redactor.from_settings(settings)


def test_from_settings_location_prefix() -> None:
    with pytest.raises(RedactionConfigError, match=r"^evaluation\.redaction\.cards: "):
        Redactor.from_settings({"cards": 1}, where="evaluation.redaction")


# ---------------------------------------------------------------------------
# Chat messages
# ---------------------------------------------------------------------------


def sample_messages() -> list[dict[str, object]]:
    return [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "I am jane@example.com, call me at 415-555-2671."},
        {
            "role": "user",
            "name": "jane",
            "content": [
                {"type": "text", "text": "My card 4111 1111 1111 1111 was charged $5.99."},
                {"type": "image_url", "image_url": {"url": "https://example.com/a@b.co.png"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "text", "text": "Order A-10023."},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"order": "A-10023"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Owner: jane@example.com"},
    ]


def test_redact_messages_string_and_parts() -> None:
    redacted = Redactor().redact_messages(sample_messages())

    assert redacted[0] == {"role": "system", "content": "You are a support agent."}
    assert redacted[1]["content"] == "I am [EMAIL], call me at [PHONE]."
    parts = redacted[2]["content"]
    assert parts[0] == {"type": "text", "text": "My card [CARD] was charged $5.99."}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/a@b.co.png"}}
    assert parts[2] == {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert parts[3] == {"type": "text", "text": "Order A-10023."}
    assert redacted[2]["name"] == "jane"
    assert redacted[3] == sample_messages()[3]
    assert redacted[4]["content"] == "Owner: [EMAIL]"


def test_redact_messages_does_not_mutate_input() -> None:
    messages = sample_messages()
    original = copy.deepcopy(messages)

    redacted = Redactor().redact_messages(messages)

    assert messages == original
    for before, after in zip(messages, redacted, strict=True):
        assert before is not after
    assert redacted[2]["content"] is not messages[2]["content"]
    assert redacted[2]["content"][1] is not messages[2]["content"][1]


def test_redact_messages_returns_independent_copies() -> None:
    messages = sample_messages()
    original = copy.deepcopy(messages)

    redacted = Redactor().redact_messages(messages)
    redacted[2]["content"][1]["image_url"]["url"] = "changed"
    redacted[3]["tool_calls"][0]["function"]["name"] = "changed"

    assert messages == original


def test_redact_messages_tolerates_odd_parts() -> None:
    messages = [{"role": "user", "content": [{"type": "text"}, "loose a@b.io", {"text": "x@y.io"}]}]

    redacted = Redactor().redact_messages(messages)

    assert redacted == messages


def test_redact_messages_empty_list() -> None:
    assert Redactor().redact_messages([]) == []


# ---------------------------------------------------------------------------
# Luhn checksum and scanning cost
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("378282246310005", True),
        ("79927398713", True),
        ("4111111111111112", False),
        ("1234567812345678", False),
        ("0", True),
    ],
)
def test_luhn_valid(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


def test_long_text_without_matches_is_unchanged() -> None:
    text = ("A" * 200_000) + " " + ("7" * 50_000)

    assert Redactor().redact_text(text) == text


def test_placeholders_survive_second_pass() -> None:
    redactor = Redactor()
    once = redactor.redact_text(MIXED_TEXT)

    assert redactor.redact_text(once) == once
    assert re.fullmatch(r"\[EMAIL\] \[PHONE\] \[CARD\]", once)
