"""Tests for deterministic checks: parsing specs, running them, scores and the judge cap."""

from __future__ import annotations

import pytest

from evaluator.checks import (
    DEFAULT_FAILED_CHECK_CAP,
    FAIL_SCORE,
    PASS_SCORE,
    CheckReport,
    CheckResult,
    CheckSpecError,
    ContainsCheck,
    EqualsCheck,
    JsonSchemaCheck,
    JsonValidCheck,
    NumberCheck,
    RegexCheck,
    cap_judge_score,
    extract_final_number,
    extract_final_number_text,
    load_json_output,
    parse_check,
    parse_checks,
    run_checks,
)


def run_one(spec: dict[str, object], output: str) -> CheckResult:
    report = run_checks(parse_checks([spec]), output)
    assert len(report.results) == 1
    return report.results[0]


# ---------------------------------------------------------------------------
# Running each check type
# ---------------------------------------------------------------------------

PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
}

CHECK_CASES = [
    # equals
    ({"type": "equals", "value": "Paris"}, "Paris", True),
    ({"type": "equals", "value": "Paris"}, "  Paris\n", True),
    ({"type": "equals", "value": " Paris "}, "Paris", True),
    ({"type": "equals", "value": "Paris"}, "paris", False),
    ({"type": "equals", "value": "Paris"}, "Paris.", False),
    ({"type": "equals", "value": "a  b"}, "a b", False),
    # contains
    ({"type": "contains", "value": "$5.99"}, "The total is $5.99 today.", True),
    ({"type": "contains", "value": "$5.99"}, "The total is $5.98.", False),
    ({"type": "contains", "value": "REFUND"}, "Your refund is on its way", True),
    ({"type": "contains", "value": ["refund", "3-5 days"]}, "Refund within 3-5 days", True),
    ({"type": "contains", "value": ["refund", "3-5 days"]}, "Refund within a week", False),
    ({"type": "contains", "value": "STRASSE", "case_sensitive": False}, "Hauptstraße 1", True),
    ({"type": "contains", "value": "Refund", "case_sensitive": True}, "refund", False),
    ({"type": "contains", "value": "Refund", "case_sensitive": True}, "Refund", True),
    # regex
    ({"type": "regex", "value": r"order #\d{5}"}, "Your order #10023 shipped", True),
    ({"type": "regex", "value": r"^\d+$"}, "abc 123", False),
    ({"type": "regex", "value": r"(?i)^yes\b"}, "Yes, it is.", True),
    ({"type": "regex", "value": r"shipped"}, "not yet shipped", True),
    # json_valid
    ({"type": "json_valid"}, '{"a": 1}', True),
    ({"type": "json_valid"}, "  \n[1, 2, 3]\n ", True),
    ({"type": "json_valid"}, '```json\n{"a": 1}\n```', True),
    ({"type": "json_valid"}, '```JSON\n{"a": 1}\n```\n', True),
    ({"type": "json_valid"}, '```\n{"a": 1}\n```', True),
    ({"type": "json_valid"}, '{"a": 1', False),
    ({"type": "json_valid"}, 'Here it is: {"a": 1}', False),
    ({"type": "json_valid"}, '```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```', False),
    ({"type": "json_valid"}, "", False),
    # json_schema
    ({"type": "json_schema", "value": PRODUCT_SCHEMA}, '{"name": "mug", "price": 5.99}', True),
    (
        {"type": "json_schema", "value": PRODUCT_SCHEMA},
        '```json\n{"name": "mug", "price": 5}\n```',
        True,
    ),
    ({"type": "json_schema", "value": PRODUCT_SCHEMA}, '{"name": "mug", "price": "5.99"}', False),
    ({"type": "json_schema", "value": PRODUCT_SCHEMA}, '{"name": "mug"}', False),
    ({"type": "json_schema", "value": PRODUCT_SCHEMA}, "name: mug", False),
    # number
    ({"type": "number", "value": 18}, "The answer is 18.", True),
    ({"type": "number", "value": 18}, "The answer is 17.", False),
    ({"type": "number", "value": "18"}, "#### 18", True),
    ({"type": "number", "value": 18.0}, "She pays **$18.00**", False),
    ({"type": "number", "value": 18.0, "numeric": True}, "She pays **$18.00**", True),
    ({"type": "number", "value": "1,200"}, "In total: 1200 apples", True),
]


@pytest.mark.parametrize(("spec", "output", "expected"), CHECK_CASES)
def test_check_outcome(spec: dict[str, object], output: str, expected: bool) -> None:
    result = run_one(spec, output)

    assert result.passed is expected, result.explanation
    assert result.check_type == spec["type"]
    assert result.explanation


EXPLANATION_CASES = [
    ({"type": "contains", "value": "$5.99"}, "It costs $6", "missing '$5.99'"),
    (
        {"type": "contains", "value": ["refund", "receipt", "days"]},
        "Refund in 3 days",
        "missing 'receipt'",
    ),
    ({"type": "number", "value": 18}, "So 17 apples.", "final number 17 != 18"),
    ({"type": "number", "value": 18}, "So 18 apples.", "final number 18 == 18"),
    ({"type": "number", "value": 2.5}, "It is 2.25", "final number 2.25 != 2.5"),
    ({"type": "number", "value": 18}, "I cannot tell.", "no number found"),
    (
        {"type": "number", "value": 18},
        "It is 18.00",
        'final number 18.00 != 18 as written, but equal in value (set "numeric": true',
    ),
    ({"type": "number", "value": 18}, "It is 18.5", "final number 18.5 != 18"),
    ({"type": "number", "value": 18, "numeric": True}, "It is 18.00", "final number 18 == 18"),
    ({"type": "number", "value": 18, "numeric": True}, "It is 18.5", "final number 18.5 != 18"),
    ({"type": "number", "value": 18, "numeric": True}, "Nothing.", "no number found"),
    ({"type": "equals", "value": "Paris"}, "Lyon", "expected 'Paris', got 'Lyon'"),
    ({"type": "regex", "value": r"\d{3}"}, "12", r"no match for '\\d{3}'"),
    ({"type": "regex", "value": r"\d{3}"}, "call 555 now", "matched '555'"),
    ({"type": "json_valid"}, "{", "invalid JSON: "),
    (
        {"type": "json_schema", "value": PRODUCT_SCHEMA},
        '{"name": "mug", "price": "cheap"}',
        "schema violation at $.price: 'cheap' is not of type 'number'",
    ),
    (
        {"type": "json_schema", "value": PRODUCT_SCHEMA},
        '{"name": "mug"}',
        "schema violation at $: 'price' is a required property",
    ),
]


@pytest.mark.parametrize(("spec", "output", "explanation"), EXPLANATION_CASES)
def test_check_explanation(spec: dict[str, object], output: str, explanation: str) -> None:
    result = run_one(spec, output)

    assert result.explanation.startswith(explanation)


def test_number_explanation_hint_only_when_equal() -> None:
    result = run_one({"type": "number", "value": 18}, "It is 18.5")

    assert "numeric" not in result.explanation


def test_contains_lists_every_missing_string() -> None:
    result = run_one({"type": "contains", "value": ["a1", "b2", "c3"]}, "b2 only")

    assert result.explanation == "missing 'a1', 'c3'"


def test_unresolvable_schema_ref_raises() -> None:
    checks = parse_checks([{"type": "json_schema", "value": {"$ref": "#/$defs/missing"}}])

    with pytest.raises(CheckSpecError, match="schema reference cannot be resolved"):
        run_checks(checks, "{}")


def test_unknown_meta_schema_uses_latest_draft() -> None:
    schema = {"$schema": "urn:example:unknown", "type": "integer"}

    assert run_one({"type": "json_schema", "value": schema}, "3").passed
    assert not run_one({"type": "json_schema", "value": schema}, '"3"').passed


def test_load_json_output_strips_fence() -> None:
    assert load_json_output('```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    assert load_json_output(' \n"text"\t') == "text"


# ---------------------------------------------------------------------------
# Final-number extraction
# ---------------------------------------------------------------------------

NUMBER_CASES = [
    # plain and final position
    ("18", 18),
    ("The answer is 18.", 18),
    ("He needs 3 hours.", 3),
    ("18 dollars", 18),
    ("First 4, then 7, finally 12 apples", 12),
    # thousands separators, currency, percent, decimals, negatives
    ("The total is 1,234,567 people.", 1234567),
    ("It costs $1,200.50 in total.", 1200.5),
    ("Price: €15.", 15),
    ("Price: £7.25", 7.25),
    ("She pays **$18**", 18),
    ("She pays $18.00.", 18),
    ("The discount is 25%.", 25),
    ("It is 0.5 pounds per day", 0.5),
    ("The temperature is -3 degrees.", -3),
    ("The balance is -$40.", -40),
    ("2 \u2212 8 = \u22126", -6),
    ("Total 1,200, then 300 and 400.", 400),
    # an operator minus is not a sign
    ("90-144", 144),
    ("2 - 8", 8),
    # explicit final-answer markers win over position
    ("So 5 + 3 = 8\n#### 8\nThat took 2 steps.", 8),
    ("#### $1,234", 1234),
    ("####\n18", 18),
    ("#### 7 packs and 2 extra glue sticks", 7),
    ("#### 225 minutes or 3 hours and 45 minutes", 225),
    ("The answer is 42, found in 3 steps.", 42),
    ("the correct answer is 66 - 10 = 56 students.", 56),
    ("Answer: 12 cookies\n\nI used 2 methods.", 12),
    ("Final answer: **$18**", 18),
    ("The answer is:\n\n18 apples", 18),
    ("The result is \\boxed{36}, computed in 4 steps.", 36),
    ("\\boxed{7} ... later \\boxed{9} and 2", 9),
    ("\\boxed{3} then #### 5", 3),
    # GSM8K calculator annotations, including one cut off at the end
    ("He ran 3*60 = <<3*60=180>>180 meters.", 180),
    ("He is 90 - 144 = -<<90-144=-54>>54 miles away.", -54),
    ("Total 5 + 7 = $<<5+7=1", 7),
    # times and fractions
    ("She should start at 2:00 pm.", 2),
    ("It takes 1:30 to finish.", 1.5),
    ("Each gets 5/2 pies", 2.5),
    ("On 12/25/2024 we met", 12),
    # digits inside identifiers are not numbers of their own
    ("Version v1.2.3", None),
    ("Order A-10023", 10023),
    # no number
    ("I do not know.", None),
    ("", None),
    ("The answer is not possible to determine.", None),
]


@pytest.mark.parametrize(("text", "expected"), NUMBER_CASES)
def test_extract_final_number(text: str, expected: float | None) -> None:
    found = extract_final_number(text)

    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


WRITTEN_NUMBER_TEXT_CASES = [
    ("18", "18"),
    ("The answer is 18.", "18"),
    ("She pays $18.00.", "18.00"),
    ("It is 18.0", "18.0"),
    ("The total is 1,234,567 people.", "1234567"),
    ("It costs $1,200.50 in total.", "1200.50"),
    ("Price: €15.", "15"),
    ("Price: £7.25", "7.25"),
    ("The discount is 25%.", "25"),
    ("The balance is -$40.", "-40"),
    ("2 \u2212 8 = \u22126", "-6"),
    ("He is 90 - 144 = -<<90-144=-54>>54 miles away.", "-54"),
    ("#### $1,234", "1234"),
    ("#### 225 minutes or 3 hours and 45 minutes", "225"),
    ("She should start at 2:00 pm.", "2:00"),
    ("Each gets 5/2 pies", "5/2"),
    ("Only 007 agents", "007"),
    ("I do not know.", None),
]


@pytest.mark.parametrize(("text", "expected"), WRITTEN_NUMBER_TEXT_CASES)
def test_extract_final_number_text(text: str, expected: str | None) -> None:
    assert extract_final_number_text(text) == expected


# The default comparison: the final number as written, ignoring only thousands separators,
# currency signs and a trailing period or percent sign.
WRITTEN_MATCH_CASES = [
    ("18", 18, True),
    ("18.", 18, True),
    ("$18", 18, True),
    ("**$18**.", 18, True),
    ("1,018", 1018, True),
    ("$1,018.", 1018, True),
    ("25%", 25, True),
    ("€15.", 15, True),
    ("18", 18.0, True),
    ("18", "18", True),
    ("18.00", 18, False),
    ("18.0", 18, False),
    ("18.0", 18.0, False),
    ("$20.00", 20, False),
    ("18.001", 18, False),
    ("1,000,001", 1e6, False),
    ("1000000", 1e6, True),
    ("5.99", 5.99, True),
    ("$5.99.", 5.99, True),
    ("5.990", 5.99, False),
    ("0.0000001", 1e-7, True),
    ("0.5", 5, False),
    ("0.84", 84, False),
    ("-3", -3, True),
    ("3", -3, False),
    ("-54", 54, False),
    ("-$40", -40, True),
    ("\u22126", -6, True),
    ("2:00 pm", 2, False),
    ("5/2", 2.5, False),
    ("5/2", "5/2", True),
    ("007", 7, False),
    ("12345678901234567891", 12345678901234567891, True),
    # A string expected value is normalised like the output, and keeps its own digits.
    ("1200", "1,200", True),
    ("$1,200.50", "1200.50", True),
    ("1200.5", "$1,200.50", False),
    ("18", "18.0", False),
    ("18.0", "18.0", True),
    ("-6", "\u22126", True),
]


@pytest.mark.parametrize(("output", "expected", "passed"), WRITTEN_MATCH_CASES)
def test_number_check_as_written(output: str, expected: object, passed: bool) -> None:
    assert run_one({"type": "number", "value": expected}, output).passed is passed


# With "numeric": true the final number is compared by value, within the tolerance.
NUMERIC_MATCH_CASES = [
    ("18.00", 18, True),
    ("$20.00", 20, True),
    ("18.0", "18", True),
    ("18", "18.0", True),
    ("18.0000001", 18, True),
    ("18.001", 18, False),
    ("0.1", 0.1, True),
    ("0.0", 0, True),
    ("-0.5", 0.5, False),
    ("1,000,000", 1e6, True),
    ("1,000,001", 1e6, True),
    ("1,000,010", 1e6, False),
    ("33.3333333", "33.3333333", True),
    ("1:30", 1.5, True),
    ("5/2", 2.5, True),
    ("1200.5", "$1,200.50", True),
    ("0.5", 5, False),
    ("-54", 54, False),
]


@pytest.mark.parametrize(("output", "expected", "passed"), NUMERIC_MATCH_CASES)
def test_number_check_numeric(output: str, expected: object, passed: bool) -> None:
    spec = {"type": "number", "value": expected, "numeric": True}

    assert run_one(spec, output).passed is passed


@pytest.mark.parametrize("numeric", [False, True])
def test_number_check_numeric_flag(numeric: bool) -> None:
    spec = {"type": "number", "value": 18, "numeric": numeric}

    assert run_one(spec, "18.00").passed is numeric
    assert run_one(spec, "18").passed


# ---------------------------------------------------------------------------
# Parsing check specs
# ---------------------------------------------------------------------------


def test_parse_checks_builds_typed_checks() -> None:
    checks = parse_checks(
        [
            {"type": "equals", "value": "yes"},
            {"type": "contains", "value": ["a", "b"], "case_sensitive": True},
            {"type": "regex", "value": "a+"},
            {"type": "json_valid"},
            {"type": "json_schema", "value": PRODUCT_SCHEMA},
            {"type": "number", "value": "$1,200.50"},
            {"type": "number", "value": 18, "numeric": True},
        ]
    )

    assert checks[0] == EqualsCheck("yes")
    assert checks[1] == ContainsCheck(("a", "b"), case_sensitive=True)
    assert isinstance(checks[2], RegexCheck)
    assert checks[2].pattern.pattern == "a+"
    assert checks[3] == JsonValidCheck()
    assert isinstance(checks[4], JsonSchemaCheck)
    assert checks[5] == NumberCheck(1200.5, "1200.50")
    assert checks[6] == NumberCheck(18.0, "18", numeric=True)


EXPECTED_TEXT_CASES = [
    (18, "18"),
    (18.0, "18"),
    (-3, "-3"),
    (-0.0, "0"),
    (5.99, "5.99"),
    (1e-7, "0.0000001"),
    (1e20, "100000000000000000000"),
    (12345678901234567891, "12345678901234567891"),
    ("1,200", "1200"),
    ("$1,200.50", "1200.50"),
    (" 18 ", "18"),
    ("18.0", "18.0"),
    ("\u22126", "-6"),
    ("-$40", "-40"),
]


@pytest.mark.parametrize(("value", "expected_text"), EXPECTED_TEXT_CASES)
def test_number_expected_text(value: object, expected_text: str) -> None:
    check = parse_check({"type": "number", "value": value})

    assert isinstance(check, NumberCheck)
    assert check.expected_text == expected_text
    assert check.numeric is False


def test_parse_checks_accepts_empty_list() -> None:
    assert parse_checks([]) == []


BAD_SPEC_CASES = [
    ("not a list", r"^checks: expected a list of check objects, got 'not a list'$"),
    ({"type": "equals"}, r"^checks: expected a list of check objects, got "),
    (["equals"], r"^checks\[0\]: expected an object with a 'type' key, got 'equals'$"),
    ([{"value": "x"}], r"^checks\[0\]\.type: missing, expected one of contains, equals, "),
    ([{"type": "similar", "value": "x"}], r"^checks\[0\]\.type: unknown check type 'similar'"),
    ([{"type": 5}], r"^checks\[0\]\.type: unknown check type 5;"),
    (
        [{"type": "json_valid"}, {"type": "equals"}],
        r"^checks\[1\]\.value: missing$",
    ),
    ([{"type": "equals", "value": 5}], r"^checks\[0\]\.value: expected a string, got 5$"),
    (
        [{"type": "json_valid"}, {"type": "contains", "value": 5}],
        r"^checks\[1\]\.value: expected a string or a non-empty list of strings, got 5$",
    ),
    (
        [{"type": "contains", "value": []}],
        r"^checks\[0\]\.value: expected a string or a non-empty list of strings, got \[\]$",
    ),
    (
        [{"type": "contains", "value": ["ok", 7]}],
        r"^checks\[0\]\.value\[1\]: expected a non-empty string, got 7$",
    ),
    (
        [{"type": "contains", "value": ""}],
        r"^checks\[0\]\.value: expected a non-empty string, got ''$",
    ),
    (
        [{"type": "contains", "value": "x", "case_sensitive": "yes"}],
        r"^checks\[0\]\.case_sensitive: expected true or false, got 'yes'$",
    ),
    (
        [{"type": "contains", "value": "x", "casesensitive": True}],
        r"^checks\[0\]: unknown key 'casesensitive' for a contains check; allowed keys are ",
    ),
    (
        [{"type": "regex", "value": "([a-z]+"}],
        r"^checks\[0\]\.value: invalid regular expression '\(\[a-z\]\+': missing \), ",
    ),
    (
        [{"type": "regex", "value": None}],
        r"^checks\[0\]\.value: expected a regular expression string, got null$",
    ),
    (
        [{"type": "json_valid", "value": True}],
        r"^checks\[0\]: unknown key 'value' for a json_valid check; allowed keys are type$",
    ),
    (
        [{"type": "json_schema", "value": {"type": "strin"}}],
        r"^checks\[0\]\.value: invalid JSON schema: 'strin' is not valid under any of ",
    ),
    (
        [{"type": "json_schema", "value": {"required": "name"}}],
        r"^checks\[0\]\.value: invalid JSON schema: 'name' is not of type 'array'$",
    ),
    (
        [{"type": "json_schema", "value": "object"}],
        r"^checks\[0\]\.value: expected a JSON schema object, got 'object'$",
    ),
    (
        [{"type": "number", "value": "eighteen"}],
        r"^checks\[0\]\.value: expected a finite number, got 'eighteen'$",
    ),
    (
        [{"type": "number", "value": True}],
        r"^checks\[0\]\.value: expected a finite number, got true$",
    ),
    (
        [{"type": "number", "value": float("nan")}],
        r"^checks\[0\]\.value: expected a finite number, got NaN$",
    ),
    (
        [{"type": "number", "value": [18]}],
        r"^checks\[0\]\.value: expected a finite number, got \[18\]$",
    ),
    (
        [{"type": "number", "value": 10**400}],
        r"^checks\[0\]\.value: expected a finite number, got 1000",
    ),
    (
        [{"type": "number", "value": 18, "numeric": "yes"}],
        r"^checks\[0\]\.numeric: expected true or false, got 'yes'$",
    ),
    (
        [{"type": "number", "value": 18, "numeric": 1}],
        r"^checks\[0\]\.numeric: expected true or false, got 1$",
    ),
    (
        [{"type": "number", "value": 18, "numeric": None}],
        r"^checks\[0\]\.numeric: expected true or false, got null$",
    ),
    (
        [{"type": "number", "value": 18, "numerical": True}],
        r"^checks\[0\]: unknown key 'numerical' for a number check; "
        r"allowed keys are numeric, type, value$",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD_SPEC_CASES)
def test_parse_checks_rejects_bad_spec(raw: object, message: str) -> None:
    with pytest.raises(CheckSpecError, match=message):
        parse_checks(raw)


def test_check_spec_error_is_value_error() -> None:
    assert issubclass(CheckSpecError, ValueError)


def test_parse_checks_location_prefix() -> None:
    with pytest.raises(CheckSpecError, match=r"^cases\[3\]\.checks\[0\]\.value: missing$"):
        parse_checks([{"type": "number"}], where="cases[3].checks")


def test_parse_check_single_spec() -> None:
    assert parse_check({"type": "number", "value": 3}) == NumberCheck(3.0, "3")
    with pytest.raises(CheckSpecError, match=r"^check\.value: missing$"):
        parse_check({"type": "regex"})


def test_error_message_shortens_long_values() -> None:
    with pytest.raises(CheckSpecError) as excinfo:
        parse_checks([{"type": "equals", "value": list(range(500))}])

    assert len(str(excinfo.value)) < 300
    assert str(excinfo.value).endswith("...")


# ---------------------------------------------------------------------------
# Reports, scores and the judge cap
# ---------------------------------------------------------------------------


def test_report_all_passed_scores_ten() -> None:
    checks = parse_checks([{"type": "contains", "value": "18"}, {"type": "number", "value": 18}])

    report = run_checks(checks, "The answer is 18.")

    assert report.passed
    assert report.score == PASS_SCORE == 10
    assert report.failures == ()


def test_report_one_failure_scores_one() -> None:
    checks = parse_checks([{"type": "contains", "value": "18"}, {"type": "number", "value": 19}])

    report = run_checks(checks, "The answer is 18.")

    assert not report.passed
    assert report.score == FAIL_SCORE == 1
    assert [result.passed for result in report.results] == [True, False]
    assert report.failures == (report.results[1],)


def test_report_without_checks_passes() -> None:
    report = run_checks([], "anything")

    assert report.passed
    assert report.score == PASS_SCORE


def failed_report() -> CheckReport:
    return CheckReport((CheckResult("number", False, "final number 17 != 18"),))


def passed_report() -> CheckReport:
    return CheckReport((CheckResult("number", True, "final number 18 == 18"),))


def test_cap_judge_score_on_failure() -> None:
    assert DEFAULT_FAILED_CHECK_CAP == 3
    assert cap_judge_score(9, failed_report()) == 3
    assert cap_judge_score(2, failed_report()) == 2
    assert cap_judge_score(9, failed_report(), cap=5) == 5
    assert cap_judge_score(9, failed_report(), cap=1) == 1


def test_cap_judge_score_unchanged_when_passed() -> None:
    assert cap_judge_score(9, passed_report()) == 9
    assert cap_judge_score(9, CheckReport(())) == 9


@pytest.mark.parametrize("cap", [0, 11, -1])
def test_cap_judge_score_rejects_bad_cap(cap: float) -> None:
    with pytest.raises(ValueError, match="cap must be between 1 and 10"):
        cap_judge_score(9, failed_report(), cap=cap)
