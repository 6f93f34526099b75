"""Deterministic checks that a case may carry, and their scores.

A case's ``checks`` field is a list of objects such as ``{"type": "contains", "value": "$5.99"}``.
`parse_checks` validates that list once and turns it into typed check objects, and `run_checks`
applies them to a candidate output. Supported types:

- ``equals``: the output equals ``value`` once surrounding whitespace is stripped from both.
- ``contains``: the output contains every string in ``value`` (a string or a list of strings),
  ignoring case unless ``case_sensitive`` is true.
- ``regex``: the Python regular expression ``value`` matches somewhere in the output.
- ``json_valid``: the output parses as JSON, optionally inside one Markdown code fence.
- ``json_schema``: the output parses as JSON and validates against the JSON schema ``value``.
- ``number``: the output's final number equals ``value`` as written, ignoring thousands
  separators, currency signs and a trailing period or percent sign, so "$1,018." matches 1018
  but "18.00" does not match 18. With ``numeric`` true the two are compared by value instead
  (see `NumberCheck` and `extract_final_number`).

All checks passing scores `PASS_SCORE` (10), and any failure scores `FAIL_SCORE` (1).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from jsonschema import validators
from jsonschema.exceptions import SchemaError, best_match
from referencing.exceptions import Unresolvable

PASS_SCORE = 10
FAIL_SCORE = 1
DEFAULT_FAILED_CHECK_CAP = 3

NUMBER_RELATIVE_TOLERANCE = 1e-6
NUMBER_ABSOLUTE_TOLERANCE = 1e-9


class CheckSpecError(ValueError):
    """Raised for a malformed check list. The message names the index, the field and the value."""


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one output, with a short human-readable explanation."""

    check_type: str
    passed: bool
    explanation: str


@dataclass(frozen=True)
class CheckReport:
    """Outcomes of all of a case's checks on one output, in the order the case lists them."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every check passed. A report with no checks passes."""
        return all(result.passed for result in self.results)

    @property
    def score(self) -> int:
        """The score on the judge's 1-10 scale: `PASS_SCORE` if all passed, else `FAIL_SCORE`."""
        return PASS_SCORE if self.passed else FAIL_SCORE

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The results of the checks that failed."""
        return tuple(result for result in self.results if not result.passed)


# ---------------------------------------------------------------------------
# Check types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EqualsCheck:
    """Pass when the output equals ``expected``, ignoring surrounding whitespace on both sides."""

    type_name: ClassVar[str] = "equals"
    expected: str

    def evaluate(self, output: str) -> CheckResult:
        """Compare the stripped output with the stripped expected text."""
        if output.strip() == self.expected.strip():
            return CheckResult(self.type_name, True, "output equals the expected text")
        explanation = f"expected {_quote(self.expected.strip())}, got {_quote(output.strip())}"
        return CheckResult(self.type_name, False, explanation)


@dataclass(frozen=True)
class ContainsCheck:
    """Pass when the output contains every one of ``needles``.

    Matching ignores case (Unicode case folding) unless ``case_sensitive`` is true.
    """

    type_name: ClassVar[str] = "contains"
    needles: tuple[str, ...]
    case_sensitive: bool = False

    def evaluate(self, output: str) -> CheckResult:
        """Report the needles that are missing from the output."""
        haystack = self._normalize(output)
        missing = [needle for needle in self.needles if self._normalize(needle) not in haystack]
        if missing:
            explanation = "missing " + ", ".join(_quote(needle) for needle in missing)
            return CheckResult(self.type_name, False, explanation)
        explanation = "contains " + ", ".join(_quote(needle) for needle in self.needles)
        return CheckResult(self.type_name, True, explanation)

    def _normalize(self, text: str) -> str:
        return text if self.case_sensitive else text.casefold()


@dataclass(frozen=True)
class RegexCheck:
    """Pass when ``pattern`` matches anywhere in the output (`re.search`)."""

    type_name: ClassVar[str] = "regex"
    pattern: re.Pattern[str]

    def evaluate(self, output: str) -> CheckResult:
        """Search the output for the pattern."""
        match = self.pattern.search(output)
        if match is None:
            return CheckResult(
                self.type_name, False, f"no match for {_quote(self.pattern.pattern)}"
            )
        return CheckResult(self.type_name, True, f"matched {_quote(match.group(0))}")


@dataclass(frozen=True)
class JsonValidCheck:
    """Pass when the output parses as JSON (see `load_json_output` for what is tolerated)."""

    type_name: ClassVar[str] = "json_valid"

    def evaluate(self, output: str) -> CheckResult:
        """Try to parse the output as JSON."""
        try:
            load_json_output(output)
        except json.JSONDecodeError as exc:
            return CheckResult(self.type_name, False, f"invalid JSON: {exc}")
        return CheckResult(self.type_name, True, "valid JSON")


@dataclass(frozen=True)
class JsonSchemaCheck:
    """Pass when the output parses as JSON and validates against ``schema``."""

    type_name: ClassVar[str] = "json_schema"
    schema: Mapping[str, Any]

    def evaluate(self, output: str) -> CheckResult:
        """Parse the output and report the most relevant schema violation, if any.

        Raises `CheckSpecError` when the schema contains a ``$ref`` that cannot be resolved,
        because that is a fault of the case, not of the output.
        """
        try:
            instance = load_json_output(output)
        except json.JSONDecodeError as exc:
            return CheckResult(self.type_name, False, f"invalid JSON: {exc}")

        validator = _schema_validator_class(self.schema)(self.schema)
        try:
            error = best_match(validator.iter_errors(instance))
        except Unresolvable as exc:
            message = f"json_schema check: schema reference cannot be resolved: {exc}"
            raise CheckSpecError(f"{message}. Fix the reference in the case's schema.") from exc
        if error is None:
            return CheckResult(self.type_name, True, "matches the schema")
        explanation = f"schema violation at {error.json_path}: {_shorten(error.message)}"
        return CheckResult(self.type_name, False, explanation)


@dataclass(frozen=True)
class NumberCheck:
    """Pass when the output's final number equals the expected one.

    By default the final number is compared as written (see `extract_final_number_text`).
    Only thousands separators, currency signs and a trailing period or percent sign are
    ignored, so "18", "18." and "$18" match 18 but "18.00" does not. This follows the common
    GSM8K grading convention of comparing the number as written, so the check agrees with
    correctness labels recorded by such graders. ``expected_text`` is the expected number in
    that form: an integral value is written without a decimal part ("18"), any other value
    in plain decimal notation ("5.99"), and an expected string is normalised like the output
    ("$1,200.50" becomes "1200.50").

    With ``numeric`` true the final number is compared by value instead, within
    `NUMBER_RELATIVE_TOLERANCE` relative (or `NUMBER_ABSOLUTE_TOLERANCE` near zero), so
    "18.00" matches 18 and "1:30" matches 1.5 (hours).
    """

    type_name: ClassVar[str] = "number"
    expected: float
    expected_text: str
    numeric: bool = False

    def evaluate(self, output: str) -> CheckResult:
        """Extract the final number and compare it as written or, if ``numeric``, by value."""
        match = _final_number_match(output)
        if match is None:
            return CheckResult(self.type_name, False, "no number found")
        if self.numeric:
            return self._compare_values(_number_value(match))
        return self._compare_written(_written_number(match), _number_value(match))

    def _compare_values(self, found: float) -> CheckResult:
        found_text = _format_number(found)
        expected_text = _format_number(self.expected)
        if numbers_match(found, self.expected):
            return CheckResult(
                self.type_name, True, f"final number {found_text} == {expected_text}"
            )
        return CheckResult(self.type_name, False, f"final number {found_text} != {expected_text}")

    def _compare_written(self, found_text: str, found: float) -> CheckResult:
        if found_text == self.expected_text:
            return CheckResult(
                self.type_name, True, f"final number {found_text} == {self.expected_text}"
            )
        explanation = f"final number {found_text} != {self.expected_text}"
        if numbers_match(found, self.expected):
            explanation += ' as written, but equal in value (set "numeric": true to compare values)'
        return CheckResult(self.type_name, False, explanation)


Check = EqualsCheck | ContainsCheck | RegexCheck | JsonValidCheck | JsonSchemaCheck | NumberCheck


# ---------------------------------------------------------------------------
# Running checks and combining with a judge
# ---------------------------------------------------------------------------


def run_checks(checks: Sequence[Check], output: str) -> CheckReport:
    """Run every check on ``output`` and collect the results in order.

    An empty check list yields a report that passes with `PASS_SCORE`, so callers should use
    deterministic checks as a judge only for cases that carry some.
    """
    return CheckReport(tuple(check.evaluate(output) for check in checks))


def cap_judge_score(
    judge_score: float, report: CheckReport, cap: float = DEFAULT_FAILED_CHECK_CAP
) -> float:
    """Limit an LLM judge's 1-10 score to ``cap`` when any deterministic check failed.

    The default cap of 3 is the top of the rubric's "wrong or misses a stated requirement"
    band (1-3). A check encodes a requirement the case's author made explicit, so a failed
    check puts the output in that band however fluent it reads. Capping rather than
    replacing keeps the judge's ordering of weak outputs below the cap.
    """
    if not 1 <= cap <= 10:
        raise ValueError(f"cap must be between 1 and 10, got {cap!r}")
    if report.passed:
        return judge_score
    return min(judge_score, cap)


# ---------------------------------------------------------------------------
# Parsing check specifications
# ---------------------------------------------------------------------------


def parse_checks(raw: object, where: str = "checks") -> list[Check]:
    """Validate a case's raw ``checks`` list and turn it into typed check objects.

    ``where`` prefixes error locations, so messages read like ``checks[1].value: ...``.
    Raises `CheckSpecError` on the first problem found.
    """
    if not isinstance(raw, list):
        raise CheckSpecError(f"{where}: expected a list of check objects, got {_describe(raw)}")
    return [parse_check(item, f"{where}[{index}]") for index, item in enumerate(raw)]


def parse_check(raw: object, where: str = "check") -> Check:
    """Validate one raw check object and turn it into a typed check."""
    if not isinstance(raw, Mapping):
        raise CheckSpecError(f"{where}: expected an object with a 'type' key, got {_describe(raw)}")
    if "type" not in raw:
        raise CheckSpecError(f"{where}.type: missing, expected one of {_known_types()}")

    check_type = raw["type"]
    parser = _PARSERS.get(check_type) if isinstance(check_type, str) else None
    if parser is None:
        raise CheckSpecError(
            f"{where}.type: unknown check type {_describe(check_type)}; "
            f"expected one of {_known_types()}"
        )
    return parser(raw, where)


def _parse_equals(raw: Mapping[str, object], where: str) -> EqualsCheck:
    _reject_unknown_keys(raw, where, {"type", "value"})
    value = _require(raw, where, "value")
    if not isinstance(value, str):
        raise CheckSpecError(f"{where}.value: expected a string, got {_describe(value)}")
    return EqualsCheck(value)


def _parse_contains(raw: Mapping[str, object], where: str) -> ContainsCheck:
    _reject_unknown_keys(raw, where, {"type", "value", "case_sensitive"})
    value = _require(raw, where, "value")
    needles = [value] if isinstance(value, str) else value
    if not isinstance(needles, list) or not needles:
        expected = "a string or a non-empty list of strings"
        raise CheckSpecError(f"{where}.value: expected {expected}, got {_describe(value)}")
    for index, needle in enumerate(needles):
        location = f"{where}.value" if isinstance(value, str) else f"{where}.value[{index}]"
        if not isinstance(needle, str) or not needle:
            raise CheckSpecError(
                f"{location}: expected a non-empty string, got {_describe(needle)}"
            )

    case_sensitive = raw.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise CheckSpecError(
            f"{where}.case_sensitive: expected true or false, got {_describe(case_sensitive)}"
        )
    return ContainsCheck(tuple(needles), case_sensitive)


def _parse_regex(raw: Mapping[str, object], where: str) -> RegexCheck:
    _reject_unknown_keys(raw, where, {"type", "value"})
    value = _require(raw, where, "value")
    if not isinstance(value, str):
        raise CheckSpecError(
            f"{where}.value: expected a regular expression string, got {_describe(value)}"
        )
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise CheckSpecError(
            f"{where}.value: invalid regular expression {_quote(value)}: {exc}"
        ) from exc
    return RegexCheck(pattern)


def _parse_json_valid(raw: Mapping[str, object], where: str) -> JsonValidCheck:
    _reject_unknown_keys(raw, where, {"type"})
    return JsonValidCheck()


def _parse_json_schema(raw: Mapping[str, object], where: str) -> JsonSchemaCheck:
    _reject_unknown_keys(raw, where, {"type", "value"})
    value = _require(raw, where, "value")
    if not isinstance(value, Mapping):
        raise CheckSpecError(
            f"{where}.value: expected a JSON schema object, got {_describe(value)}"
        )
    try:
        _schema_validator_class(value).check_schema(value)
    except SchemaError as exc:
        raise CheckSpecError(
            f"{where}.value: invalid JSON schema: {_shorten(exc.message)}"
        ) from exc
    return JsonSchemaCheck(copy.deepcopy(value))


def _parse_number(raw: Mapping[str, object], where: str) -> NumberCheck:
    _reject_unknown_keys(raw, where, {"type", "value", "numeric"})
    value = _require(raw, where, "value")
    expected = _expected_number(value)
    if expected is None:
        raise CheckSpecError(f"{where}.value: expected a finite number, got {_describe(value)}")

    numeric = raw.get("numeric", False)
    if not isinstance(numeric, bool):
        raise CheckSpecError(f"{where}.numeric: expected true or false, got {_describe(numeric)}")
    number, text = expected
    return NumberCheck(number, text, numeric)


_PARSERS: dict[str, Callable[[Mapping[str, object], str], Check]] = {
    EqualsCheck.type_name: _parse_equals,
    ContainsCheck.type_name: _parse_contains,
    RegexCheck.type_name: _parse_regex,
    JsonValidCheck.type_name: _parse_json_valid,
    JsonSchemaCheck.type_name: _parse_json_schema,
    NumberCheck.type_name: _parse_number,
}


def _known_types() -> str:
    return ", ".join(sorted(_PARSERS))


def _require(raw: Mapping[str, object], where: str, key: str) -> object:
    if key not in raw:
        raise CheckSpecError(f"{where}.{key}: missing")
    return raw[key]


def _reject_unknown_keys(raw: Mapping[str, object], where: str, allowed: set[str]) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise CheckSpecError(
            f"{where}: unknown key {_quote(unknown[0])} for a {raw['type']} check; "
            f"allowed keys are {', '.join(sorted(allowed))}"
        )


def _expected_number(value: object) -> tuple[float, str] | None:
    """Read a check's expected number from a JSON number or a numeric string such as "1,200".

    Returns the value and its canonical written form, or None if ``value`` is not a finite
    number. A string is normalised like an output's final number, so "$1,200.50" is written
    "1200.50". A JSON number is written in plain decimal notation without a redundant ".0".
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value), str(value)
        except OverflowError:
            return None
    if isinstance(value, float):
        return (value, _plain_decimal(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        number_match = _NUMBER_PATTERN.fullmatch(value.strip())
        if number_match is None:
            return None
        number = _number_value(number_match)
        return (number, _written_number(number_match)) if math.isfinite(number) else None
    return None


def _schema_validator_class(schema: Mapping[str, Any]) -> Any:
    # An explicit default avoids jsonschema's DeprecationWarning for an unknown "$schema" URI.
    return validators.validator_for(schema, default=validators.Draft202012Validator)


# ---------------------------------------------------------------------------
# JSON outputs
# ---------------------------------------------------------------------------

_CODE_FENCE = re.compile(
    r"\A\s*```[ \t]*(?:json)?[ \t]*\n(?P<body>.*?)\n?[ \t]*```\s*\Z", re.I | re.S
)


def load_json_output(output: str) -> object:
    """Parse an output as JSON, tolerating surrounding whitespace and one Markdown code fence.

    The fence may be tagged ``json`` or untagged. Raises `json.JSONDecodeError`.
    """
    fenced = _CODE_FENCE.match(output)
    text = fenced.group("body") if fenced else output
    return json.loads(text)


# ---------------------------------------------------------------------------
# Final-number extraction
# ---------------------------------------------------------------------------

# One number as written in prose. An optional minus sign (ASCII or U+2212) sits directly before
# the digits or a currency sign. The digits may have comma thousands groups, then an optional
# ":mm" makes a clock time or duration in hours ("2:30" is 2.5), an optional decimal part
# follows, and an optional "/denominator" makes a fraction. A trailing "%" or sentence period
# is not consumed. The lookbehind keeps "90-144" from reading as -144, and it keeps digits
# inside words, after a decimal point or after a slash ("v1.2.3", "x2", "12/25/2024") from
# counting on their own.
_NUMBER_PATTERN = re.compile(
    r"""
    (?<![\w./])
    (?:(?P<sign>[-\u2212])(?=[$€£]?\d))?
    [$€£]?
    (?P<integer>\d{1,3}(?:,\d{3})+(?!\d|,\d)|\d+(?!\d))
    (?::(?P<minutes>[0-5]\d)(?!\d))?
    (?:\.(?P<fraction>\d+))?
    (?:/(?P<denominator>0*[1-9]\d*)(?!\d|[/.,]\d))?
    """,
    re.VERBOSE,
)

# GSM8K-style calculator annotations such as "<<3*4=12>>", including one cut off at the end
# of a truncated output. They repeat the visible arithmetic, so they are removed first.
_CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*(?:>>|\Z)")

_BOXED = re.compile(r"\\boxed\{(?P<body>[^{}]*)\}")
_HASH_MARKER = re.compile(r"####")
_ANSWER_PHRASE = re.compile(r"\banswer\b\s*(?:is\b\s*:?|[:=])", re.IGNORECASE)


def extract_final_number(output: str) -> float | None:
    """Return the number an output gives as its final answer, or None if there is none.

    An explicit final-answer marker wins over position: the last ``\\boxed{...}``, else the
    text after the last ``####``, else the text after the last "answer is" / "answer:". Within
    the marker's line, an equation such as "66 - 10 = 56" is read after its last "=", and then
    the first number counts. If the marker's line has no number, the first number after it
    counts, and a marker followed by no number at all yields None. Without a marker the last
    number in the output counts, so "... in 3 hours." yields 3.
    """
    match = _final_number_match(output)
    return None if match is None else _number_value(match)


def extract_final_number_text(output: str) -> str | None:
    """Return the final-answer number as written, or None if there is none.

    The number is found as in `extract_final_number`. Its thousands separators and currency
    signs are removed, a Unicode minus sign becomes "-", and a trailing period or percent sign
    is never part of it. Everything else stays as written, so "$1,018.00." yields "1018.00",
    "2:00 pm" yields "2:00" and "5/2" yields "5/2".
    """
    match = _final_number_match(output)
    return None if match is None else _written_number(match)


def numbers_match(found: float, expected: float) -> bool:
    """Compare two numbers with the tolerance that a number check with ``numeric`` true uses."""
    return math.isclose(
        found,
        expected,
        rel_tol=NUMBER_RELATIVE_TOLERANCE,
        abs_tol=NUMBER_ABSOLUTE_TOLERANCE,
    )


def _final_number_match(output: str) -> re.Match[str] | None:
    text = _CALCULATOR_ANNOTATION.sub("", output)

    region = _marked_answer_region(text)
    if region is None:
        return _last_number(text)
    on_marker_line = _first_number(_answer_line(region))
    if on_marker_line is not None:
        return on_marker_line
    return _first_number(region)


def _marked_answer_region(text: str) -> str | None:
    """Return the text after the strongest final-answer marker, or None without one."""
    boxed = _last_match(_BOXED, text)
    if boxed is not None:
        return boxed.group("body")
    for marker in (_HASH_MARKER, _ANSWER_PHRASE):
        found = _last_match(marker, text)
        if found is not None:
            return text[found.end() :]
    return None


def _answer_line(region: str) -> str:
    line = region.split("\n", 1)[0]
    if "=" in line:
        return line.rsplit("=", 1)[1]
    return line


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def _first_number(text: str) -> re.Match[str] | None:
    return _NUMBER_PATTERN.search(text)


def _last_number(text: str) -> re.Match[str] | None:
    return _last_match(_NUMBER_PATTERN, text)


def _number_value(match: re.Match[str]) -> float:
    digits = match.group("integer").replace(",", "")
    if match.group("fraction"):
        digits += "." + match.group("fraction")
    value = float(digits)
    if match.group("minutes"):
        value += int(match.group("minutes")) / 60

    if match.group("denominator"):
        value /= int(match.group("denominator"))
    return -value if match.group("sign") else value


# Thousands separators and currency signs are dropped, and a Unicode minus becomes ASCII "-".
_WRITTEN_NUMBER_CLEANUP = str.maketrans({",": None, "$": None, "€": None, "£": None, "\u2212": "-"})


def _written_number(match: re.Match[str]) -> str:
    return match.group(0).translate(_WRITTEN_NUMBER_CLEANUP)


# ---------------------------------------------------------------------------
# Message formatting
# ---------------------------------------------------------------------------


def _format_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _plain_decimal(value: float) -> str:
    """Format a finite float without an exponent or a redundant ".0", so 1e-07 is "0.0000001"."""
    if value.is_integer():
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def _describe(value: object) -> str:
    if isinstance(value, str):
        return _quote(value)
    return _shorten(json.dumps(value, default=repr) if _is_json(value) else repr(value))


def _is_json(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | list | dict)


def _quote(text: str) -> str:
    return repr(_shorten(text, 60))


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
