"""nnlint.fix(model, batch): check, fix in memory, re-check, until nothing fixable is left.

    result = nnlint.fix(model, batch)
    result.applied, result.failed, result.skipped_unsafe, result.not_fixable   # FixOutcomes
    result.report                                                             # the check after fixing

It works in rounds (at most `max_rounds`): a fix can reveal a finding the first check could not see
(a dead layer behind an all-zero one), so each re-check's new fixable findings are fixed in turn. A
round is kept only when the model is better as a whole (no new error, fewer severity-weighted findings)
and each fix's finding is gone; otherwise it is undone (fix/rollback.py) and applied again without the
fixes that failed, one at a time when it is unclear which one made the model worse. A failed finding
gets the next step of its escalation ladder in the next round. Unsafe fixes (they change the
architecture: activation swaps, inserted norms, input normalization) only run with `unsafe=True`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from nnlint.fix.result import APPLIED, FAILED, NOT_FIXABLE, FixOutcome, FixResult, Ledger, regression, triage


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
    max_rounds: int = 6,
    causal: Optional[bool] = None,
    frozen: Optional[Iterable[str]] = None,
    loop: Optional[Callable] = None,
) -> FixResult:
    """Fix the model in place where it can; returns what was applied, what failed and the re-check.
    `causal`, `frozen` and `loop` are nnlint.check's (what the probes need to know), passed to every check."""
    from nnlint.api import check
    from nnlint.fix.kind import all_kinds
    from nnlint.fix.runtime import RuntimeContext

    select = list(select) if select is not None else None
    ignore = list(ignore) if ignore is not None else None

    def run_check():
        return check(model, batch, target=target, loss_fn=loss_fn, optimizer=optimizer, select=select,
                     ignore=ignore, config=config, train_transform=train_transform, source_origins=source_origins,
                     causal=causal, frozen=frozen, loop=loop)

    ledger = Ledger()
    report = run_check()
    ctx = RuntimeContext(model, batch)
    rounds = 0
    while rounds < max_rounds:
        todo = triage(report.diagnostics, ledger, unsafe=unsafe, known_kinds=all_kinds())
        if not todo:
            break
        rounds += 1
        report = _fix_round(todo, ctx, ledger, run_check, report)
    return ledger.result(report, rounds)


def _fix_round(todo, ctx, ledger: Ledger, run_check, before):
    """Apply one round's fixes and re-check. Kept when every fix's finding is gone and the model is
    better as a whole; a fix whose finding stays is undone and the rest applied again without it; when
    the model is worse, the fixes are tried one at a time to keep those that help. Returns the report of
    the model as it is left."""
    candidates = list(todo)
    while candidates:
        outcomes, report, error = _apply(candidates, ctx, ledger, run_check)
        applied = [o for o in outcomes if o.status == APPLIED]
        if error is not None:   # a fix broke the model's forward: undo, and find which one alone
            ctx.snapshot.restore()
            return _one_at_a_time(applied, ctx, ledger, run_check, before, error)
        if report is None:
            return before        # nothing could be applied; the model is unchanged
        ledger.verify(outcomes, report)
        failed = [o for o in outcomes if o.status == FAILED]
        worse = regression(before, report)
        if not failed and worse is None:
            return report
        ctx.snapshot.restore()
        for o in failed:
            o.detail += "; undone, the model keeps the other fixes only"
        kept = [o for o in applied if o.status == APPLIED]
        if worse is not None and not failed:
            return _one_at_a_time(kept, ctx, ledger, run_check, before)
        candidates = [o.diagnostic for o in kept]
    return before


def _apply(diagnostics, ctx, ledger: Ledger, run_check):
    """(outcomes, the re-check or None when nothing was applied, the exception a broken forward raised)."""
    from nnlint.fix.rollback import ModelSnapshot
    from nnlint.fix.runtime import apply_round

    ctx.snapshot = ModelSnapshot.take(ctx.model)
    results = apply_round([d.fix for d in diagnostics], ctx)
    outcomes = []
    for d, (ok, detail) in zip(diagnostics, results):
        # an applier that cannot act on this model: not fixable automatically, with its reason
        outcome = FixOutcome(d, APPLIED if ok else NOT_FIXABLE, detail if ok else f"{detail}; by hand: {d.fix.description}")
        ledger.record(outcome)
        outcomes.append(outcome)
    if not any(o.status == APPLIED for o in outcomes):
        return outcomes, None, None
    try:
        return outcomes, run_check(), None
    except Exception as exc:
        return outcomes, None, exc


def _one_at_a_time(applied: list[FixOutcome], ctx, ledger: Ledger, run_check, before, error=None):
    """Each fix alone, in turn, on the model as the previous ones left it: kept when its finding is gone
    and the model is better as a whole, else undone and failed with the reason."""
    current = before
    for outcome in applied:
        outcomes, report, exc = _apply([outcome.diagnostic], ctx, ledger, run_check)
        tried = outcomes[0]
        if tried.status != APPLIED:
            continue
        if exc is not None:
            ctx.snapshot.restore()
            ledger.fail(tried, f"the model fails to run after it ({type(exc).__name__}: {exc}), so it was undone")
            continue
        ledger.verify(outcomes, report)
        worse = regression(current, report) if tried.status == APPLIED else None
        if tried.status == APPLIED and worse is None:
            current = report
            continue
        ctx.snapshot.restore()
        if worse is not None:
            ledger.fail(tried, f"{worse}, so it was undone")
    return current
