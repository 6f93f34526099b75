"""Replay mode: models whose answers come from recorded conversations in JSON Lines files.

Each line of a replay file (`pareto simulate --replay FILE`, repeatable) is one recorded turn::

    {"model": "gpt-4", "messages": [...], "answer": "...",
     "usage": {"prompt_tokens": 31, "completion_tokens": 12},   # optional
     "latency_ms": 1840, "ttft_ms": 420}                        # optional

Blank lines are skipped and other keys are ignored. A multi-turn conversation is one line per
turn: the line of turn 2 holds user 1, the assistant reply and user 2. Requests are matched as
`conversation` describes (assistant contents are ignored).

`load_replay` rejects a file, naming it and the line, for invalid JSON, a missing or mistyped
field, an empty file, or one conversation recorded twice for a model with different answers
(the same answer twice is accepted). `ReplayModel.reply` raises a 404 `SimulatedAPIError` for
a conversation the model has no recording of, saying what differs from the closest recording.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.cases import CaseRowError, describe, first_user_text, parse_messages
from proxy.simulator.conversation import (
    ConversationKey,
    clip,
    common_prefix,
    conversation_key,
    last_user,
    message_keys,
    user_turns,
)
from proxy.simulator.errors import SimulatedAPIError, SimulatorFileError, show
from proxy.simulator.latency import DEFAULT_PROFILE, LatencyProfile, Timing, recorded_timing
from proxy.simulator.models import Reply, SimulatedModel
from proxy.tokens import encoding_counter, encoding_for_model

MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class Recording:
    """One recorded turn of one model."""

    model: str
    messages: list[dict[str, Any]]
    answer: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    ttft_ms: float | None
    source: str  # "file:line"

    @property
    def keys(self) -> list[str]:
        return message_keys(self.messages)


class _RowError(ValueError):
    pass


def load_replay(paths: Sequence[Path]) -> dict[str, dict[ConversationKey, Recording]]:
    """Read replay files into ``{model: {conversation key: recording}}``.

    Raises `SimulatorFileError` with one ``file:line: problem`` sentence per problem.
    """
    problems: list[str] = []
    models: dict[str, dict[ConversationKey, Recording]] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read the replay file: {exc}")
            continue
        rows = 0
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            rows += 1
            source = f"{path}:{number}"
            try:
                recording = _parse_row(line, source)
            except _RowError as exc:
                problems.append(f"{source}: {exc}")
                continue
            recorded = models.setdefault(recording.model, {})
            key = conversation_key(recording.messages)
            earlier = recorded.get(key)
            if earlier is None:
                recorded[key] = recording
            elif earlier.answer != recording.answer:
                problems.append(
                    f"{source}: model {show(recording.model)} has this conversation already on "
                    f"{earlier.source} with a different answer"
                )
        if rows == 0:
            problems.append(f"{path}: the replay file has no recorded conversations")
    if problems:
        extra = len(problems) - MAX_REPORTED_PROBLEMS
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if extra > 0:
            shown.append(f"... and {extra} more problems")
        raise SimulatorFileError(shown)
    return models


def _parse_row(line: str, source: str) -> Recording:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _RowError(f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(raw, dict):
        raise _RowError(f"expected a JSON object, got {describe(raw)}")
    for key in ("model", "messages", "answer"):
        if key not in raw:
            raise _RowError(f"{key}: missing")
    model = raw["model"]
    if not isinstance(model, str) or not model.strip():
        raise _RowError(f"model: expected a non-empty string, got {show(model)}")
    try:
        messages = parse_messages(raw["messages"])
    except CaseRowError as exc:
        raise _RowError(str(exc)) from exc
    answer = raw["answer"]
    if not isinstance(answer, str):
        raise _RowError(f"answer: expected a string, got {describe(answer)}")
    prompt_tokens, completion_tokens = _usage(raw.get("usage"))
    latency_ms = _milliseconds(raw, "latency_ms")
    ttft_ms = _milliseconds(raw, "ttft_ms")
    if latency_ms is not None and ttft_ms is not None and ttft_ms > latency_ms:
        raise _RowError(f"ttft_ms: {ttft_ms:g} is more than latency_ms {latency_ms:g}")
    return Recording(
        model, messages, answer, prompt_tokens, completion_tokens, latency_ms, ttft_ms, source
    )


def _usage(raw: object) -> tuple[int | None, int | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise _RowError(
            "usage: expected an object with prompt_tokens and completion_tokens, "
            f"got {describe(raw)}"
        )
    counts = []
    for key in ("prompt_tokens", "completion_tokens"):
        value = raw.get(key)
        if key not in raw:
            raise _RowError(f"usage.{key}: missing")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _RowError(
                f"usage.{key}: expected a whole number of at least 0, got {show(value)}"
            )
        counts.append(value)
    return counts[0], counts[1]


def _milliseconds(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise _RowError(
            f"{key}: expected a number of milliseconds of at least 0, got {show(value)}"
        )
    return float(value)


class ReplayModel(SimulatedModel):
    """A model that replies only to the conversations recorded for it."""

    kind = "replay"

    def __init__(
        self,
        name: str,
        recordings: dict[ConversationKey, Recording],
        profile: LatencyProfile = DEFAULT_PROFILE,
        seed: int = 0,
    ) -> None:
        super().__init__(name, profile, encoding_counter(encoding_for_model(name)), seed)
        self.recordings = recordings

    def reply(self, messages: Sequence[Mapping[str, Any]]) -> Reply:
        recording = self.recordings.get(conversation_key(messages))
        if recording is None:
            raise SimulatedAPIError(
                404, self.mismatch(messages), code="conversation_not_recorded", param="messages"
            )
        return Reply(
            recording.answer,
            prompt_tokens=recording.prompt_tokens,
            completion_tokens=recording.completion_tokens,
            ttft_ms=recording.ttft_ms,
            latency_ms=recording.latency_ms,
        )

    def timing(self, reply: Reply, tokens: int) -> Timing:
        return recorded_timing(self.profile, self.rng, tokens, reply.ttft_ms, reply.latency_ms)

    def mismatch(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """Why no recording matches: the request's shape, and where the closest one differs."""
        count = len(messages)
        message = (
            f"No recorded conversation of model '{self.name}' matches this request "
            f"({count} message{'s' if count != 1 else ''}, {user_turns(messages)} user "
            f"turn{'s' if user_turns(messages) != 1 else ''}; last user message: "
            f'"{clip(last_user(messages))}").'
        )
        opening = first_user_text(messages)
        keys = message_keys(messages)
        closest: Recording | None = None
        closest_shared = -1
        for recording in self.recordings.values():
            if first_user_text(recording.messages) != opening:
                continue
            shared = common_prefix(keys, recording.keys)
            if shared > closest_shared:
                closest, closest_shared = recording, shared
        if closest is None:
            total = len(self.recordings)
            return (
                f"{message} None of its {total} recorded conversation{'s' if total != 1 else ''} "
                "starts with the same first user message."
            )
        index = closest_shared
        if index >= len(closest.messages):
            detail = (
                f"the request goes on after the recording's last message "
                f"(the recording has {len(closest.messages)} messages)"
            )
        elif index >= count:
            detail = (
                f"the recording goes on with message {index} ({_brief(closest.messages[index])})"
            )
        else:
            detail = (
                f"recorded {_brief(closest.messages[index])}, "
                f"request {_brief(dict(messages[index]))}"
            )
        return (
            f"{message} The recorded conversation at {closest.source} has the same first user "
            f"message and differs at message index {index}: {detail}."
        )

    def describe(self) -> str:
        files = sorted({r.source.rsplit(":", 1)[0] for r in self.recordings.values()})
        total = len(self.recordings)
        return (
            f"replay, {total} recorded turn{'s' if total != 1 else ''} from {', '.join(files)}, "
            f"tokens {self.counter.name}"
        )


def _brief(message: Mapping[str, Any]) -> str:
    role = message.get("role")
    if role == "assistant":
        return "assistant"
    content = first_user_text([{**message, "role": "user"}])
    return f'{role} "{clip(content, 60)}"'


def build_replay_models(
    paths: Sequence[Path], profiles: Mapping[str, LatencyProfile], seed: int = 0
) -> list[ReplayModel]:
    """Load replay files and build one model per recorded model name."""
    recorded = load_replay(paths)
    return [
        ReplayModel(name, recordings, profiles.get(name, DEFAULT_PROFILE), seed)
        for name, recordings in recorded.items()
    ]
