"""Recorded answers of GPT-4 and Mixtral 8x7B from RouteLLM's data files, as replay rows.

The files are read at run time from the `routellm` folder of the shared data folder (see
`data_dir`) and never copied into the repository:

- `gsm8k_responses.csv`: per GSM8K problem, each model's answer and its correctness label;
- `gsm8k_answers.jsonl`: the reference final number of each problem;
- `mt_bench_questions.jsonl`: the two user turns of each MT-Bench question;
- `mt_bench_judgements.jsonl`: GPT-4's 1-10 grade of each model's answer to each turn. The
  graded text contains the conversation, which is where both answers of a model are read from.

`replay_rows` turns them into rows for `pareto simulate --replay` (see
`proxy.simulator.replay`): one row per problem and model, and one row per MT-Bench turn and
model, whose turn-2 messages hold that model's own turn-1 answer. Run as a script, it writes a
replay file:

    .venv/bin/python -m benchmarks.routellm_data --out routellm-replay.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GPT4 = "gpt-4-1106-preview"
MIXTRAL = "mixtral-8x7b-instruct-v0.1"
MODELS = (GPT4, MIXTRAL)
# The model names as the data files spell them.
SOURCE_NAMES = {GPT4: "gpt-4-1106-preview", MIXTRAL: "mistralai/Mixtral-8x7B-Instruct-v0.1"}

MATH_RESPONSES = "gsm8k_responses.csv"
MATH_ANSWERS = "gsm8k_answers.jsonl"
CHAT_QUESTIONS = "mt_bench_questions.jsonl"
CHAT_GRADES = "mt_bench_judgements.jsonl"

# Markers around the graded conversation and its turns in the grader's prompt.
CONVERSATION_START = "<|The Start of Assistant A's Conversation with User|>"
CONVERSATION_END = "<|The End of Assistant A's Conversation with User|>"
USER_HEADER = "\n\n### User:\n"
ASSISTANT_HEADER = "\n\n### Assistant A:\n"


class DataError(Exception):
    """A data file is missing or does not have the expected shape; the message names it."""


@dataclass(frozen=True)
class MathProblem:
    """One GSM8K problem with each model's recorded answer and correctness label."""

    index: int  # the row's position in gsm8k_responses.csv, from 0
    question: str
    answer: str  # the reference solution's final number, as written there
    responses: Mapping[str, str]
    correct: Mapping[str, bool]

    @property
    def messages(self) -> list[dict[str, str]]:
        """The request a client sends: the problem as the only user message."""
        return [{"role": "user", "content": self.question}]


@dataclass(frozen=True)
class ChatConversation:
    """One two-turn MT-Bench conversation with each model's answers and GPT-4's grades."""

    question_id: int
    category: str
    turns: tuple[str, str]
    answers: Mapping[str, tuple[str, str]]
    grades: Mapping[str, tuple[float, float]]

    def messages(self, turn: int, earlier_answer: str = "") -> list[dict[str, str]]:
        """Build the request of `turn` (1 or 2). Turn 2 carries the turn-1 reply the client got."""
        first = {"role": "user", "content": self.turns[0]}
        if turn == 1:
            return [first]
        return [
            first,
            {"role": "assistant", "content": earlier_answer},
            {"role": "user", "content": self.turns[1]},
        ]


def data_dir() -> Path:
    """Return the `routellm` folder under $PARETO_SHARED_DATA, else under shared/data beside the
    clone."""
    shared = os.environ.get("PARETO_SHARED_DATA")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared" / "data"
    return root / "routellm"


def load_math(folder: Path) -> list[MathProblem]:
    """Read every GSM8K problem, joined with its reference answer on the question text."""
    answers: dict[str, str] = {}
    for record in _read_jsonl(folder / MATH_ANSWERS):
        answers[record["question"]] = str(record["answer"])
    path = folder / MATH_RESPONSES
    try:
        with path.open(encoding="utf-8", newline="") as file:
            rows = list(csv.DictReader(file))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc

    problems = []
    for index, row in enumerate(rows):
        question = row["prompt"]
        if question not in answers:
            raise DataError(f"{path} row {index + 2}: no reference answer in {MATH_ANSWERS}")
        labels = {}
        for model, source in SOURCE_NAMES.items():
            label = row[source]
            if label not in ("True", "False"):
                raise DataError(f"{path} row {index + 2}: label {label!r} is not True or False")
            labels[model] = label == "True"
        responses = {model: row[f"{source}_response"] for model, source in SOURCE_NAMES.items()}
        problems.append(MathProblem(index, question, answers[question], responses, labels))
    return problems


def load_chat(folder: Path) -> list[ChatConversation]:
    """Read every MT-Bench conversation that both models answered and GPT-4 graded, by id."""
    questions = {int(q["question_id"]): q for q in _read_jsonl(folder / CHAT_QUESTIONS)}
    grades: dict[tuple[int, str, int], float] = {}
    texts: dict[tuple[int, str], tuple[str, str]] = {}
    models = {source: model for model, source in SOURCE_NAMES.items()}
    for record in _read_jsonl(folder / CHAT_GRADES):
        model = models.get(record["model"])
        if model is None:
            continue
        question_id = int(record["question_id"])
        grades[(question_id, model, int(record["turn"]))] = float(record["score"])
        if record["turn"] == 2:
            turns = questions[question_id]["turns"]
            texts[(question_id, model)] = _graded_answers(record["user_prompt"], turns, question_id)

    conversations = []
    for question_id in sorted(questions):
        if not all((question_id, model) in texts for model in MODELS):
            continue
        question = questions[question_id]
        conversations.append(
            ChatConversation(
                question_id=question_id,
                category=question["category"],
                turns=(question["turns"][0], question["turns"][1]),
                answers={model: texts[(question_id, model)] for model in MODELS},
                grades={
                    model: (grades[(question_id, model, 1)], grades[(question_id, model, 2)])
                    for model in MODELS
                },
            )
        )
    return conversations


def _graded_answers(prompt: str, turns: Sequence[str], question_id: int) -> tuple[str, str]:
    """Cut a model's two answers out of the grader's prompt for turn 2.

    The conversation reads: user turn 1, the answer, user turn 2, the answer. The user turns
    are known, so the answers are what lies between them, even when an answer contains a
    header of its own.
    """
    where = f"{CHAT_GRADES}, question {question_id}"
    if prompt.count(CONVERSATION_START) != 1 or prompt.count(CONVERSATION_END) != 1:
        raise DataError(f"{where}: the graded conversation is not framed as expected")
    conversation = prompt.split(CONVERSATION_START, 1)[1].split(CONVERSATION_END, 1)[0]
    opening = USER_HEADER + turns[0] + ASSISTANT_HEADER
    middle = USER_HEADER + turns[1] + ASSISTANT_HEADER
    if not conversation.startswith(opening) or conversation.count(middle) != 1:
        raise DataError(f"{where}: the graded conversation does not contain both user turns")
    first, second = conversation[len(opening) :].split(middle)
    return first, second.removesuffix("\n\n")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: invalid JSON: {exc}") from exc


def replay_rows(
    problems: Sequence[MathProblem], conversations: Sequence[ChatConversation]
) -> Iterator[dict[str, Any]]:
    """Yield the replay rows of these problems and conversations, for both models.

    No row has usage or times: the simulator counts tokens with tiktoken and takes the
    latency from each model's profile.
    """
    for problem in problems:
        for model in MODELS:
            yield {"model": model, "messages": problem.messages, "answer": problem.responses[model]}
    for conversation in conversations:
        for model in MODELS:
            first, second = conversation.answers[model]
            yield {"model": model, "messages": conversation.messages(1), "answer": first}
            yield {"model": model, "messages": conversation.messages(2, first), "answer": second}


def write_replay(
    path: Path, problems: Sequence[MathProblem], conversations: Sequence[ChatConversation]
) -> int:
    """Write the replay file of these problems and conversations; return its number of rows."""
    count = 0
    with path.open("w", encoding="utf-8") as file:
        for row in replay_rows(problems, conversations):
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write RouteLLM's recorded GPT-4 and Mixtral answers as a replay file for "
        "pareto simulate --replay."
    )
    parser.add_argument("--out", type=Path, required=True, help="replay file to write (JSONL)")
    parser.add_argument(
        "--data", type=Path, default=None, help="the routellm data folder (default: see data_dir)"
    )
    args = parser.parse_args(argv)
    folder = args.data or data_dir()
    try:
        problems = load_math(folder)
        conversations = load_chat(folder)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = write_replay(args.out, problems, conversations)
    print(
        f"Wrote {rows} replay rows to {args.out}: {len(problems)} GSM8K problems and "
        f"{len(conversations)} MT-Bench conversations, each answered by {', '.join(MODELS)}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
