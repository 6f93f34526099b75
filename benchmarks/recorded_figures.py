"""Figures of the recorded-models benchmark, computed from a finished loop and the recorded data.

Definitions, per policy, over the requests the loop sent:

- quality of a served request: the recorded quality of the model that served it, the
  correctness label of its answer to a GSM8K problem (1 or 0), or GPT-4's 1-10 grade of its
  answer to an MT-Bench turn. "Always GPT-4" and "always Mixtral" are the same requests
  served by one model.
- quality kept: served quality / always-GPT-4 quality.
- PGR (performance gap recovered, as the RouteLLM paper defines it):
  (served - always Mixtral) / (always GPT-4 - always Mixtral).
- GPT-4 share: requests served by GPT-4 / all requests.
- cost against always GPT-4: the gateway's cost of the served requests / what GPT-4 would
  have cost on them. A model's cost on a request is its tokens, counted offline as the
  simulator counts them, times its list price; for the requests it served, that equals the
  cost the gateway reported.

The sweep re-decides offline with `policies.decide` from the final run's measurements, for
each `min_quality_ratio`, starting from GPT-4 as the loop does, and gives the figures the
chosen model would reach on all requests. The sensitivity check replays the loop's rounds
offline on the recorded grades, over several traffic orders.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Engine

from benchmarks.recorded_loop import (
    CHAT,
    MATH,
    PRICES,
    LoopResult,
    LoopSettings,
    policy_sections,
    split,
)
from benchmarks.routellm_data import GPT4, MIXTRAL, MODELS, ChatConversation, MathProblem
from evaluator.aggregate import candidate_metrics
from evaluator.report import load_report
from policies import CandidateMetrics, PolicySettings, decide
from proxy.tokens import encoding_counter, encoding_for_model

SWEEP_RATIOS = (0.80, 0.825, 0.85, 0.875, 0.90, 0.925, 0.95, 0.975, 1.00)


@dataclass(frozen=True)
class Recorded:
    """Per policy and item ("<row>" or "<question id>/<turn>"): each model's quality and cost."""

    quality: Mapping[tuple[str, str], Mapping[str, float]]
    cost_usd: Mapping[tuple[str, str], Mapping[str, float]]

    @classmethod
    def build(
        cls, problems: Sequence[MathProblem], conversations: Sequence[ChatConversation]
    ) -> Recorded:
        quality: dict[tuple[str, str], dict[str, float]] = {}
        cost: dict[tuple[str, str], dict[str, float]] = {}
        for problem in problems:
            key = (MATH, str(problem.index))
            quality[key] = {model: float(problem.correct[model]) for model in MODELS}
            cost[key] = {
                model: request_cost(model, problem.messages, problem.responses[model])
                for model in MODELS
            }
        for conversation in conversations:
            for turn in (1, 2):
                key = (CHAT, f"{conversation.question_id}/{turn}")
                quality[key] = {model: conversation.grades[model][turn - 1] for model in MODELS}
                cost[key] = {}
                for model in MODELS:
                    first, second = conversation.answers[model]
                    messages = conversation.messages(turn, first)
                    cost[key][model] = request_cost(model, messages, (first, second)[turn - 1])
        return cls(quality, cost)


def request_cost(model: str, messages: list[dict[str, str]], answer: str) -> float:
    """Price one request of `model` at its list price, with the simulator's token counts."""
    counter = encoding_counter(encoding_for_model(model))
    input_price, output_price = PRICES[model]
    return counter.count_messages(messages) * input_price + counter.count(answer) * output_price


@dataclass(frozen=True)
class TrafficFigures:
    """Figures of some of one policy's requests, against always GPT-4 and always Mixtral."""

    requests: int
    gpt4_share: float
    cost_per_request_usd: float
    gpt4_cost_per_request_usd: float
    mixtral_cost_per_request_usd: float
    quality: float
    gpt4_quality: float
    mixtral_quality: float

    @property
    def cost_share(self) -> float:
        return self.cost_per_request_usd / self.gpt4_cost_per_request_usd

    @property
    def quality_kept(self) -> float:
        return self.quality / self.gpt4_quality

    @property
    def pgr(self) -> float:
        return pgr(self.quality, self.mixtral_quality, self.gpt4_quality)


def pgr(quality: float, weak: float, strong: float) -> float:
    """Performance gap recovered: the share of the weak-to-strong quality gap reached."""
    return (quality - weak) / (strong - weak)


@dataclass(frozen=True)
class Timeline:
    """When a policy's decision was made, what it took, and whether it changed back.

    `decided_round` is the first round from which every decision chose the final model and
    both candidates had at least `min_cases` judged cases; None if no round qualifies.
    `calls` and `spent_usd` add up the runs up to and including that round, the totals all
    runs.
    """

    decided_round: int | None
    requests: int
    sampled_cases: int
    run_cases: int
    calls: int
    spent_usd: float
    total_calls: int
    total_spent_usd: float
    route_changes: int
    changed_back: bool


@dataclass(frozen=True)
class SweepRow:
    """The decision one `min_quality_ratio` would make from the final run, and its figures."""

    ratio: float
    chosen_model: str
    gpt4_share: float
    cost_per_request_usd: float
    cost_share: float
    quality_kept: float
    pgr: float


@dataclass(frozen=True)
class Sensitivity:
    """Offline replays of the chat loop over `orders` traffic orders at one setting."""

    sample_rate: float
    confidence: float
    orders: int
    ended_on_mixtral: int
    changed_back: int


def traffic_figures(
    loop: LoopResult, recorded: Recorded, policy: str, after_round: int = 0
) -> TrafficFigures | None:
    """Compute the figures of `policy`'s requests sent after round `after_round`.

    Returns None when there are no such requests.
    """
    served = [item for item in loop.served if item.policy == policy and item.round > after_round]
    if not served:
        return None
    keys = [(policy, item.item) for item in served]

    def mean(values: Sequence[float]) -> float:
        return math.fsum(values) / len(values)

    return TrafficFigures(
        requests=len(served),
        gpt4_share=sum(item.model == GPT4 for item in served) / len(served),
        cost_per_request_usd=mean([item.cost_usd for item in served]),
        gpt4_cost_per_request_usd=mean([recorded.cost_usd[key][GPT4] for key in keys]),
        mixtral_cost_per_request_usd=mean([recorded.cost_usd[key][MIXTRAL] for key in keys]),
        quality=mean([recorded.quality[(policy, item.item)][item.model] for item in served]),
        gpt4_quality=mean([recorded.quality[key][GPT4] for key in keys]),
        mixtral_quality=mean([recorded.quality[key][MIXTRAL] for key in keys]),
    )


def decision_timeline(loop: LoopResult, policy: str) -> Timeline:
    """Find when `policy`'s final decision was made (see `Timeline`)."""
    outcomes = loop.outcomes(policy)
    final = outcomes[-1].decision["chosen_model"]
    min_cases = int(outcomes[-1].decision["settings"]["min_cases"])
    decided = None
    for index, outcome in enumerate(outcomes):
        later = outcomes[index:]
        enough = all(row["cases"] >= min_cases for row in outcome.decision["candidates"])
        if enough and all(item.decision["chosen_model"] == final for item in later):
            decided = index
            break

    changes = sum(
        1 for item in outcomes if item.decision["chosen_model"] != item.decision["previous_model"]
    )
    chosen = [GPT4] + [item.decision["chosen_model"] for item in outcomes]
    upto = outcomes if decided is None else outcomes[: decided + 1]
    last = upto[-1]
    return Timeline(
        decided_round=None if decided is None else outcomes[decided].round,
        requests=last.requests,
        sampled_cases=last.sampled_cases,
        run_cases=last.run_cases,
        calls=sum(item.calls for item in upto),
        spent_usd=math.fsum(item.spent_usd for item in upto),
        total_calls=sum(item.calls for item in outcomes),
        total_spent_usd=math.fsum(item.spent_usd for item in outcomes),
        route_changes=changes,
        changed_back=returned(chosen),
    )


def returned(models: Sequence[str]) -> bool:
    """Tell whether a sequence of routed models ever comes back to a model it had left."""
    left: set[str] = set()
    for before, after in itertools.pairwise(models):
        if after == before:
            continue
        if after in left:
            return True
        left.add(before)
    return False


def routing_settings(loop_settings: LoopSettings, policy: str, ratio: float) -> PolicySettings:
    """Build the policy's routing settings as the loop configures them, at `ratio`."""
    section = policy_sections(loop_settings)[policy]
    keys = set(PolicySettings.__dataclass_fields__)
    values: dict[str, Any] = {key: value for key, value in section.items() if key in keys}
    values["min_quality_ratio"] = ratio
    return PolicySettings.from_mapping(values)


def sweep(engine: Engine, loop: LoopResult, recorded: Recorded, policy: str) -> list[SweepRow]:
    """Re-decide from the policy's final run at each of `SWEEP_RATIOS`, starting from GPT-4."""
    final = loop.outcomes(policy)[-1]
    report = load_report(engine, final.run_id)
    measured = [
        metrics for metrics in candidate_metrics(report.aggregates) if metrics.model in MODELS
    ]
    served = [(policy, item.item) for item in loop.served if item.policy == policy]
    rows = []
    for ratio in SWEEP_RATIOS:
        settings = routing_settings(loop.settings, policy, ratio)
        chosen = decide(measured, settings, reference_model=GPT4, current_model=GPT4).chosen_model
        quality = math.fsum(recorded.quality[key][chosen] for key in served)
        strong = math.fsum(recorded.quality[key][GPT4] for key in served)
        weak = math.fsum(recorded.quality[key][MIXTRAL] for key in served)
        cost = math.fsum(recorded.cost_usd[key][chosen] for key in served)
        gpt4_cost = math.fsum(recorded.cost_usd[key][GPT4] for key in served)
        rows.append(
            SweepRow(
                ratio=ratio,
                chosen_model=chosen,
                gpt4_share=1.0 if chosen == GPT4 else 0.0,
                cost_per_request_usd=cost / len(served),
                cost_share=cost / gpt4_cost,
                quality_kept=quality / strong,
                pgr=pgr(quality, weak, strong),
            )
        )
    return rows


def chat_sensitivity(
    conversations: Sequence[ChatConversation],
    recorded: Recorded,
    loop_settings: LoopSettings,
    grid: Sequence[tuple[float, float]] = ((0.5, 0.90), (0.5, 0.80), (1.0, 0.90), (1.0, 0.80)),
    orders: int = 20,
) -> list[Sensitivity]:
    """Replay the chat loop offline on the recorded grades at each (sample rate, confidence).

    Each order shuffles the conversations with its own seed, samples each turn with the
    sample rate, and decides after each of the loop's rounds from the turns sampled so far, in
    sampling order, as the gateway's runs would. Costs per request are the recorded means.
    """
    costs = {
        model: math.fsum(row[model] for key, row in recorded.cost_usd.items() if key[0] == CHAT)
        / sum(1 for key in recorded.cost_usd if key[0] == CHAT)
        for model in MODELS
    }
    results = []
    for rate, confidence in grid:
        settings = replace(loop_settings, chat_sample_rate=rate, confidence=confidence)
        ended, back = 0, 0
        for seed in range(orders):
            chosen = _replay_chat(conversations, costs, settings, seed)
            ended += chosen[-1] == MIXTRAL
            back += returned([GPT4, *chosen])
        results.append(Sensitivity(rate, confidence, orders, ended, back))
    return results


def _replay_chat(
    conversations: Sequence[ChatConversation],
    costs: Mapping[str, float],
    settings: LoopSettings,
    seed: int,
) -> list[str]:
    rng = random.Random(seed)
    order = list(conversations)
    rng.shuffle(order)
    routing = routing_settings(settings, CHAT, settings.chat_min_quality_ratio)
    scores: dict[str, list[float]] = {model: [] for model in MODELS}
    current = GPT4
    chosen = []
    for batch in split(order, settings.rounds):
        for conversation in batch:
            for turn in (0, 1):
                if rng.random() < settings.chat_sample_rate:
                    for model in MODELS:
                        scores[model].append(conversation.grades[model][turn])
        if not scores[GPT4]:
            chosen.append(current)
            continue
        measured = [
            CandidateMetrics(model, costs[model], 0.0, scores=scores[model]) for model in MODELS
        ]
        current = decide(
            measured, routing, reference_model=GPT4, current_model=current
        ).chosen_model
        chosen.append(current)
    return chosen
