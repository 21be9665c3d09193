"""What a fix run did, diagnostic by diagnostic: applied, failed, skipped (unsafe), not fixable.

Shared by the runtime fixer (nnlint.fix) and the source fixer (`nnlint fix FILE`): both work in rounds
(fix what the check reports, re-check, fix what the fixes revealed) and judge a fix by the re-check: a
fix whose diagnostic is still reported afterwards failed, whatever the applier said; and so did a fix
after which the model is worse as a whole (`regression`: a new error, or findings that do not drop).
A finding whose fix failed gets the next step of its escalation ladder (Diagnostic.ladder: a re-init,
then an activation swap, then an inserted normalization) in the next round, while steps are left.
"""
from __future__ import annotations

import dataclasses
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
    diagnostic: Diagnostic        # its .fix is the step that was tried
    status: str                   # applied | failed | skipped_unsafe | not_fixable
    detail: str = ""              # what was done, or why not, or what to do by hand
    key: Optional[Key] = field(default=None, repr=False)   # set by the Ledger that records it
    step: int = 0                 # which step of the finding's escalation ladder (set by the Ledger)
    steps: int = 1                # how many steps the ladder has
    earlier: list[str] = field(default_factory=list)   # why the earlier steps did not hold
    why_failed: str = ""          # in a few words, for the next step's `earlier`

    @property
    def fix(self) -> Optional[Fix]:
        return self.diagnostic.fix

    def line(self) -> str:
        """`NN203 act1: <detail>` for the summary; an escalated fix says which step held and why the
        earlier ones did not."""
        d = self.diagnostic
        where = d.module or ("input" if "input" in d.evidence else "model")
        text = f"{d.code} {where}: {self.detail}"
        if self.step:
            text += f" (step {self.step + 1} of {self.steps}; before: {'; '.join(self.earlier)})"
        return text


# How much a finding weighs when the fixer judges whether a model got better as a whole.
SEVERITY_WEIGHT = {"error": 9, "warning": 3, "info": 1}


def score(report) -> int:
    return sum(SEVERITY_WEIGHT.get(d.severity, 1) for d in report.diagnostics)


def regression(before, after, key_before: Callable[[Diagnostic], Key] = diagnostic_key,
               key_after: Optional[Callable[[Diagnostic], Key]] = None) -> Optional[str]:
    """Why the model is not better as a whole after a fix, or None: it must gain no error it did not
    have, and its severity-weighted findings must drop. (The source fixer keys the findings of an edited
    file by their lines mapped back to the original's: one key function per side.)"""
    key_after = key_after or key_before
    had = {key_before(d) for d in before.diagnostics if d.severity == "error"}
    new = [d for d in after.diagnostics if d.severity == "error" and key_after(d) not in had]
    if new:
        shown = ", ".join(f"{d.code} on {d.module or 'the model'}" for d in new[:3])
        return f"it made the model worse: new error{'s' if len(new) > 1 else ''} {shown}" + (
            f" and {len(new) - 3} more" if len(new) > 3 else "")
    if score(after) >= score(before):
        return f"the model is no better as a whole (findings weigh {score(before)} before, {score(after)} after)"
    return None


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
        self.trying: dict[Key, tuple[int, int]] = {}   # key -> (ladder step being tried, ladder length)

    def record(self, outcome: FixOutcome) -> None:
        if outcome.key is None:
            outcome.key = self.key_of(outcome.diagnostic)
        step, steps = self.trying.get(outcome.key, (0, max(len(outcome.diagnostic.ladder), 1)))
        prior = self.outcomes.get(outcome.key)
        if step and prior is not None and prior is not outcome:
            tried = prior.fix.description if prior.fix else "the previous step"
            # the same step tried again (its round undone, then retried alone) is not an earlier step
            outcome.earlier = prior.earlier + ([f"{tried}: {prior.why_failed or prior.detail}"]
                                               if prior.step < step else [])
        outcome.step, outcome.steps = step, steps
        self.outcomes[outcome.key] = outcome

    def fail(self, outcome: FixOutcome, why: str, short: str = "") -> None:
        """A fix that was applied did not hold (its finding stays, or the model got worse)."""
        outcome.status = FAILED
        outcome.detail = f"{outcome.detail}; {why}"
        outcome.why_failed = short or why

    def seen(self, d: Diagnostic) -> bool:
        return self.key_of(d) in self.outcomes

    def verify(self, applied_now: Iterable[FixOutcome], report, key_of: Optional[Callable] = None) -> None:
        """A fix applied this round whose diagnostic the re-check still reports has failed."""
        key_of = key_of or self.key_of
        remaining = {key_of(d): d for d in report.diagnostics}
        for outcome in applied_now:
            if outcome.status == APPLIED and outcome.key in remaining:
                self.fail(outcome, f"still reported after the fix: {remaining[outcome.key].message}",
                          "its finding was still reported")

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
    """The findings to fix this round, each with the step of its ladder to try as its `.fix`: the first
    for a new finding, the next for one whose last step failed. Records those this round cannot fix
    (no fix, unsafe, unknown kind). A last-resort step waits while anything less invasive is left to try
this round (FixKind.last_resort). Sorted in the kinds' order, then the most severe first: when two fixes
    of equal priority disagree about one parameter (a Xavier re-init and a measured std for the same
    layer), the first one's init wins (specs.resolve)."""
    todo = []
    for d in diagnostics:
        key = ledger.key_of(d)
        prior = ledger.outcomes.get(key)
        ladder = d.ladder
        step = 0
        if prior is not None:
            if prior.status != FAILED or prior.step + 1 >= len(ladder):
                continue
            step = prior.step + 1
        ledger.trying[key] = (step, max(len(ladder), 1))
        fix = ladder[step] if ladder else None
        attempt = d if fix is d.fix else dataclasses.replace(d, fix=fix)
        if fix is None:
            ledger.record(FixOutcome(d, NOT_FIXABLE, manual_advice(d)))
        elif fix.kind not in known_kinds:
            ledger.record(FixOutcome(attempt, NOT_FIXABLE, f"no automatic fix for {fix.kind!r}; by hand: {fix.description}"))
        elif not fix.safe and not unsafe:
            ledger.record(FixOutcome(attempt, SKIPPED_UNSAFE, fix.description))
        else:
            todo.append(attempt)
    if any(not known_kinds[d.fix.kind].last_resort for d in todo):
        for d in [d for d in todo if known_kinds[d.fix.kind].last_resort]:
            del ledger.trying[ledger.key_of(d)]    # not tried yet: the same step comes back next round
        todo = [d for d in todo if not known_kinds[d.fix.kind].last_resort]
    todo.sort(key=lambda d: (known_kinds[d.fix.kind].order, SEVERITY_RANK.get(d.severity, 9), d.code))
    return todo


def manual_advice(d: Diagnostic) -> str:
    """A finding with no fix: what its message says to do, by hand."""
    return f"by hand: {d.message}"
