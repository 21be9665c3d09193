"""nnlint.fix(model, batch): check, fix in memory, re-check, until nothing fixable is left.

    result = nnlint.fix(model, batch)
    result.applied, result.failed, result.skipped_unsafe, result.not_fixable   # FixOutcomes
    result.report                                                             # the check after fixing

It works in rounds (at most `max_rounds`): a fix can reveal a finding the first check could not see
(a dead layer behind an all-zero one), so each re-check's new fixable findings are fixed in turn. A
fix whose finding the re-check still reports is failed and rolled back: the round is undone and run
again without it (fix/rollback.py), as the source fixer leaves a failed fix out of the file. Unsafe
fixes (they change the architecture: activation swaps, input normalization) only run with `unsafe=True`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from nnlint.fix.result import APPLIED, FAILED, NOT_FIXABLE, FixOutcome, FixResult, Ledger, triage


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
    frozen: Optional[Iterable[str]] = None,
    loop: Optional[Callable] = None,
) -> FixResult:
    """Fix the model in place where it can; returns what was applied, what failed and the re-check.
    `frozen` and `loop` are nnlint.check's (what the probes need to know), passed to every check."""
    from nnlint.api import check
    from nnlint.fix.kind import all_kinds
    from nnlint.fix.runtime import RuntimeContext

    select = list(select) if select is not None else None
    ignore = list(ignore) if ignore is not None else None

    def run_check():
        return check(model, batch, target=target, loss_fn=loss_fn, optimizer=optimizer, select=select,
                     ignore=ignore, config=config, train_transform=train_transform, source_origins=source_origins,
                     frozen=frozen, loop=loop)

    ledger = Ledger()
    report = run_check()
    ctx = RuntimeContext(model, batch)
    rounds = 0
    while rounds < max_rounds:
        todo = triage(report.diagnostics, ledger, unsafe=unsafe, known_kinds=all_kinds())
        if not todo:
            break
        rounds += 1
        report = _fix_round(todo, ctx, ledger, run_check)
    return ledger.result(report, rounds)


def _fix_round(todo, ctx, ledger: Ledger, run_check):
    """Apply one round's fixes and re-check. While some fix failed (its finding is still reported),
    undo the round and apply it again without the failed ones, so the model keeps only fixes that
    worked. Returns the report of the model as it is left."""
    from nnlint.fix.rollback import ModelSnapshot
    from nnlint.fix.runtime import apply_round

    while True:
        ctx.snapshot = ModelSnapshot.take(ctx.model)
        results = apply_round([d.fix for d in todo], ctx)
        outcomes = []
        for d, (ok, detail) in zip(todo, results):
            # an applier that cannot act on this model: not fixable automatically, with its reason
            outcome = FixOutcome(d, APPLIED if ok else NOT_FIXABLE, detail if ok else f"{detail}; by hand: {d.fix.description}")
            ledger.record(outcome)
            outcomes.append(outcome)
        try:
            report = run_check()
        except Exception as exc:   # a fix broke the model's forward: undo, and find which one alone
            ctx.snapshot.restore()
            return _one_at_a_time([o for o in outcomes if o.status == APPLIED], exc, ctx, ledger, run_check)
        ledger.verify(outcomes, report)
        failed = [o for o in outcomes if o.status == FAILED]
        if not failed:
            return report
        ctx.snapshot.restore()
        for o in failed:
            o.detail += "; undone, the model keeps the other fixes only"
        todo = [o.diagnostic for o in outcomes if o.status == APPLIED]
        if not todo:
            return run_check()


def _one_at_a_time(applied: list[FixOutcome], exc: Exception, ctx, ledger: Ledger, run_check):
    if len(applied) == 1:
        outcome = applied[0]
        outcome.status = FAILED
        outcome.detail += f"; the model fails to run after it ({type(exc).__name__}: {exc}), so it was undone"
        return run_check()
    report = None
    for outcome in applied:
        report = _fix_round([outcome.diagnostic], ctx, ledger, run_check)
    return report
