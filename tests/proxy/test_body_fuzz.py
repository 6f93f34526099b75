"""Property tests of the request body checks that the forwarding routes run, fed by hypothesis.

Whatever the bytes, `check_request` either returns a payload that can be serialized for the
upstream, or raises `InvalidRequestError` with an OpenAI envelope; nothing else escapes.
Example counts are bounded so that the module runs in a few seconds.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy import body as bodies
from proxy.config import parse_config
from proxy.deployments import Deployment, build_groups
from proxy.errors import InvalidRequestError, ProxyError
from proxy.forward import upstream_body

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
DEFAULT_RECURSION_LIMIT = 1_000
KEYS = ("model", "messages", "stream", "stream_options", "input", "role", "content", "n")


def make_deployment() -> Deployment:
    config = {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"},
            }
        ]
    }
    return build_groups(parse_config(config, {}).config).all()[0]


DEPLOYMENT = make_deployment()


@contextmanager
def default_recursion_limit() -> Iterator[None]:
    """Run with Python's default recursion limit, which hypothesis raises while it runs a test.

    Under the raised limit, a body that recurses too deep in production would pass here.
    """
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


def check_request(raw: bytes, chat: bool) -> dict[str, Any]:
    """Run the checks of a forwarding route on `raw`, then serialize it for the upstream."""
    with default_recursion_limit():
        return _check_request(raw, chat)


def _check_request(raw: bytes, chat: bool) -> dict[str, Any]:
    payload = bodies.parse_object(raw)
    bodies.model_of(payload)
    if chat:
        bodies.check_messages(payload)
        if bodies.stream_flag(payload):
            _, options = bodies.stream_options(payload)
            payload = {**payload, "stream_options": options}
    else:
        bodies.check_input(payload)
    upstream_body(DEPLOYMENT, payload)
    return payload


def assert_handled(raw: bytes, chat: bool = True) -> None:
    """Check that `raw` is accepted or rejected with a 4xx envelope, and nothing else."""
    try:
        check_request(raw, chat)
    except InvalidRequestError as error:
        assert_envelope(error)


def assert_envelope(error: ProxyError) -> None:
    assert 400 <= error.status < 500
    envelope = orjson.loads(error.body())
    assert set(envelope["error"]) == {"message", "type", "param", "code"}
    assert envelope["error"]["message"]
    assert len(envelope["error"]["message"]) < 1_000


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "system", "assistant"]) | json_values,
            "content": json_values,
        },
    )
    | json_values,
    max_size=4,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["m", ""]) | st.text(max_size=30) | json_values,
        "messages": messages | json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values})
        | json_values,
        "input": json_values,
    },
).flatmap(
    lambda fields: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(
        lambda extra: {**extra, **fields}
    )
)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    assert_handled(raw)


@FUZZ
@given(request=requests, chat=st.booleans())
def test_json_requests(request: dict[str, Any], chat: bool) -> None:
    raw = json.dumps(request).encode()

    assert_handled(raw, chat)


@FUZZ
@given(
    request=requests,
    cut=st.integers(min_value=0, max_value=400),
    noise=st.binary(min_size=1, max_size=4),
)
def test_damaged_json(request: dict[str, Any], cut: int, noise: bytes) -> None:
    raw = json.dumps(request).encode()
    position = min(cut, len(raw))

    assert_handled(raw[:position] + noise + raw[position:])
    assert_handled(raw[:position])


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=1_200),
    nest=st.sampled_from([nested_arrays, nested_objects]),
)
@example(depth=1_000, nest=nested_arrays)
@example(depth=1_023, nest=nested_objects)
def test_nesting(depth: int, nest: Callable[[int], str]) -> None:
    raw = '{"model": "m", "messages": [{"role": "user", "content": "x"}], "x": ' + nest(depth) + "}"

    assert_handled(raw.encode())


@FUZZ
@given(value=st.floats(allow_nan=True, allow_infinity=True), digits=st.integers(19, 400))
def test_number_literals(value: float, digits: int) -> None:
    if math.isnan(value):
        literal = "NaN"
    elif math.isinf(value):
        literal = "1e999"
    else:
        literal = repr(value)
    for number in (literal, "9" * digits, "-" + "9" * digits, "1" + "0" * digits + "e-5"):
        raw = '{"model": "m", "messages": [{"role": "user", "content": "x"}], "t": ' + number + "}"
        assert_handled(raw.encode())


@pytest.mark.parametrize(
    "text",
    ["\\u0000", "\\ud800", "\\udfff\\ud800", "\\ud83d\\ude00", "\\u202e", "\\uffff", "\\"],
)
def test_string_escapes(text: str) -> None:
    raw = '{"model": "m' + text + '", "messages": [{"role": "user", "content": "' + text + '"}]}'

    assert_handled(raw.encode())
