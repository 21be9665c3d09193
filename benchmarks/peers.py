"""The peer benchmark (issue 13, item 3): every case of the bug gallery (benchmarks/gallery) through
nnlint and through torchtest2, torch-audit and neural_net_checklist, each used as its README uses it,
side by side.

    nice python benchmarks/peers.py [--json out.json] [--only NAME,NAME] [--tools nnlint,torchtest2]

Needs the peers installed next to nnlint (a separate virtualenv; see benchmarks/PEERS.md).

Scoring. nnlint finds a bug when it reports the case's expected code (any severity); the module it
names is checked apart. A peer finds a bug when one of its checks flags the bug case and not the
case's healthy twin (the same setup without the bug): a check that fires on both is noise, not a
find. On healthy cases every alarm is a false alarm (nnlint: warning/error; torchtest2: FAIL/WARN;
torch-audit: WARN/ERROR except its TA2xx performance hints; neural_net_checklist: a failed assert).
Loop cases run a real 2-step training loop: nnlint under `nnlint.guard`, torch-audit under
`autopatch`; the one-batch peers do not apply to them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # the repository root: `benchmarks.gallery`

from benchmarks.gallery import Case, all_cases  # noqa: E402
from benchmarks.peer_tools import TOOLS, Outcome  # noqa: E402

PEERS = ("torchtest2", "torch-audit", "neural_net_checklist")


@dataclass
class Verdict:
    """One cell of the table. found: the bug was found (None: not a scored bug row); alarm: a
    false alarm on a healthy case (None: not a healthy row); module_ok: nnlint named the module."""

    cell: str
    found: Optional[bool] = None
    alarm: Optional[bool] = None
    module_ok: Optional[bool] = None


def scored(case: Case) -> bool:
    return case.expect is not None and not case.out_of_scope


# ---------------------------------------------------------------------------------------------
# Verdicts


def nnlint_verdict(case: Case, out: Outcome) -> Verdict:
    if case.healthy:
        return healthy_verdict(out)
    if out.status == "crash":
        return Verdict(f"crash ({out.detail[:60]})", found=False if scored(case) else None)
    if case.out_of_scope:
        return Verdict(f"out of scope [{listed(out.flags)}]")
    code = case.expect.code
    if not code:
        return Verdict(f"no code yet [{listed(out.flags)}]", found=False)
    hits = [f for f in out.findings if f["code"] == code]
    if not hits:
        return Verdict(f"MISS [{listed(out.flags)}]" + (f" ({out.detail})" if out.detail else ""), found=False)
    named = [f for f in hits if case.expect.names(f["module"])]
    shown = (named or hits)[0]
    where = shown["module"] or "''"
    if named:
        return Verdict(f"{code} {shown['severity']} @{where}", found=True, module_ok=True)
    return Verdict(f"{code} @{where}: wrong module", found=True, module_ok=False)


def peer_verdict(case: Case, out: Outcome, twin: Optional[Outcome]) -> Verdict:
    if out.status == "n/a":
        return Verdict("n/a")
    if case.healthy:
        return healthy_verdict(out)
    twin_flags = set(twin.flags) if twin is not None and twin.status != "n/a" else set()
    new = sorted(set(out.flags) - twin_flags)
    score = True if scored(case) else None   # out-of-scope rows show what the peer says, unscored
    if new:
        return Verdict(f"found: {listed(new)}", found=score)
    miss = False if score else None
    if out.status == "crash":
        return Verdict(f"crash ({out.detail[:60]})", found=miss)
    also = sorted(set(out.flags) & twin_flags)
    return Verdict(f"miss (twin too: {listed(also)})" if also else "miss", found=miss)


def healthy_verdict(out: Outcome) -> Verdict:
    if out.status == "crash":
        return Verdict(f"crash ({out.detail[:60]})", alarm=False)
    if out.flags:
        return Verdict(f"ALARM: {listed(out.flags)}", alarm=True)
    return Verdict("ok", alarm=False)


def listed(names, limit: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" +{len(names) - limit}" if len(names) > limit else "")


# ---------------------------------------------------------------------------------------------
# Running


def run_all(cases: list[Case], tools: list[str], log=print) -> dict[str, dict[str, Outcome]]:
    outcomes: dict[str, dict[str, Outcome]] = {}
    for i, case in enumerate(cases, 1):
        outcomes[case.name] = {}
        for tool in tools:
            start = time.perf_counter()
            out = TOOLS[tool](case)
            out.seconds = round(time.perf_counter() - start, 2)
            outcomes[case.name][tool] = out
        log(f"[{i}/{len(cases)}] {case.name}: " + "; ".join(
            f"{t} {o.status} {listed(o.flags)}" for t, o in outcomes[case.name].items()), file=sys.stderr)
    return outcomes


def load_outcomes(path: str) -> dict[str, dict[str, Outcome]]:
    """The outcomes a `--json` run wrote, to re-score or re-render without running the tools again."""
    with open(path) as f:
        saved = json.load(f)
    fields = set(Outcome.__dataclass_fields__)
    return {c["name"]: {t: Outcome(**{k: v for k, v in o.items() if k in fields}) for t, o in c["tools"].items()}
            for c in saved["cases"]}


def with_twins(selected: list[Case], everything: list[Case]) -> list[Case]:
    """The selected cases plus the twins they are scored against."""
    names = {c.name for c in selected} | {c.twin for c in selected if c.twin}
    return [c for c in everything if c.name in names]


def verdicts(cases: list[Case], outcomes, tools: list[str]) -> dict[str, dict[str, Verdict]]:
    table = {}
    for case in cases:
        row = {}
        for tool in tools:
            out = outcomes[case.name][tool]
            if tool == "nnlint":
                row[tool] = nnlint_verdict(case, out)
            else:
                twin = outcomes.get(case.twin, {}).get(tool) if case.twin else None
                row[tool] = peer_verdict(case, out, twin)
        table[case.name] = row
    return table


# ---------------------------------------------------------------------------------------------
# Totals and output


def totals(cases: list[Case], table, outcomes, tools: list[str]) -> dict:
    bugs = [c for c in cases if scored(c)]
    healthy = [c for c in cases if c.healthy]
    out = {"cases": len(cases), "bugs": len(bugs), "healthy": len(healthy),
           "out_of_scope": sum(1 for c in cases if c.out_of_scope), "tools": {}}
    for tool in tools:
        cells = [table[c.name][tool] for c in bugs]
        out["tools"][tool] = {
            "found": sum(1 for v in cells if v.found),
            "false_alarms": sum(1 for c in healthy if table[c.name][tool].alarm),
            "crashes": sum(1 for c in cases if outcomes[c.name][tool].status == "crash"),
            "not_applicable": sum(1 for c in cases if outcomes[c.name][tool].status == "n/a"),
        }
    out["by_category"] = {cat: {"bugs": sum(1 for c in bugs if c.category == cat),
                                **{t: sum(1 for c in bugs if c.category == cat and table[c.name][t].found) for t in tools}}
                          for cat in dict.fromkeys(c.category for c in bugs)}
    # healthy setups a tool stays quiet on ("ok": a crash is not quiet), and those it cannot take (n/a)
    out["quiet_by_category"] = {cat: {"healthy": sum(1 for c in healthy if c.category == cat),
                                      **{t: {"quiet": sum(1 for c in healthy if c.category == cat and table[c.name][t].cell == "ok"),
                                             "n/a": sum(1 for c in healthy if c.category == cat and table[c.name][t].cell == "n/a")}
                                         for t in tools}}
                                for cat in dict.fromkeys(c.category for c in healthy)}
    if "nnlint" in tools:
        out["tools"]["nnlint"]["right_module"] = sum(1 for c in bugs if table[c.name]["nnlint"].module_ok)
        out["nnlint_missed_peer_found"] = [
            c.name for c in bugs if not table[c.name]["nnlint"].found
            and any(table[c.name][p].found for p in tools if p in PEERS)]
    return out


def print_table(cases: list[Case], table, tools: list[str], markdown: bool = False) -> None:
    """A terminal table with wrapped cells, or (markdown) one line per case for PEERS.md."""
    from tabulate import tabulate

    rows = []
    for case in cases:
        expect = "healthy" if case.healthy else ("out of scope" if case.out_of_scope else
                                                 f"{case.expect.code or '(none)'} {module_text(case)}")
        rows.append([case.name, case.category + (" (loop)" if case.loop else ""), expect,
                     *[table[case.name][t].cell for t in tools]])
    print(tabulate(rows, headers=["case", "category", "expected", *tools], tablefmt="github",
                   maxcolwidths=None if markdown else 38))


def module_text(case: Case) -> str:
    module = case.expect.module
    if module is None:
        return "(any)"
    return "@" + "/".join(m or "''" for m in ((module,) if isinstance(module, str) else module))


def print_totals(summary: dict) -> None:
    print(f"\n{summary['cases']} cases: {summary['bugs']} bugs scored, {summary['healthy']} healthy, "
          f"{summary['out_of_scope']} out of nnlint's scope")
    for tool, t in summary["tools"].items():
        extra = f" ({t['right_module']} on the right module)" if "right_module" in t else ""
        print(f"  {tool:<22} found {t['found']:>3}/{summary['bugs']}{extra}; false alarms {t['false_alarms']}/"
              f"{summary['healthy']}; crashes {t['crashes']}; not applicable {t['not_applicable']}")
    print("  bugs found per category: " + "; ".join(
        f"{cat} ({row['bugs']}): " + " / ".join(str(v) for k, v in row.items() if k != "bugs")
        for cat, row in summary["by_category"].items()) + f"  [{' / '.join(summary['tools'])}]")
    if summary.get("quiet_by_category"):
        print("  healthy setups quiet per category: " + "; ".join(
            f"{cat} ({row['healthy']}): " + " / ".join(f"{v['quiet']}" + (" (n/a)" if v["n/a"] == row["healthy"] else "")
                                                         for k, v in row.items() if k != "healthy")
            for cat, row in summary["quiet_by_category"].items()) + f"  [{' / '.join(summary['tools'])}]")
    if summary.get("nnlint_missed_peer_found"):
        print(f"  found by a peer, missed by nnlint: {', '.join(summary['nnlint_missed_peer_found'])}")


def as_json(cases: list[Case], outcomes, table, summary) -> dict:
    return {"totals": summary, "cases": [{
        "name": c.name, "category": c.category, "source": c.source, "loop": c.loop, "healthy": c.healthy,
        "twin": c.twin, "out_of_scope": c.out_of_scope, "note": c.note,
        "expect": None if c.expect is None else {"code": c.expect.code, "module": c.expect.module},
        "tools": {t: {**asdict(o), "verdict": asdict(table[c.name][t])} for t, o in outcomes[c.name].items()},
    } for c in cases]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the full results here")
    parser.add_argument("--only", help="comma-separated case names (their twins run too)")
    parser.add_argument("--from-json", help="re-score the outcomes of an earlier --json run instead of running")
    parser.add_argument("--markdown", action="store_true", help="one line per row (for PEERS.md)")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated: " + ", ".join(TOOLS))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)   # small models; the machine's 2 cores are shared
    tools = args.tools.split(",")
    everything = all_cases()
    cases = everything if not args.only else with_twins(
        [c for c in everything if c.name in args.only.split(",")], everything)
    if args.from_json:
        outcomes = load_outcomes(args.from_json)
        cases = [c for c in cases if c.name in outcomes]
        tools = [t for t in tools if all(t in outcomes[c.name] for c in cases)]
    else:
        outcomes = run_all(cases, tools)
    table = verdicts(cases, outcomes, tools)
    summary = totals(cases, table, outcomes, tools)
    print_table(cases, table, tools, markdown=args.markdown)
    print_totals(summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(as_json(cases, outcomes, table, summary), f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
