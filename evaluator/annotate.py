"""Attach criteria, checks, tags and recorded scores to cases that are already stored.

Sampled cases arrive with the reference model's answer as their expected output and nothing
else. An operator who knows what a good answer must contain writes it down afterwards, in the
same file format that `pareto cases import` reads, and annotates the stored cases with it: a
row annotates the case whose messages match its own (the same content hash, computed before
and after the policy's redaction, since sampled cases are stored redacted).

Only the fields a row sets are changed; the stored messages and expected output are kept. A
case whose criteria, checks or scores change loses its cached judgments, so the next run
judges its outputs again under the new rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evaluator.cases import CaseRow, content_hash
from evaluator.redaction import Redactor
from evaluator.tables import BenchmarkCase, Judgment

# Fields whose change makes a stored judgment of the case stale.
JUDGED_FIELDS = ("criteria", "checks", "scores")
ANNOTATED_FIELDS = (*JUDGED_FIELDS, "tags")


@dataclass
class AnnotateResult:
    """Counts of one annotation pass, and the indexes of the rows that matched no case."""

    updated: int = 0
    unchanged: int = 0
    unmatched: list[int] = field(default_factory=list)


def row_hashes(row: CaseRow, redactor: Redactor | None) -> set[str]:
    """Return the content hashes under which a stored case can match `row`."""
    hashes = {content_hash(row.messages)}
    if redactor is not None:
        hashes.add(content_hash(redactor.redact_messages(row.messages)))
    return hashes


def annotate_cases(
    engine: Engine, policy: str, rows: Sequence[CaseRow], redactor: Redactor | None = None
) -> AnnotateResult:
    """Copy each row's criteria, checks, tags and scores onto the policy's matching case.

    Runs in one transaction. A row that matches no stored case is counted in `unmatched` by
    its index in `rows`; it is not imported.
    """
    result = AnnotateResult()
    with Session(engine) as session:
        stored = session.exec(select(BenchmarkCase).where(BenchmarkCase.policy == policy)).all()
        by_hash = {case.content_hash: case for case in stored}
        stale: list[int] = []
        for index, row in enumerate(rows):
            case = next((by_hash[h] for h in row_hashes(row, redactor) if h in by_hash), None)
            if case is None:
                result.unmatched.append(index)
                continue
            changed = _apply(case, row)
            if not changed:
                result.unchanged += 1
                continue
            result.updated += 1
            session.add(case)
            if changed & set(JUDGED_FIELDS) and case.id is not None:
                stale.append(case.id)
        if stale:
            session.execute(delete(Judgment).where(col(Judgment.case_id).in_(stale)))
        session.commit()
    return result


def _apply(case: BenchmarkCase, row: CaseRow) -> set[str]:
    """Set the row's non-empty annotation fields on `case`; return the names that changed."""
    changed: set[str] = set()
    for name in ANNOTATED_FIELDS:
        value = getattr(row, name)
        if value is None or value == getattr(case, name):
            continue
        setattr(case, name, value)
        changed.add(name)
    return changed
