"""Pareto's loop on recorded GPT-4 and Mixtral answers, and the errors of a replay upstream.

The loop test replays a slice of the recorded data (the first 120 GSM8K problems and all 60
MT-Bench conversations) through a gateway with a replay simulator as its upstream, with the
benchmark's own code (`benchmarks.recorded_loop`). The error tests use small replay files of
their own and need no shared data.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import yaml

from benchmarks.recorded_figures import Recorded, decision_timeline, traffic_figures
from benchmarks.recorded_loop import (
    CHAT,
    LATENCY_PROFILES,
    MATH,
    LoopResult,
    LoopSettings,
    gateway_config,
    run_loop,
)
from benchmarks.routellm_data import (
    GPT4,
    MIXTRAL,
    ChatConversation,
    MathProblem,
    data_dir,
    load_chat,
    load_math,
    write_replay,
)
from proxy.cli import main
from proxy.db import make_engine
from proxy.sampling import sampling_policies
from proxy.simulator import ThreadedSimulator, build_catalog
from tests.conftest import GatewayFactory
from tests.gateway import MASTER_KEY, RunningGateway, deployment

SLICE_PROBLEMS = 120
SPEED = 1000.0  # a GPT-4 answer of 300 tokens takes about 11 ms instead of 11 s
SETTINGS = LoopSettings(rounds=4, concurrency=8, seed=0)


@dataclass(frozen=True)
class Slice:
    problems: list[MathProblem]
    conversations: list[ChatConversation]


@pytest.fixture(scope="module")
def recorded_slice() -> Slice:
    folder = data_dir()
    if not folder.is_dir():
        message = f"recorded model answers not found: {folder} (set PARETO_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Slice(load_math(folder)[:SLICE_PROBLEMS], load_chat(folder))


@pytest.fixture(scope="module")
def loop(recorded_slice: Slice, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopResult]:
    """Run the loop once for the tests of this module."""
    folder = tmp_path_factory.mktemp("recorded")
    replay = folder / "replay.jsonl"
    write_replay(replay, recorded_slice.problems, recorded_slice.conversations)
    profile = folder / "latency.yaml"
    profile.write_text(yaml.safe_dump(LATENCY_PROFILES), encoding="utf-8")
    catalog = build_catalog(replay=[replay], profile=profile)
    database_url = f"sqlite:///{folder / 'pareto.db'}"
    engine = make_engine(database_url)
    with ThreadedSimulator(catalog, speed=SPEED) as simulator:
        config = gateway_config(simulator.base_url, database_url, MASTER_KEY, SETTINGS)
        with RunningGateway(config, database_url) as gateway:
            gateway.state.sample_rng = random.Random(0)
            redactors = {
                name: policy.redactor
                for name, policy in sampling_policies(gateway.loaded.config).items()
            }
            try:
                yield run_loop(
                    gateway.base_url,
                    MASTER_KEY,
                    engine,
                    redactors,
                    recorded_slice.problems,
                    recorded_slice.conversations,
                    SETTINGS,
                )
            finally:
                engine.dispose()


@pytest.mark.slow
def test_loop_keeps_gpt4_for_math_and_switches_chat(
    loop: LoopResult, recorded_slice: Slice
) -> None:
    math_final = loop.outcomes(MATH)[-1].decision
    chat_final = loop.outcomes(CHAT)[-1].decision

    assert math_final["chosen_model"] == GPT4
    assert all(row["cases"] >= 30 for row in math_final["candidates"])
    mixtral = next(row for row in math_final["candidates"] if row["model"] == MIXTRAL)
    assert not mixtral["eligible"]
    assert "95% of gpt-4-1106-preview's mean" in mixtral["ineligible_reasons"][0]

    assert chat_final["chosen_model"] == MIXTRAL
    assert chat_final["cheapest_eligible_model"] == MIXTRAL
    assert all(row["cases"] >= 30 for row in chat_final["candidates"])

    for policy in (MATH, CHAT):
        timeline = decision_timeline(loop, policy)
        assert timeline.decided_round is not None, policy
        assert not timeline.changed_back, policy
    assert decision_timeline(loop, MATH).route_changes == 0
    assert decision_timeline(loop, CHAT).route_changes == 1


@pytest.mark.slow
def test_loop_serves_decided_model_and_samples(loop: LoopResult, recorded_slice: Slice) -> None:
    recorded = Recorded.build(recorded_slice.problems, recorded_slice.conversations)
    math_requests = [item for item in loop.served if item.policy == MATH]
    chat_requests = [item for item in loop.served if item.policy == CHAT]

    assert len(math_requests) == SLICE_PROBLEMS
    assert len(chat_requests) == 2 * len(recorded_slice.conversations)
    assert {item.model for item in math_requests} == {GPT4}

    switched = decision_timeline(loop, CHAT).decided_round
    assert switched is not None
    assert {item.model for item in chat_requests if item.round > switched} == {MIXTRAL}
    assert {item.model for item in chat_requests if item.round <= switched} == {GPT4}

    # Every request's gateway cost is the served model's tokens at its list price.
    for item in loop.served:
        expected = recorded.cost_usd[(item.policy, item.item)][item.model]
        assert item.cost_usd == pytest.approx(expected, rel=1e-9), item

    sampled = loop.outcomes(MATH)[-1].sampled_cases
    assert 0.3 * SLICE_PROBLEMS < sampled < 0.7 * SLICE_PROBLEMS
    assert loop.outcomes(CHAT)[-1].sampled_cases == len(chat_requests)

    after = traffic_figures(loop, recorded, CHAT, switched)
    assert after is not None
    assert after.gpt4_share == 0.0
    assert after.pgr == pytest.approx(0.0)
    assert after.cost_share < 0.05
    assert 0.8 < after.quality_kept < 1.0


# ---------------------------------------------------------------------------
# Errors a client sees when the replay upstream cannot answer
# ---------------------------------------------------------------------------

QUESTION = "A farmer has 12 cows and buys 3 more. How many cows does he have?"
FOLLOW_UP = "And if he then sells 5 of them?"


def write_small_replay(path: Path) -> Path:
    rows = [
        {
            "model": "recorded-model",
            "messages": [{"role": "user", "content": QUESTION}],
            "answer": "15",
        },
        {
            "model": "recorded-model",
            "messages": [
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "15"},
                {"role": "user", "content": FOLLOW_UP},
            ],
            "answer": "10",
        },
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def error_message(error: openai.APIStatusError) -> str:
    """The `message` of the error envelope the gateway sent."""
    assert isinstance(error.body, dict), error.body
    message = error.body["message"]
    assert isinstance(message, str)
    return message


@pytest.fixture
def replay_gateway(tmp_path: Path, start_gateway: GatewayFactory) -> Iterator[openai.OpenAI]:
    replay = write_small_replay(tmp_path / "replay.jsonl")
    with ThreadedSimulator(build_catalog(replay=[replay]), speed=SPEED) as simulator:
        config = {
            "model_list": [
                deployment("recorded", "recorded-model", simulator.base_url, api_key="none"),
                deployment("not-recorded", "other-model", simulator.base_url, api_key="none"),
            ],
            "general_settings": {"master_key": MASTER_KEY},
        }
        yield start_gateway(config).client()


def test_replay_answers_both_turns_through_gateway(replay_gateway: openai.OpenAI) -> None:
    first = replay_gateway.chat.completions.create(
        model="recorded", messages=[{"role": "user", "content": QUESTION}]
    )
    second = replay_gateway.chat.completions.create(
        model="recorded",
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "Fifteen cows."},
            {"role": "user", "content": FOLLOW_UP},
        ],
    )

    assert first.choices[0].message.content == "15"
    assert second.choices[0].message.content == "10"


def test_unrecorded_turn_gets_404_naming_mismatch(replay_gateway: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        replay_gateway.chat.completions.create(
            model="recorded",
            messages=[
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "15"},
                {"role": "user", "content": "And if he buys 5 more?"},
            ],
        )

    message = error_message(raised.value)
    assert raised.value.status_code == 404
    assert "No recorded conversation of model 'recorded-model' matches this request" in message
    assert "differs at message index 2" in message
    assert 'request user "And if he buys 5 more?"' in message


def test_model_missing_from_replay_gets_404(replay_gateway: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        replay_gateway.chat.completions.create(
            model="not-recorded", messages=[{"role": "user", "content": QUESTION}]
        )

    message = error_message(raised.value)
    assert raised.value.status_code == 404
    assert "The model 'other-model' does not exist on this simulator" in message
    assert "replay: recorded-model" in message


def test_malformed_replay_file_stops_simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = tmp_path / "replay.jsonl"
    replay.write_text(
        '{"model": "recorded-model", "messages": [{"role": "user", "content": "Hi"}], '
        '"answer": "Hello"}\n'
        '{"model": "recorded-model", "messages": [{"role": "user", "content": "Bye"}]}\n'
        "not json\n",
        encoding="utf-8",
    )

    status = main(["simulate", "--replay", str(replay), "--port", "0"])

    errors = capsys.readouterr().err
    assert status == 2
    assert "cannot start the simulator" in errors
    assert f"{replay}:2: answer: missing" in errors
    assert f"{replay}:3: invalid JSON" in errors
