"""A local stand-in for the remote reference model of the local-model evaluation.

The policy in `config/local-models.yaml` compares the two local models with gpt-4o-mini, which
this machine cannot reach. `tests/local_models/offline.yaml` sends gpt-4o-mini's calls here
instead: a fake server that returns each case's expected output from `cases.jsonl`, with fixed
token counts so that its calls are priced at gpt-4o-mini's rates. It stands for a strong remote
model; its quality and latency are not measurements of gpt-4o-mini.

Run it by hand for the documented evaluation (Ctrl-C stops it)::

    .venv/bin/python -m tests.local_models.reference --port 8090
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.evaluator.eval_fakes import Behaviour, Messages, ModelServer, last_user_text

CASES_FILE = Path(__file__).with_name("cases.jsonl")
REFERENCE_MODEL = "gpt-4o-mini"
DEFAULT_PORT = 8090
# Estimates for these one-line cases, not counts from a tokenizer.
PROMPT_TOKENS = 30
COMPLETION_TOKENS = 5
UNKNOWN_ANSWER = "I do not know."


def expected_outputs(path: Path = CASES_FILE) -> dict[str, str]:
    """Map each case's last user message to its expected output."""
    outputs: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        outputs[last_user_text(case["messages"])] = str(case["expected"])
    return outputs


def reference_server(port: int = 0) -> ModelServer:
    """Return (not started) a server that returns the expected output of every case."""
    outputs = expected_outputs()

    def answer(messages: Messages) -> str:
        return outputs.get(last_user_text(messages), UNKNOWN_ANSWER)

    behaviour = Behaviour(answer, prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)
    return ModelServer({REFERENCE_MODEL: behaviour}, port=port)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    args = parser.parse_args(argv)
    with reference_server(args.port) as server:
        print(f"{REFERENCE_MODEL} stand-in serving {server.base_url}; Ctrl-C stops it", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            return


if __name__ == "__main__":
    main()
