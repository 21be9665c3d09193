"""The benchmark's output: a table per model, the fix logs, the aggregates, the healthy twins and the loss
list with its diagnoses. Accuracy cells are `mean ±std @lr` over the seeds at the arm's own best
learning rate; `=fix` marks an arm that is the same model as another (trained once)."""
from __future__ import annotations

import math
from statistics import mean
from typing import Iterable, Optional

from benchmarks.fixbench.arms import ARMS, grouped
from benchmarks.fixbench.diagnose import losses
from benchmarks.fixbench.train import clearly_worse

COLUMNS = ("model", "task", "found") + ARMS + ("twin",)


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def cell(r, name: str) -> str:
    arm = r.arms.get(name)
    if arm is None:
        return ""
    if arm.grid is None:
        return "error" if arm.error else "-"
    best = arm.grid.best
    text = f"{pct(best.accuracy)}"
    if len(best.runs) > 1:
        text += f" ±{pct(best.std)}"
    text += f" @{best.lr:g}"
    if best.loss != best.loss:
        text += " nan"
    if arm.same_as:
        text += f" ={arm.same_as}"
    return text


def twin_accuracy(r, twins: dict) -> str:
    if r.case.spec is None:
        return ""
    t = twins.get((r.case.spec.shape, r.case.task))
    if t is None or "before" not in t.arms or t.arms["before"].grid is None:
        return ""
    return pct(t.arms["before"].grid.best.accuracy)


def table(results: list, twins: dict, markdown: bool) -> list[str]:
    rows = [tuple([r.case.name, r.case.task, r.findings] + [cell(r, a) for a in ARMS] + [twin_accuracy(r, twins)])
            for r in results if not r.skipped]
    return render(COLUMNS, rows, markdown)


def render(columns, rows, markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + \
               ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "-" * (sum(widths) + 2 * len(widths))]
    return lines + ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]


def logs(results: list) -> list[str]:
    lines = []
    for r in results:
        if r.skipped:
            lines.append(f"{r.case.name} [{r.case.task}]: skipped ({r.skipped})")
            continue
        lines.append(f"{r.case.name} [{r.case.task}] found {r.findings}  ({r.seconds:.0f} s)")
        for name in ("fix", "unsafe", "source"):
            arm = r.arms.get(name)
            if arm is None:
                continue
            if arm.error:
                lines.append(f"  {name}: ERROR {arm.error}")
                continue
            if name == "unsafe" and r.arms.get("fix") and arm.log == r.arms["fix"].log:
                lines.append("  unsafe: as fix")
                continue
            lines.append(f"  {name}: left {arm.left}" + ("" if arm.log else "; nothing to fix"))
            lines += [f"    {line}" for line in arm.log]
    return lines


def _best(r, name: str) -> Optional[float]:
    arm = r.arms.get(name)
    return arm.grid.best.accuracy if arm is not None and arm.grid is not None else None


def aggregates(results: list, seeds: int) -> list[str]:
    done = [r for r in results if not r.skipped]
    lines = []
    groups = [("all", done), ("generated", [r for r in done if r.case.kind == "generated"]),
              ("fixtures", [r for r in done if r.case.kind == "fixture"])]
    for task in sorted({r.case.task for r in done}):
        groups.append((f"task {task}", [r for r in done if r.case.task == task]))
    lines.append("mean test accuracy at each arm's best lr (over the models where every arm ran):")
    for label, rs in groups:
        fair = [r for r in rs if all(_best(r, a) is not None for a in ("before", "fix", "unsafe", "naive"))]
        if not fair:
            continue
        cells = [f"{a} {pct(mean(_best(r, a) for r in fair))}" for a in ("before", "fix", "unsafe", "naive")]
        with_source = [r for r in fair if _best(r, "source") is not None]
        if with_source:
            cells.append(f"source {pct(mean(_best(r, 'source') for r in with_source))} "
                         f"(unsafe on the same {len(with_source)}: {pct(mean(_best(r, 'unsafe') for r in with_source))})")
        lines.append(f"  {label:16} ({len(fair):2} models): " + ", ".join(cells))
    lines.append("counts (clearly = by more than 2 points and 2 standard errors of the difference over the seeds):")
    for name in ("fix", "unsafe", "source"):
        worse = [r.case.name + f"[{r.case.task}]" for r in done if _clearly(r, name, "before", seeds)]
        lines.append(f"  {name} clearly worse than before: {len(worse)}" + (f" ({', '.join(worse)})" if worse else ""))
    pairs = [(r, _best(r, "unsafe"), _best(r, "naive")) for r in done]
    pairs = [(r, u, n) for r, u, n in pairs if u is not None and n is not None]
    under = [r for r, u, n in pairs if u < n]
    clearly_under = [r.case.name + f"[{r.case.task}]" for r in under if _clearly(r, "unsafe", "naive", seeds)]
    clearly_over = [r for r, u, n in pairs if _clearly(r, "naive", "unsafe", seeds)]
    lines.append(f"  unsafe < naive (mean): {len(under)} of {len(pairs)}; clearly: {len(clearly_under)}"
                 + (f" ({', '.join(clearly_under)})" if clearly_under else ""))
    lines.append(f"  unsafe clearly > naive: {len(clearly_over)} of {len(pairs)}")
    rescued = [r for r in done if _clearly(r, "before", "unsafe", seeds)]
    lines.append(f"  unsafe clearly better than before: {len(rescued)} of {len(pairs)}")
    return lines


def _clearly(r, worse: str, better: str, seeds: int) -> bool:
    a, b = r.arms.get(worse), r.arms.get(better)
    return bool(a and b and a.grid and b.grid and clearly_worse(a.grid.best, b.grid.best, seeds))


def twin_lines(twins: Iterable, seeds: int) -> list[str]:
    lines, changed_count, checked, hurt = [], 0, 0, []
    for t in twins:
        if t.skipped:
            lines.append(f"  {t.case.spec.shape} [{t.case.task}]: skipped ({t.skipped})")
            continue
        checked += 1
        before = t.arms["before"].grid
        changed = [f"{n}: {grouped(t.arms[n].applied)}" for n in ("fix", "unsafe") if t.arms[n].applied]
        acc = pct(before.best.accuracy) if before else "-"
        after = t.arms["unsafe"].grid or t.arms["fix"].grid
        trained = f" -> {pct(after.best.accuracy)} after it" if changed and after is not None else ""
        if changed:
            changed_count += 1
            if after is not None and before is not None and clearly_worse(after.best, before.best, seeds):
                hurt.append(f"{t.case.spec.shape}[{t.case.task}]")
                trained += " (clearly worse)"
        lines.append(f"  {t.case.spec.shape:9} [{t.case.task:6}] healthy {acc:5} @{before.best.lr if before else math.nan:g}; found {t.findings}; "
                     + (f"CHANGED by {'; '.join(changed)}{trained}" if changed else "left unchanged by fix and fix --unsafe"))
    lines.append(f"  {changed_count} of {checked} healthy twins changed by a fix; clearly worse after it: {len(hurt)}"
                 + (f" ({', '.join(hurt)})" if hurt else ""))
    return lines


def loss_list(results: list, seeds: int) -> list[str]:
    lines = []
    for r in results:
        if r.skipped or not losses(r, seeds):
            continue
        accs = ", ".join(f"{a} {cell(r, a)}" for a in ARMS if a in r.arms)
        lines.append(f"* {r.case.name} [{r.case.task}] found {r.findings}: {accs}")
        unsafe = r.arms.get("unsafe")
        if unsafe is not None:
            lines.append(f"    unsafe applied: {grouped(unsafe.applied)}")
        lines += [f"    {d}" for d in r.diagnosis]
        for name, grid in r.alternatives.items():
            best = grid.best
            lines.append(f"    tried by hand: {name}: {pct(best.accuracy)} ±{pct(best.std)} @{best.lr:g}")
    return lines or ["  none"]
