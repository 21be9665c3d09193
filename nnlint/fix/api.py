"""nnlint.fix(model, batch): check, fix in memory, re-check, until nothing fixable is left.

    result = nnlint.fix(model, batch)
    result.applied, result.failed, result.skipped_unsafe, result.not_fixable   # FixOutcomes
    result.report                                                             # the check after fixing

It works in rounds (at most `max_rounds`): a fix can reveal a finding the first check could not see
(a dead layer behind an all-zero one), so each re-check's new fixable findings are fixed in turn. A
fix whose finding the re-check still reports is failed, not applied. Unsafe fixes (they change the
architecture: activation swaps, input normalization) only run with `unsafe=True`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from nnlint.fix.result import APPLIED, NOT_FIXABLE, FixOutcome, FixResult, Ledger, triage


def fix(
    model,
    batch,
    *,
    unsafe: bool = False,
    select: Optional[Iterable[str]] = None,
    ignore: Optional[Iterable[str]] = None,
    target: Any = None,
    loss_fn: Optional[Callable] = None,
    optimizer: Any = None,
    config=None,
    train_transform: Any = None,
    source_origins: Optional[dict] = None,
    max_rounds: int = 3,
) -> FixResult:
    """Fix the model in place where it can; returns what was applied, what failed and the re-check."""
    from nnlint.api import check
    from nnlint.fix.runtime import RUNTIME_APPLIERS, RuntimeContext, apply_round

    select = list(select) if select is not None else None
    ignore = list(ignore) if ignore is not None else None

    def run_check():
        return check(model, batch, target=target, loss_fn=loss_fn, optimizer=optimizer, select=select,
                     ignore=ignore, config=config, train_transform=train_transform, source_origins=source_origins)

    ledger = Ledger()
    report = run_check()
    ctx = RuntimeContext(model, batch)
    rounds = 0
    while rounds < max_rounds:
        todo = triage(report.diagnostics, ledger, unsafe=unsafe, known_kinds=RUNTIME_APPLIERS)
        if not todo:
            break
        rounds += 1
        results = apply_round([d.fix for d in todo], ctx)
        outcomes = []
        for d, (ok, detail) in zip(todo, results):
            # an applier that cannot act on this model: not fixable automatically, with its reason
            outcome = FixOutcome(d, APPLIED if ok else NOT_FIXABLE, detail if ok else f"{detail}; by hand: {d.fix.description}")
            ledger.record(outcome)
            outcomes.append(outcome)
        report = run_check()
        ledger.verify(outcomes, report)
    return ledger.result(report, rounds)
