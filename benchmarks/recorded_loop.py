"""Pareto's loop on recorded model answers: traffic in rounds, sampling, evaluation, decision.

The gateway runs with two policies whose candidates are GPT-4 and Mixtral 8x7B, served by a
replay simulator (`benchmarks.routellm_data` writes its file). `run_loop` drives it the way an
application and the evaluation schedule would:

1. Each round sends its share of the GSM8K problems to the `math` policy and of the MT-Bench
   conversations to the `chat` policy with the `openai` client, several at a time. The two
   turns of a conversation go in order, turn 2 carrying the reply that turn 1 got.
2. The gateway samples requests into cases at each policy's `sample_rate`. Once the stored
   counts stop changing, the cases get their criteria, as an operator would attach them with
   `pareto cases annotate`: the `number` check for a problem, and GPT-4's recorded grades of
   both models for a conversation turn.
3. `POST /pareto/policies/P/evaluate` starts each policy's scheduled evaluation now. It calls
   the candidates on every case (reusing results of earlier rounds), judges them, and ends
   with a stored decision that switches the gateway's route at once in auto mode.

Every request's served model and cost come from the gateway's response headers.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import httpx
import openai
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from benchmarks.routellm_data import GPT4, MIXTRAL, MODELS, ChatConversation, MathProblem
from evaluator.annotate import annotate_cases
from evaluator.cases import CaseRow, count_cases
from evaluator.redaction import Redactor
from evaluator.tables import EvalResult, EvalRun
from proxy.decisions import list_decisions

MATH = "math"
CHAT = "chat"
POLICIES = (MATH, CHAT)

# USD per token. GPT-4 Turbo (gpt-4-1106-preview) list prices, $10 and $30 per million input
# and output tokens; Mixtral 8x7B at $0.24 per million tokens both ways.
PRICES = {GPT4: (10e-6, 30e-6), MIXTRAL: (0.24e-6, 0.24e-6)}

# Assumed latency profiles, not measurements: GPT-4 Turbo at about 30 tokens/s after 0.6 s,
# Mixtral 8x7B at a hosting provider at about 90 tokens/s after 0.3 s.
LATENCY_PROFILES = {
    GPT4: {"ttft_ms": 600, "tokens_per_second": 30},
    MIXTRAL: {"ttft_ms": 300, "tokens_per_second": 90},
}

REQUEST_TIMEOUT_SECONDS = 300.0
SETTLE_SECONDS = 1.5  # longer than the case sampler's 1 s write interval
POLL_SECONDS = 0.1
DECISION_GRACE_SECONDS = 5.0


class LoopError(RuntimeError):
    """A step of the loop failed. The message names the step and the cause."""


@dataclass(frozen=True)
class LoopSettings:
    """Settings of the loop: rounds, parallel requests, traffic order, and the policies' settings.

    `seed` shuffles the traffic order. Settings that the policies leave to the product keep its
    defaults (`min_cases` 30, `min_savings` 0.10, `max_error_rate` 0.02), except `confidence`.
    """

    rounds: int = 8
    concurrency: int = 8
    seed: int = 0
    math_sample_rate: float = 0.5
    chat_sample_rate: float = 1.0
    math_min_quality_ratio: float = 0.95
    chat_min_quality_ratio: float = 0.85
    confidence: float = 0.80
    decision_timeout_seconds: float = 300.0


def policy_sections(settings: LoopSettings) -> dict[str, dict[str, Any]]:
    """The `policies:` section of the gateway's configuration.

    `min_quality` is off so that only the ratio to GPT-4 decides, and so is the latency ceiling,
    because simulated latency divided by a speed factor does not measure the models.
    """
    common: dict[str, Any] = {
        "reference": GPT4,
        "candidates": list(MODELS),
        "min_quality": None,
        "max_latency_p95_ms": None,
        "confidence": settings.confidence,
        "mode": "auto",
        "schedule": "every 24h",
    }
    return {
        MATH: {
            **common,
            "judge": "checks",
            "sample_rate": settings.math_sample_rate,
            "min_quality_ratio": settings.math_min_quality_ratio,
        },
        CHAT: {
            **common,
            "judge": "recorded",
            "sample_rate": settings.chat_sample_rate,
            "min_quality_ratio": settings.chat_min_quality_ratio,
        },
    }


def gateway_config(
    upstream: str, database_url: str, master_key: str, settings: LoopSettings
) -> dict[str, Any]:
    """Build the gateway's configuration: both models on the replay simulator at `upstream`."""
    model_list = [
        {
            "model_name": model,
            "litellm_params": {"model": f"openai/{model}", "api_base": upstream, "api_key": "none"},
            "model_info": {
                "input_cost_per_token": PRICES[model][0],
                "output_cost_per_token": PRICES[model][1],
            },
        }
        for model in MODELS
    ]
    return {
        "model_list": model_list,
        "general_settings": {"master_key": master_key, "database_url": database_url},
        "policies": policy_sections(settings),
    }


@dataclass(frozen=True)
class Served:
    """One request as the client saw it: which model served it, at what cost, in which round.

    `item` names the recorded item: a problem's row index, or "<question id>/<turn>".
    """

    policy: str
    item: str
    round: int
    model: str
    cost_usd: float
    decision_id: int | None


@dataclass(frozen=True)
class RoundOutcome:
    """The evaluation run and decision of one policy after one round of traffic."""

    policy: str
    round: int
    requests: int  # the policy's requests up to and including this round
    sampled_cases: int
    run_id: int
    run_cases: int
    calls: int  # candidate calls this run made (results reused from earlier runs not counted)
    spent_usd: float
    decision: dict[str, Any]  # `StoredDecision.to_dict()`


@dataclass(frozen=True)
class LoopResult:
    """Every served request and every round's decision, in order."""

    settings: LoopSettings
    served: list[Served]
    rounds: list[RoundOutcome]

    def outcomes(self, policy: str) -> list[RoundOutcome]:
        return [outcome for outcome in self.rounds if outcome.policy == policy]


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """`items` cut into `parts` consecutive batches whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    batches, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        batches.append(list(items[start:end]))
        start = end
    return batches


# A request's served record, the policy it was sent to, and the row that annotates its case.
_Request = tuple[Served, str, CaseRow]


class _Traffic:
    """Sends problems and conversations to the gateway and keeps what each request got."""

    def __init__(self, base_url: str, master_key: str, concurrency: int) -> None:
        self._client = openai.OpenAI(
            base_url=f"{base_url}/v1",
            api_key=master_key,
            max_retries=0,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        self._concurrency = concurrency

    def close(self) -> None:
        self._client.close()

    def send_round(
        self,
        round_number: int,
        problems: Sequence[MathProblem],
        conversations: Sequence[ChatConversation],
        rng: random.Random,
    ) -> tuple[list[Served], list[tuple[str, CaseRow]]]:
        """Send one round; return what was served and the annotation row of every request."""
        tasks: list[Callable[[], list[_Request]]] = [
            functools.partial(self._math, round_number, problem) for problem in problems
        ]
        tasks += [
            functools.partial(self._chat, round_number, conversation)
            for conversation in conversations
        ]
        rng.shuffle(tasks)
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="recorded-traffic") as pool:
            results = [item for done in pool.map(lambda task: task(), tasks) for item in done]
        return [served for served, _, _ in results], [(policy, row) for _, policy, row in results]

    def _math(self, round_number: int, problem: MathProblem) -> list[_Request]:
        _text, served = self._request(MATH, problem.messages, str(problem.index), round_number)
        checks = [{"type": "number", "value": problem.answer}]
        return [(served, MATH, CaseRow(messages=problem.messages, checks=checks))]

    def _chat(self, round_number: int, conversation: ChatConversation) -> list[_Request]:
        results: list[_Request] = []
        earlier = ""
        for turn in (1, 2):
            messages = conversation.messages(turn, earlier)
            item = f"{conversation.question_id}/{turn}"
            earlier, served = self._request(CHAT, messages, item, round_number)
            scores = {model: conversation.grades[model][turn - 1] for model in MODELS}
            results.append((served, CHAT, CaseRow(messages=messages, scores=scores)))
        return results

    def _request(
        self, policy: str, messages: list[dict[str, str]], item: str, round_number: int
    ) -> tuple[str, Served]:
        sent: Any = messages  # the client's message types are TypedDicts
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=policy, messages=sent
            )
            completion = raw.parse()
        except openai.APIError as exc:
            raise LoopError(f"request {item} of policy {policy} failed: {exc}") from exc
        headers = raw.headers
        model = headers.get("x-pareto-model")
        cost = headers.get("x-pareto-cost-usd")
        if model is None or cost is None:
            raise LoopError(
                f"request {item} of policy {policy}: the gateway named no model or cost"
            )
        decision = headers.get("x-pareto-decision")
        served = Served(
            policy=policy,
            item=item,
            round=round_number,
            model=model,
            cost_usd=float(cost),
            decision_id=int(decision) if decision else None,
        )
        return completion.choices[0].message.content or "", served


def run_loop(
    base_url: str,
    master_key: str,
    engine: Engine,
    redactors: Mapping[str, Redactor],
    problems: Sequence[MathProblem],
    conversations: Sequence[ChatConversation],
    settings: LoopSettings,
    on_round: Callable[[list[RoundOutcome]], None] | None = None,
) -> LoopResult:
    """Run every round against the gateway at `base_url` and return what happened.

    `engine` is the gateway's database and `redactors` its policies' redaction settings
    (`proxy.sampling.sampling_policies`), which annotation needs to match the stored cases.
    Raises `LoopError` when a request fails or an evaluation ends without a decision.
    """
    rng = random.Random(settings.seed)
    problems = list(problems)
    conversations = list(conversations)
    rng.shuffle(problems)
    rng.shuffle(conversations)
    math_batches = split(problems, settings.rounds)
    chat_batches = split(conversations, settings.rounds)

    traffic = _Traffic(base_url, master_key, settings.concurrency)
    served: list[Served] = []
    rounds: list[RoundOutcome] = []
    try:
        for number in range(1, settings.rounds + 1):
            batch, rows = traffic.send_round(
                number, math_batches[number - 1], chat_batches[number - 1], rng
            )
            served += batch
            sampled = _wait_for_sampling(engine)
            for policy in POLICIES:
                policy_rows = [row for row_policy, row in rows if row_policy == policy]
                annotate_cases(engine, policy, policy_rows, redactors[policy])
            outcomes = _evaluate(base_url, master_key, engine, settings, number)
            for outcome in outcomes:
                requests = sum(1 for item in served if item.policy == outcome.policy)
                sampled_cases = sampled.get(outcome.policy, 0)
                rounds.append(replace(outcome, requests=requests, sampled_cases=sampled_cases))
            if on_round is not None:
                on_round(rounds[-len(POLICIES) :])
    finally:
        traffic.close()
    return LoopResult(settings, served, rounds)


def _wait_for_sampling(engine: Engine) -> dict[str, int]:
    """Wait until no policy's count of sampled cases has changed for `SETTLE_SECONDS`.

    Every offer is queued before its response is sent, so once the round's responses are in,
    the sampler's next write stores the last of them.
    """
    counts = _sampled_counts(engine)
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < SETTLE_SECONDS:
        time.sleep(POLL_SECONDS)
        now = _sampled_counts(engine)
        if now != counts:
            counts, stable_since = now, time.monotonic()
    return counts


def _sampled_counts(engine: Engine) -> dict[str, int]:
    return {policy: kinds.get("sampled", 0) for policy, kinds in count_cases(engine).items()}


def _evaluate(
    base_url: str, master_key: str, engine: Engine, settings: LoopSettings, round_number: int
) -> list[RoundOutcome]:
    """Start every policy's evaluation now and wait for each run's decision."""
    earlier = {policy: _newest_run_id(engine, policy) for policy in POLICIES}
    for policy in POLICIES:
        response = httpx.post(
            f"{base_url}/pareto/policies/{policy}/evaluate",
            headers={"Authorization": f"Bearer {master_key}"},
            timeout=30.0,
        )
        if response.status_code != 202:
            raise LoopError(
                f"the evaluation of {policy} did not start: {response.status_code} {response.text}"
            )
    return [
        _wait_for_decision(engine, policy, earlier[policy], settings, round_number)
        for policy in POLICIES
    ]


def _wait_for_decision(
    engine: Engine, policy: str, earlier_run: int, settings: LoopSettings, round_number: int
) -> RoundOutcome:
    deadline = time.monotonic() + settings.decision_timeout_seconds
    ended: float | None = None
    while time.monotonic() < deadline:
        run = _newest_run(engine, policy)
        if run is not None and run.id is not None and run.id > earlier_run:
            decisions = list_decisions(engine, policy, 1)
            if decisions and decisions[0].run_id == run.id:
                return RoundOutcome(
                    policy=policy,
                    round=round_number,
                    requests=0,
                    sampled_cases=0,
                    run_id=run.id,
                    run_cases=len(run.case_ids),
                    calls=_called(engine, run.id),
                    spent_usd=run.spent_usd,
                    decision=decisions[0].to_dict(),
                )
            if run.status != "running":
                ended = ended or time.monotonic()
                # The decision is stored right after the run ends; allow it a moment.
                if time.monotonic() - ended > DECISION_GRACE_SECONDS:
                    raise LoopError(
                        f"evaluation run {run.id} of {policy} ended {run.status} without a "
                        f"decision: {run.error or 'see the gateway log'}"
                    )
        time.sleep(POLL_SECONDS)
    raise LoopError(
        f"no decision of {policy} within {settings.decision_timeout_seconds:g} s after round "
        f"{round_number}"
    )


def _newest_run(engine: Engine, policy: str) -> EvalRun | None:
    with Session(engine) as session:
        query = select(EvalRun).where(EvalRun.policy == policy).order_by(col(EvalRun.id).desc())
        return session.exec(query.limit(1)).first()


def _newest_run_id(engine: Engine, policy: str) -> int:
    run = _newest_run(engine, policy)
    return run.id if run is not None and run.id is not None else 0


def _called(engine: Engine, run_id: int) -> int:
    """Count the candidate calls a run made: its results with status "ok" or "error"."""
    with Session(engine) as session:
        query = select(func.count()).where(
            EvalResult.run_id == run_id, col(EvalResult.status).in_(("ok", "error"))
        )
        return int(session.exec(query).one())
