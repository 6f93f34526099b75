"""Persona mode: simulated models of a known quality that answer a customer-support dataset.

A persona config (`pareto simulate --config FILE`) is YAML: a mapping with a ``models`` list, or
the list alone. Each entry:

- ``name`` (required): the model name clients send.
- ``ttft_ms``, ``tokens_per_second`` (required), ``jitter`` (optional, default 0.1): latency.
- ``flaw_rate`` (required, 0 to 1): the share of the dataset's conversations that the persona
  answers with a flawed reply.
- ``dataset`` (optional): a dataset file (see `dataset`), relative to the config file's folder;
  default the bundled ``proxy/simulator/data/shop_support.jsonl``.
- ``encoding`` (optional): ``o200k_base`` or ``cl100k_base``, for token counts; default the
  encoding of ``priced_as`` when tiktoken knows that model, else ``o200k_base``.
- ``priced_as``, ``input_usd_per_million``, ``output_usd_per_million`` (optional): notes for
  people and for the demo's gateway config. The server ignores them.

Which conversations are flawed: each conversation's id is hashed with the persona's name
(SHA-256 of ``name + "\\0" + id``), the ids are ordered by that hash, and the first
``round(flaw_rate * N)`` of the dataset's N conversations get a flawed reply (which one of
them, when there are several, is chosen by another hash). So a persona answers the same
conversation the same way in every run, its share of flawed replies over the dataset is
`flaw_rate` up to rounding, and two personas with the same rate fail on different
conversations. A request that matches no conversation gets `generic.generic_reply`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.simulator.conversation import conversation_key
from proxy.simulator.dataset import BUNDLED_DATASET, Dataset, SupportConversation, load_dataset
from proxy.simulator.errors import SimulatorFileError, show
from proxy.simulator.generic import generic_reply
from proxy.simulator.latency import LatencyProfile, number_field, parse_profile, read_yaml
from proxy.simulator.models import Reply, SimulatedModel
from proxy.tokens import ENCODINGS, encoding_counter, encoding_for_model

PERSONA_KEYS = frozenset(
    {
        "name",
        "ttft_ms",
        "tokens_per_second",
        "jitter",
        "flaw_rate",
        "dataset",
        "encoding",
        "priced_as",
        "input_usd_per_million",
        "output_usd_per_million",
    }
)


@dataclass(frozen=True)
class PersonaSpec:
    """One validated entry of a persona config."""

    name: str
    profile: LatencyProfile
    flaw_rate: float
    dataset: Path
    encoding: str
    priced_as: str | None = None
    input_usd_per_million: float | None = None
    output_usd_per_million: float | None = None


def load_persona_specs(path: Path) -> list[PersonaSpec]:
    """Read and validate a persona config. Raises `SimulatorFileError` naming each problem."""
    return parse_persona_specs(read_yaml(path), path)


def parse_persona_specs(raw: object, path: Path) -> list[PersonaSpec]:
    """Validate a parsed persona config read from `path` (which relative datasets follow)."""
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"models"}, key=str)
        if unknown:
            raise SimulatorFileError(
                [f"{path}: {k}: unknown key; expected models" for k in unknown]
            )
        if "models" not in raw:
            raise SimulatorFileError([f"{path}: models: missing"])
        entries = raw["models"]
        where = "models"
    else:
        entries = raw
        where = ""
    if not isinstance(entries, list) or not entries:
        label = f"{path}: {where}" if where else str(path)
        raise SimulatorFileError(
            [f"{label}: expected a non-empty list of models, got {show(entries)}"]
        )

    problems: list[str] = []
    specs: list[PersonaSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        location = f"{path}: {where}[{index}]"
        spec = _parse_entry(entry, location, path.parent, problems)
        if spec is None:
            continue
        if spec.name in seen:
            problems.append(
                f"{location}.name: {show(spec.name)} is already the name of "
                f"{where}[{seen[spec.name]}]"
            )
            continue
        seen[spec.name] = index
        specs.append(spec)
    if problems:
        raise SimulatorFileError(problems)
    return specs


def _parse_entry(
    entry: object, where: str, folder: Path, problems: list[str]
) -> PersonaSpec | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping with name, ttft_ms, ..., got {show(entry)}")
        return None
    before = len(problems)
    for key in sorted(set(entry) - PERSONA_KEYS, key=str):
        problems.append(
            f"{where}.{key}: unknown key; expected one of {', '.join(sorted(PERSONA_KEYS))}"
        )

    name = entry.get("name")
    if "name" not in entry:
        problems.append(f"{where}.name: missing")
    elif not isinstance(name, str) or not name.strip() or name != name.strip():
        problems.append(
            f"{where}.name: expected a non-empty string without surrounding spaces, "
            f"got {show(name)}"
        )
    profile = parse_profile(
        {k: v for k, v in entry.items() if k in ("ttft_ms", "tokens_per_second", "jitter")},
        where,
        problems,
    )
    flaw_rate = number_field(entry, "flaw_rate", where, problems, minimum=0.0, maximum=1.0)
    priced_as = _optional_text(entry, "priced_as", where, problems)
    input_price = number_field(
        entry, "input_usd_per_million", where, problems, minimum=0.0, default=None
    )
    output_price = number_field(
        entry, "output_usd_per_million", where, problems, minimum=0.0, default=None
    )
    dataset_text = _optional_text(entry, "dataset", where, problems)
    encoding = _optional_text(entry, "encoding", where, problems)
    if encoding is not None and encoding not in ENCODINGS:
        problems.append(
            f"{where}.encoding: expected one of {', '.join(ENCODINGS)}, got {show(encoding)}"
        )

    if len(problems) > before:
        return None
    assert isinstance(name, str)
    assert profile is not None
    assert flaw_rate is not None
    dataset = BUNDLED_DATASET if dataset_text is None else folder / Path(dataset_text).expanduser()
    return PersonaSpec(
        name=name,
        profile=profile,
        flaw_rate=flaw_rate,
        dataset=dataset,
        encoding=encoding or encoding_for_model(priced_as),
        priced_as=priced_as,
        input_usd_per_million=input_price,
        output_usd_per_million=output_price,
    )


def _optional_text(entry: dict[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{key}: expected a non-empty string, got {show(value)}")
        return None
    return value


def flaw_hash(persona: str, conversation_id: str, salt: str = "") -> int:
    """Hash the persona name and conversation id (SHA-256) into a 64-bit number."""
    digest = hashlib.sha256(f"{salt}{persona}\0{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def flawed_ids(persona: str, ids: Iterable[str], flaw_rate: float) -> frozenset[str]:
    """Return the ids that get a flawed reply from a persona: `round(flaw_rate * N)` of N ids."""
    ordered = sorted(
        ids, key=lambda conversation_id: (flaw_hash(persona, conversation_id), conversation_id)
    )
    count = math.floor(flaw_rate * len(ordered) + 0.5)
    return frozenset(ordered[:count])


class Persona(SimulatedModel):
    """A simulated model that replies to a dataset with a stable share of flawed replies."""

    kind = "persona"

    def __init__(self, spec: PersonaSpec, dataset: Dataset, seed: int = 0) -> None:
        super().__init__(spec.name, spec.profile, encoding_counter(spec.encoding), seed)
        self.spec = spec
        self.dataset = dataset
        self.flawed_ids = flawed_ids(
            spec.name, (c.id for c in dataset.conversations), spec.flaw_rate
        )

    def answer(self, conversation: SupportConversation) -> tuple[str, bool]:
        """This persona's reply to a dataset conversation, and whether it is a flawed one."""
        if conversation.id not in self.flawed_ids:
            return conversation.expected, False
        choice = flaw_hash(self.name, conversation.id, salt="reply/") % len(conversation.flawed)
        return conversation.flawed[choice].reply, True

    def reply(self, messages: Sequence[Mapping[str, Any]]) -> Reply:
        conversation = self.dataset.match(conversation_key(messages))
        if conversation is None:
            return Reply(generic_reply(messages))
        return Reply(self.answer(conversation)[0])

    def describe(self) -> str:
        spec = self.spec
        profile, total = spec.profile, len(self.dataset.conversations)
        parts = [
            f"persona, ttft {profile.ttft_ms:g} ms, {profile.tokens_per_second:g} tokens/s",
            f"flaw_rate {spec.flaw_rate:g} ({len(self.flawed_ids)}/{total} flawed)",
        ]
        if spec.priced_as:
            price = ""
            prices = (spec.input_usd_per_million, spec.output_usd_per_million)
            if prices[0] is not None and prices[1] is not None:
                price = f" (${prices[0]:.2f} / ${prices[1]:.2f} per 1M tokens)"
            parts.append(f"priced as {spec.priced_as}{price}")
        parts.append(f"tokens {self.counter.name}")
        return ", ".join(parts)


def build_personas(specs: Sequence[PersonaSpec], seed: int = 0) -> list[Persona]:
    """Load each persona's dataset (once per file) and build the personas."""
    datasets: dict[Path, Dataset] = {}
    problems: list[str] = []
    personas = []
    for spec in specs:
        dataset = datasets.get(spec.dataset.resolve())
        if dataset is None:
            try:
                dataset = load_dataset(spec.dataset)
            except SimulatorFileError as exc:
                problems.extend(exc.problems)
                continue
            datasets[spec.dataset.resolve()] = dataset
        personas.append(Persona(spec, dataset, seed))
    if problems:
        raise SimulatorFileError(list(dict.fromkeys(problems)))
    return personas
