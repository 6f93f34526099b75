"""Replay mode: matching, multi-turn conversations, recorded usage and times, and errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from proxy.simulator import ThreadedSimulator, build_catalog
from proxy.simulator.errors import SimulatedAPIError, SimulatorFileError
from proxy.simulator.latency import DEFAULT_PROFILE, LatencyProfile, load_profiles
from proxy.simulator.replay import ReplayModel, build_replay_models, load_replay
from proxy.tokens import encoding_counter
from tests.proxy.simulator.helpers import (
    SYSTEM,
    persona,
    recording,
    write_config,
    write_dataset,
    write_jsonl,
)

USER_1 = "My parcel arrived damaged. What should I do?"
ANSWER_1 = "I'm sorry to hear that. Please send a photo of the damage and we will replace it."
USER_2 = "I sent the photo. How long does the replacement take?"
ANSWER_2 = "The replacement ships within two working days."


def turn_two(assistant: str = ANSWER_1, user: str = USER_2) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER_1},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": user},
    ]


def replay_rows() -> list[dict[str, Any]]:
    return [
        recording("gpt-4", USER_1, ANSWER_1, usage={"prompt_tokens": 40, "completion_tokens": 19}),
        {"model": "gpt-4", "messages": turn_two(), "answer": ANSWER_2},
        recording("mixtral-8x7b", USER_1, "Mixtral's answer.", latency_ms=1200, ttft_ms=300),
    ]


def model(tmp_path: Path, name: str = "gpt-4") -> ReplayModel:
    path = write_jsonl(tmp_path / "replay.jsonl", replay_rows())
    models = {m.name: m for m in build_replay_models([path], {})}
    return models[name]


def replay_problems(tmp_path: Path, *files: list[Any]) -> list[str]:
    paths = [write_jsonl(tmp_path / f"replay{n}.jsonl", rows) for n, rows in enumerate(files)]
    with pytest.raises(SimulatorFileError) as raised:
        load_replay(paths)
    return raised.value.problems


def test_recorded_answer_and_usage(tmp_path: Path) -> None:
    gpt4 = model(tmp_path)
    reply = gpt4.reply(recording("gpt-4", f"  {USER_1} ", "")["messages"])
    assert reply.text == ANSWER_1
    assert (reply.prompt_tokens, reply.completion_tokens) == (40, 19)


def test_replay_multi_turn(tmp_path: Path) -> None:
    gpt4 = model(tmp_path)
    assert gpt4.reply(turn_two()).text == ANSWER_2
    assert gpt4.reply(turn_two(assistant="Another model's first answer.")).text == ANSWER_2
    assert gpt4.counter.name == "cl100k_base"


def test_replay_no_match_message(tmp_path: Path) -> None:
    gpt4 = model(tmp_path)
    with pytest.raises(SimulatedAPIError) as raised:
        gpt4.reply(turn_two(user="Can I get a refund instead of a replacement, please, right now?"))
    error = raised.value
    assert error.status == 404
    assert error.code == "conversation_not_recorded"
    message = error.message
    assert "model 'gpt-4'" in message
    assert "4 messages, 2 user turns" in message
    assert '"Can I get a refund instead of a replacement, please, right now?"' in message
    assert "differs at message index 3" in message
    assert "replay.jsonl:2" in message


def test_no_match_without_a_shared_first_message(tmp_path: Path) -> None:
    with pytest.raises(SimulatedAPIError) as raised:
        model(tmp_path).reply([{"role": "user", "content": "x" * 200}])
    message = raised.value.message
    assert "1 message, 1 user turn" in message
    assert '"' + "x" * 77 + '..."' in message
    assert "None of its 2 recorded conversations starts with the same first user message" in message


def test_replay_no_match_length(tmp_path: Path) -> None:
    mixtral = model(tmp_path, "mixtral-8x7b")
    longer = [*turn_two(), {"role": "assistant", "content": "x"}]
    with pytest.raises(SimulatedAPIError, match="goes on after the recording's last message"):
        mixtral.reply(longer)
    gpt4 = model(tmp_path)
    with pytest.raises(SimulatedAPIError, match="differs at message index 0: recorded system"):
        gpt4.reply([{"role": "user", "content": USER_1}])
    with pytest.raises(
        SimulatedAPIError, match='the recording goes on with message 3 \\(user "I sent'
    ):
        gpt4.reply(turn_two()[:3])


def test_recorded_times_are_used(tmp_path: Path) -> None:
    mixtral = model(tmp_path, "mixtral-8x7b")
    reply = mixtral.reply(recording("m", USER_1, "")["messages"])
    timing = mixtral.timing(reply, 10)
    assert timing.ttft == pytest.approx(0.3)
    assert timing.total(10) == pytest.approx(1.2)


def test_replay_profile_latency(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        yaml.safe_dump({"gpt-4": {"ttft_ms": 250, "tokens_per_second": 20, "jitter": 0}})
    )
    profiles = load_profiles(path)
    assert profiles == {"gpt-4": LatencyProfile(250, 20, 0)}
    replay = write_jsonl(tmp_path / "replay.jsonl", replay_rows())
    models = {m.name: m for m in build_replay_models([replay], profiles)}
    assert models["gpt-4"].profile == profiles["gpt-4"]
    assert models["mixtral-8x7b"].profile == DEFAULT_PROFILE
    timing = models["gpt-4"].timing(models["gpt-4"].reply(turn_two()), 10)
    assert timing.total(10) == pytest.approx(0.25 + 10 / 20)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[]", "expected a mapping of model names"),
        ("gpt-4: fast", "gpt-4: expected a mapping with ttft_ms"),
        ("gpt-4: {ttft_ms: 1}", "gpt-4.tokens_per_second: missing"),
        ("gpt-4: {ttft_ms: 1, tokens_per_second: 2, burst: 3}", "gpt-4.burst: unknown key"),
    ],
)
def test_invalid_profile_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(content)
    with pytest.raises(SimulatorFileError) as raised:
        load_profiles(path)
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


def test_same_answer_recorded_twice_is_accepted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "replay.jsonl", [replay_rows()[0], replay_rows()[0]])
    assert len(load_replay([path])["gpt-4"]) == 1


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["{bad json"], "replay0.jsonl:1: invalid JSON"),
        (["", "   "], "replay0.jsonl: the replay file has no recorded conversations"),
        (["7"], "replay0.jsonl:1: expected a JSON object, got a number"),
        ([{"messages": [], "answer": "a"}], "replay0.jsonl:1: model: missing"),
        ([{"model": "m", "answer": "a"}], "replay0.jsonl:1: messages: missing"),
        ([{"model": "m", "messages": [{"role": "user", "content": "q"}]}], ":1: answer: missing"),
        ([recording("", "q", "a")], ":1: model: expected a non-empty string"),
        ([recording("m", "q", 5)], ":1: answer: expected a string, got a number"),
        ([{"model": "m", "messages": "q", "answer": "a"}], ":1: messages: expected an array"),
        ([recording("m", "q", "a", usage=[1])], ":1: usage: expected an object"),
        (
            [recording("m", "q", "a", usage={"prompt_tokens": 1})],
            ":1: usage.completion_tokens: missing",
        ),
        (
            [recording("m", "q", "a", usage={"prompt_tokens": -1, "completion_tokens": 1})],
            ":1: usage.prompt_tokens: expected a whole number",
        ),
        ([recording("m", "q", "a", latency_ms="fast")], ":1: latency_ms: expected a number"),
        ([recording("m", "q", "a", latency_ms=100, ttft_ms=200)], ":1: ttft_ms: 200 is more than"),
        (
            [recording("m", "q", "a"), recording("m", "q ", "b")],
            'replay0.jsonl:2: model "m" has this conversation already on',
        ),
    ],
)
def test_replay_malformed_file(tmp_path: Path, rows: list[Any], expected: str) -> None:
    problems = replay_problems(tmp_path, rows)
    assert any(expected in problem for problem in problems), problems


def test_conflicting_answers_across_two_files(tmp_path: Path) -> None:
    problems = replay_problems(tmp_path, [recording("m", "q", "a")], [recording("m", "q", "b")])
    assert problems == [
        f'{tmp_path / "replay1.jsonl"}:1: model "m" has this conversation already on '
        f"{tmp_path / 'replay0.jsonl'}:1 with a different answer"
    ]


def test_catalog_duplicate_name(tmp_path: Path) -> None:
    write_dataset(tmp_path, 3)
    config = write_config(tmp_path, [persona("gpt-4")])
    replay = write_jsonl(tmp_path / "replay.jsonl", replay_rows())
    with pytest.raises(
        SimulatorFileError, match="'gpt-4' is used twice: by a persona and by a replay"
    ):
        build_catalog(config, [replay])


def test_replay_over_http(tmp_path: Path) -> None:
    replay = write_jsonl(tmp_path / "replay.jsonl", replay_rows())
    catalog = build_catalog(None, [replay])
    with ThreadedSimulator(catalog, speed=10) as simulator:
        url = f"{simulator.base_url}/chat/completions"
        first = httpx.post(
            url, json={"model": "gpt-4", "messages": recording("", USER_1, "")["messages"]}
        )
        assert first.json()["choices"][0]["message"]["content"] == ANSWER_1
        assert first.json()["usage"] == {
            "prompt_tokens": 40,
            "completion_tokens": 19,
            "total_tokens": 59,
        }

        second = httpx.post(url, json={"model": "gpt-4", "messages": turn_two("Whatever.")})
        counter = encoding_counter("cl100k_base")
        assert second.json()["choices"][0]["message"]["content"] == ANSWER_2
        assert second.json()["usage"]["completion_tokens"] == counter.count(ANSWER_2)
        assert second.json()["usage"]["prompt_tokens"] == counter.count_messages(
            turn_two("Whatever.")
        )

        started = time.monotonic()
        streamed = httpx.post(
            url,
            json={
                "model": "mixtral-8x7b",
                "messages": recording("", USER_1, "")["messages"],
                "stream": True,
            },
        )
        assert 0.12 <= time.monotonic() - started < 0.12 + 0.2  # 1200 ms recorded, speed 10
        assert "Mixtral" in streamed.text

        missing = httpx.post(url, json={"model": "gpt-4", "messages": turn_two(user="Other?")})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "conversation_not_recorded"
        assert "differs at message index 3" in missing.json()["error"]["message"]

        unknown = httpx.post(url, json={"model": "claude", "messages": turn_two()})
        assert unknown.status_code == 404
        error = unknown.json()["error"]
        assert error["code"] == "model_not_found"
        assert "replay: gpt-4, mixtral-8x7b" in error["message"]
        assert json.loads(json.dumps(error))["param"] == "model"
