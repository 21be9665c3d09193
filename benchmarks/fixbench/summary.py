"""The done-means of issue 15, read off the results: `--unsafe-fixes` beats the naive hand fix on mean
accuracy, and no fixed model trains worse than its broken original; with the tables the README keeps
(one row per fault, one per model with what the fixer did)."""
from __future__ import annotations

from statistics import mean
from typing import Optional

from benchmarks.fixbench.arms import grouped
from benchmarks.fixbench.report import pct, render
from benchmarks.fixbench.train import clearly_worse

FIXED = ("fix", "unsafe")
COMPARED = ("before", "fix", "unsafe", "naive")


def _best(r, name: str):
    arm = r.arms.get(name)
    return arm.grid.best if arm is not None and arm.grid is not None else None


def fair(results: list) -> list:
    """The models every compared arm was trained on (not a twin, not skipped, no arm in error)."""
    return [r for r in results if r.case.kind != "twin" and not r.skipped and all(_best(r, a) for a in COMPARED)]


def verdict(results: list, seeds: int) -> list[str]:
    rs = fair(results)
    if not rs:
        return ["no model was trained in every arm"]
    means = {a: mean(_best(r, a).accuracy for r in rs) for a in COMPARED}
    drops = sorted(((_best(r, a).accuracy - _best(r, "before").accuracy, r, a) for r in rs for a in FIXED),
                   key=lambda t: t[0])
    worst, wr, wa = drops[0]
    clearly = [f"{r.case.name}[{r.case.task}] {a}" for _, r, a in drops
               if clearly_worse(_best(r, a), _best(r, "before"), seeds)]
    lost = [f"{r.case.name}[{r.case.task}]" for r in rs if clearly_worse(_best(r, "unsafe"), _best(r, "naive"), seeds)]
    beats = means["unsafe"] > means["naive"]
    return [
        f"unsafe fix {pct(means['unsafe'])} vs naive repair {pct(means['naive'])} mean accuracy over {len(rs)} models "
        f"({'beats' if beats else 'LOSES TO'} it by {pct(abs(means['unsafe'] - means['naive']))} points; broken "
        f"{pct(means['before'])}, safe fix {pct(means['fix'])})",
        f"worst fixed minus broken: {100 * worst:+.1f} points ({wr.case.name}[{wr.case.task}], {wa}); fixed arms "
        f"clearly worse than broken (> 2 points and 2 standard errors): {len(clearly)}"
        + (f" ({', '.join(clearly)})" if clearly else ""),
        f"unsafe clearly under naive: {len(lost)} of {len(rs)}" + (f" ({', '.join(lost)})" if lost else ""),
    ]


def _fault(r) -> str:
    return r.case.spec.mutation.name if r.case.spec is not None else "fixtures"


def fault_table(results: list) -> list[str]:
    """Mean accuracy per planted fault (and for the fixtures), per task."""
    groups: dict[tuple, list] = {}
    for r in fair(results):
        groups.setdefault((_fault(r), r.case.task), []).append(r)
    rows = []
    for (fault, task), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] == "fixtures", kv[0])):
        cells = [pct(mean(_best(r, a).accuracy for r in rs)) for a in COMPARED]
        under = sum(clearly_worse(_best(r, "unsafe"), _best(r, "naive"), len(_best(r, "naive").runs)) for r in rs)
        rows.append((fault, task, str(len(rs)), *cells, str(under)))
    return render(("fault", "task", "models", "broken", "safe fix", "unsafe fix", "naive", "unsafe clearly < naive"),
                  rows, markdown=True)


def _acc(at) -> str:
    return f"{pct(at.accuracy)} ±{pct(at.std)} @{at.lr:g}" if at is not None else "-"


def did(r) -> str:
    """What the fixer did: the safe fix's rules, then what the unsafe run applied beyond it."""
    fix, unsafe = r.arms.get("fix"), r.arms.get("unsafe")
    safe = grouped(fix.applied) if fix is not None else "-"
    if unsafe is None or unsafe.applied == (fix.applied if fix else None):
        more = "unsafe: the same"
    else:
        more = f"unsafe: {grouped(unsafe.applied)}"
    left = unsafe.left if unsafe is not None and unsafe.left not in ("-", "") else ""
    return f"safe: {safe}; {more}" + (f"; left {left}" if left else "")


def model_table(results: list) -> list[str]:
    rows = []
    for r in fair(results):
        rows.append((r.case.name, r.case.task, r.findings.replace(",", " "),
                     *[_acc(_best(r, a)) for a in COMPARED], did(r).replace("|", "/")))
    return render(("model", "task", "found", "broken", "safe fix", "unsafe fix", "naive", "what the fixer did"),
                  rows, markdown=True)


def twins_hurt(results: list, seeds: int) -> list[str]:
    """Healthy twins that a fix changed and that then trained clearly worse (not a done-means item: the
    twins are not broken, but a fix that hurts a healthy model is a false repair)."""
    out = []
    for t in results:
        if t.case.kind != "twin" or t.skipped:
            continue
        before: Optional[object] = _best(t, "before")
        for a in FIXED:
            after = _best(t, a)
            if t.arms[a].applied and after is not None and before is not None and after is not before \
                    and clearly_worse(after, before, seeds):
                out.append(f"{t.case.spec.shape}[{t.case.task}] {a} ({grouped(t.arms[a].applied)}): "
                           f"{pct(before.accuracy)} -> {pct(after.accuracy)}")
    return out
