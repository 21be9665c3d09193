"""What a fix run did, diagnostic by diagnostic: applied, failed, skipped (unsafe), not fixable.

Shared by the runtime fixer (nnlint.fix) and the source fixer (`nnlint fix FILE`): both work in rounds
(fix what the check reports, re-check, fix what the fixes revealed) and judge a fix by the re-check: a
fix whose diagnostic is still reported afterwards failed, whatever the applier said.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from nnlint.diagnostics import SEVERITY_RANK, Diagnostic, Fix

APPLIED, FAILED, SKIPPED_UNSAFE, NOT_FIXABLE = "applied", "failed", "skipped_unsafe", "not_fixable"


Key = tuple


def diagnostic_key(d: Diagnostic) -> Key:
    """A diagnostic's identity across a re-check: rule, module and line (two functional calls in one
    forward are two findings on one module). The source fixer maps the lines of an edited file back to
    the original's before comparing (source.line_key)."""
    return (d.code, d.module, d.location.line if d.location is not None else None)


@dataclass
class FixOutcome:
    diagnostic: Diagnostic
    status: str                   # applied | failed | skipped_unsafe | not_fixable
    detail: str = ""              # what was done, or why not, or what to do by hand
    key: Optional[Key] = field(default=None, repr=False)   # set by the Ledger that records it

    @property
    def fix(self) -> Optional[Fix]:
        return self.diagnostic.fix

    def line(self) -> str:
        """`NN203 act1: <detail>` for the summary."""
        d = self.diagnostic
        where = d.module or ("input" if "input" in d.evidence else "model")
        return f"{d.code} {where}: {self.detail}"


@dataclass
class FixResult:
    """`result.applied` / `.failed` / `.skipped_unsafe` / `.not_fixable` are FixOutcomes; `result.report`
    is the check after fixing (what is left)."""

    applied: list[FixOutcome] = field(default_factory=list)
    failed: list[FixOutcome] = field(default_factory=list)
    skipped_unsafe: list[FixOutcome] = field(default_factory=list)
    not_fixable: list[FixOutcome] = field(default_factory=list)
    report: Any = None            # nnlint.report.Report after the fixes
    rounds: int = 0

    @property
    def ok(self) -> bool:
        return self.report is None or self.report.ok

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    def summary(self) -> str:
        """A few lines for a person: what was fixed, what failed, what is left to do by hand."""
        lines = []
        sections = ((self.applied, "fixed"), (self.failed, "failed (the re-check still reports it)"),
                    (self.skipped_unsafe, "not applied: unsafe (changes the architecture); allow with --unsafe-fixes / unsafe=True"),
                    (self.not_fixable, "not fixable automatically"))
        for outcomes, title in sections:
            if outcomes:
                lines.append(f"{title}:")
                lines += [f"  {o.line()}" for o in outcomes]
        if not lines:
            lines.append("nothing to fix")
        return "\n".join(lines)


class Ledger:
    """The outcomes of a multi-round run, one per diagnostic key (the latest word wins).

    `key_of` gives a diagnostic's key in the current report; the source fixer swaps it for one that maps
    the lines of the edited text back to the original file's each time the text changes."""

    def __init__(self, key_of: Callable[[Diagnostic], Key] = diagnostic_key):
        self.outcomes: dict[Key, FixOutcome] = {}
        self.key_of = key_of

    def record(self, outcome: FixOutcome) -> None:
        if outcome.key is None:
            outcome.key = self.key_of(outcome.diagnostic)
        self.outcomes[outcome.key] = outcome

    def seen(self, d: Diagnostic) -> bool:
        return self.key_of(d) in self.outcomes

    def verify(self, applied_now: Iterable[FixOutcome], report, key_of: Optional[Callable] = None) -> None:
        """A fix applied this round whose diagnostic the re-check still reports has failed."""
        key_of = key_of or self.key_of
        remaining = {key_of(d): d for d in report.diagnostics}
        for outcome in applied_now:
            if outcome.status == APPLIED and outcome.key in remaining:
                still = remaining[outcome.key]
                outcome.status = FAILED
                outcome.detail = f"{outcome.detail}; still reported after the fix: {still.message}"

    def result(self, report, rounds: int, key_of: Optional[Callable] = None) -> FixResult:
        """Applied and failed fixes stay listed; skipped and not-fixable ones only while still reported."""
        key_of = key_of or self.key_of
        remaining = {key_of(d) for d in report.diagnostics}
        result = FixResult(report=report, rounds=rounds)
        for outcome in self.outcomes.values():
            if outcome.status == APPLIED:
                result.applied.append(outcome)
            elif outcome.status == FAILED:
                result.failed.append(outcome)
            elif outcome.key in remaining:
                (result.skipped_unsafe if outcome.status == SKIPPED_UNSAFE else result.not_fixable).append(outcome)
        # a diagnostic no fix addressed, still there at the end (e.g. revealed in the last round)
        known = set(self.outcomes)
        for d in report.diagnostics:
            if key_of(d) not in known:
                result.not_fixable.append(FixOutcome(d, NOT_FIXABLE, manual_advice(d), key=key_of(d)))
                known.add(key_of(d))
        return result


def triage(diagnostics: Iterable[Diagnostic], ledger: Ledger, *, unsafe: bool, known_kinds) -> list[Diagnostic]:
    """Record the diagnostics this round cannot fix (no fix, unsafe, unknown kind) and return the rest,
    in the kinds' order, then the most severe first: when two fixes of equal priority disagree about one
    parameter (a Xavier re-init and a measured std for the same layer), the first one's init wins
    (specs.resolve)."""
    todo = []
    for d in diagnostics:
        if ledger.seen(d):
            continue
        if d.fix is None:
            ledger.record(FixOutcome(d, NOT_FIXABLE, manual_advice(d)))
        elif d.fix.kind not in known_kinds:
            ledger.record(FixOutcome(d, NOT_FIXABLE, f"no automatic fix for {d.fix.kind!r}; by hand: {d.fix.description}"))
        elif not d.fix.safe and not unsafe:
            ledger.record(FixOutcome(d, SKIPPED_UNSAFE, d.fix.description))
        else:
            todo.append(d)
    todo.sort(key=lambda d: (known_kinds[d.fix.kind].order, SEVERITY_RANK.get(d.severity, 9), d.code))
    return todo


def manual_advice(d: Diagnostic) -> str:
    """A finding with no fix: what its message says to do, by hand."""
    return f"by hand: {d.message}"
