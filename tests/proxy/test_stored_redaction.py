"""Prompts are redacted as configured before they are stored, and request rows hold no prompt.

Requests with an e-mail address, a phone number, a card number and a ticket id (a custom
pattern) go through a gateway that samples every request. Then every table is searched for the
raw values. One policy uses `evaluation.redaction`, the other its own settings, which keep phone
numbers, so the test also shows that the configuration decides what is redacted.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, SQLModel, create_engine

from evaluator.tables import BenchmarkCase
from proxy.db import normalize_url
from tests.conftest import GatewayFactory
from tests.fakes.upstream import FakeUpstream
from tests.gateway import MASTER_KEY, RunningGateway, deployment

EMAIL = "ann.lee@example.com"
PHONE = "+1 415 555 0132"
CARD = "4111 1111 1111 1111"
TICKET = "TCK-998127"
PROMPT = f"Write to {EMAIL} or call {PHONE} about card {CARD}, ticket {TICKET}."


def redaction_config(api_base: str) -> dict[str, Any]:
    policy = {"candidates": ["m"], "reference": "m", "sample_rate": 1.0, "judge": "checks"}
    tickets = [{"pattern": r"TCK-\d+", "placeholder": "[TICKET]"}]
    return {
        "model_list": [deployment("m", "gpt-fake", api_base)],
        "general_settings": {"master_key": MASTER_KEY},
        "evaluation": {"redaction": {"custom_patterns": tickets}},
        "policies": {
            "support": policy,
            # A policy's own settings replace evaluation.redaction as a whole.
            "phones-kept": {**policy, "redaction": {"phones": False, "custom_patterns": tickets}},
        },
    }


def table_dump(gateway: RunningGateway) -> str:
    """Stop the gateway (writing queued rows and cases), then return every row as JSON lines."""
    url = gateway.loaded.database_url
    gateway.stop()
    engine = create_engine(normalize_url(url))
    lines = []
    try:
        with engine.connect() as connection:
            for table in SQLModel.metadata.sorted_tables:
                for row in connection.execute(select(table)):
                    lines.append(json.dumps([table.name, *row], default=str, ensure_ascii=False))
    finally:
        engine.dispose()
    return "\n".join(lines)


def stored_cases(url: str) -> dict[str, BenchmarkCase]:
    engine = create_engine(normalize_url(url))
    try:
        with Session(engine) as session:
            cases = session.exec(select(BenchmarkCase)).scalars()  # type: ignore[call-overload]
            return {case.policy: case for case in cases}
    finally:
        engine.dispose()


def test_prompts_redacted_before_storage(
    fake_upstream: FakeUpstream, start_gateway: GatewayFactory, database_url: str
) -> None:
    gateway = start_gateway(redaction_config(fake_upstream.base_url), database_url)
    client = gateway.client()
    for policy in ("support", "phones-kept"):
        client.chat.completions.create(model=policy, messages=[{"role": "user", "content": PROMPT}])

    dump = table_dump(gateway)
    cases = stored_cases(gateway.loaded.database_url)

    assert set(cases) == {"support", "phones-kept"}
    assert cases["support"].messages[0]["content"] == (
        "Write to [EMAIL] or call [PHONE] about card [CARD], ticket [TICKET]."
    )
    assert cases["support"].expected == (
        "echo: Write to [EMAIL] or call [PHONE] about card [CARD], ticket [TICKET]."
    )
    assert cases["phones-kept"].messages[0]["content"] == (
        f"Write to [EMAIL] or call {PHONE} about card [CARD], ticket [TICKET]."
    )
    assert '"request_log"' in dump
    for raw in (EMAIL, CARD, TICKET):
        assert raw not in dump
    assert dump.count(PHONE) == 2, "only the case and answer of the policy that keeps phones"
    assert "Write to" not in "\n".join(
        line for line in dump.splitlines() if line.startswith('["request_log"')
    )
