"""The gateway's OpenAPI document, checked against a running gateway, then used to fuzz it.

schemathesis generates requests for every operation of `GET /openapi.json`, valid ones and ones
that break the document's rules, and sends them to a gateway on 127.0.0.1 in front of the fake
upstream. No response may be a 5xx or hold a traceback, every 4xx is the OpenAI envelope, every
response matches the document, and the gateway is still alive afterwards. Example counts are
bounded (`EXAMPLES` per operation and mode).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from proxy.openapi import load_document
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment
from tests.proxy.app_routes import served_routes

POLICY = "support"
MODELS = ["m", "e"]
EXAMPLES = 40
AUTH = f"Bearer {MASTER_KEY}"
CONVERTER = re.compile(r"{(\w+):\w+}")


def fuzz_config(api_base: str) -> dict[str, Any]:
    return {
        "model_list": [
            deployment("m", "gpt-fake", api_base),
            deployment("e", "text-embedding-fake", api_base),
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "policies": {
            POLICY: {"reference": "m", "candidates": ["m"], "judge": "checks", "sample_rate": 0}
        },
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    database = tmp_path_factory.mktemp("openapi") / "pareto.db"
    with (
        FakeUpstream() as upstream,
        RunningGateway(fuzz_config(upstream.base_url), f"sqlite:///{database}") as running,
    ):
        yield running


def fuzzing_document() -> dict[str, Any]:
    """Return the document with model and policy names limited to the configured ones.

    Valid requests then reach the upstream and the database instead of stopping at a 404 for an
    unknown name; invalid requests still use any name. The x-pareto-policy header stays free,
    because the policy it names accepts any model name.
    """
    document = load_document()
    components = document["components"]
    for name in ("ChatCompletionRequest", "EmbeddingRequest"):
        components["schemas"][name]["properties"]["model"] = {"enum": MODELS}
    paths = document["paths"]
    paths["/v1/models/{model_id}"]["get"]["parameters"][0]["schema"] = {"enum": MODELS}
    paths["/pareto/decisions"]["get"]["parameters"][0]["schema"] = {"enum": [POLICY]}
    evaluate = paths["/pareto/policies/{policy}/evaluate"]["post"]
    evaluate["parameters"][0]["schema"] = {"enum": [POLICY]}
    return document


def fuzz_cases() -> list[Any]:
    """Return (operation, mode) pairs: both modes where the operation takes input, else only
    valid requests, because there is nothing to make invalid.

    Each operation is loaded from a document of its own path only. schemathesis draws values
    from the constants of the whole document, and the policy name of /pareto/decisions would
    otherwise turn up in the x-pareto-policy header of invalid chat requests, which the policy
    then serves.
    """
    document = fuzzing_document()
    pairs = []
    for path, operations in document["paths"].items():
        schema = schemathesis.openapi.from_dict({**document, "paths": {path: operations}})
        for result in schema.get_all_operations():
            operation = result.ok()
            definition = operations[operation.method.lower()]
            modes = [GenerationMode.POSITIVE]
            if "parameters" in definition or "requestBody" in definition:
                modes.append(GenerationMode.NEGATIVE)
            pairs.extend(
                pytest.param(operation, mode, id=f"{mode.value}-{operation.label}")
                for mode in modes
            )
    return pairs


def test_document_served(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.base_url + "/openapi.json", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == load_document()


def test_document_lists_served_routes(gateway: RunningGateway) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in load_document()["paths"].items()
        for method in operations
    }
    # Starlette writes a path parameter's converter into the path: {model_id:path}.
    served = {(method, CONVERTER.sub(r"{\1}", path)) for method, path in served_routes(gateway.app)}

    # The /ui pages are HTML for people, and the forwarding and model routes are also served
    # without the /v1 prefix, as the document says.
    undocumented = {
        (method, path)
        for method, path in served - documented
        if not path.startswith("/ui") and (method, "/v1" + path) not in documented
    }

    assert documented <= served
    assert undocumented == set()
    assert ("POST", "/v1/chat/completions") in documented
    assert ("POST", "/v1/embeddings") in documented
    assert ("GET", "/pareto/decisions") in documented
    assert ("POST", "/pareto/policies/{policy}/evaluate") in documented


def assert_well_formed(response: schemathesis.Response) -> None:
    """Check the gateway's own promises: no 5xx, no traceback, 4xx bodies in the envelope."""
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    if response.status_code < 400:
        return
    assert response.headers["content-type"] == ["application/json"], response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
@pytest.mark.parametrize(("operation", "mode"), fuzz_cases())
def test_fuzz_operation(gateway: RunningGateway, operation: Any, mode: GenerationMode) -> None:
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode), generated_auth=st.booleans())
    def fuzz(case: Case, generated_auth: bool) -> None:
        # Half the requests keep the Authorization value schemathesis made up; the others
        # carry the master key, so that the checks behind authentication are reached too.
        if not generated_auth or mode is GenerationMode.POSITIVE:
            case.headers = {**(case.headers or {}), "Authorization": AUTH}
        response = case.call(base_url=gateway.base_url, timeout=30)

        assert_well_formed(response)
        case.validate_response(response, checks=checks)

    fuzz()
    alive = httpx.get(gateway.base_url + "/health/liveliness", timeout=5)
    assert alive.status_code == 200
