"""The real-model corpus sweep: every corpus model (benchmarks/corpus) checked by nnlint at its
library's own init on a realistic batch, in training mode and after `model.eval()` (and a few under
`torch.compile`). One row per model: time, findings by severity, crash, mutation; then a summary.

    python benchmarks/zoo.py                           # everything installed (torchvision, timm, transformers)
    python benchmarks/zoo.py --library transformers    # one library
    python benchmarks/zoo.py --family swin --family vit
    python benchmarks/zoo.py --only 'resnet*' --only hf/t5 --json out.json
    python benchmarks/zoo.py --list                    # the cases, without running them

A healthy library model should get no warning and no error (RULES.md: "Quiet on healthy models");
every one it gets is triaged in benchmarks/TRIAGE.md. Run it in the benchmark venv (README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from datetime import date

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")          # nothing may come from the hub: configs only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import corpus                                          # noqa: E402
from corpus.optim import DEFAULT as DEFAULT_OPTIMIZER, OPTIMIZERS  # noqa: E402
from corpus.runner import CheckResult, Row, check_case  # noqa: E402

SEVERITY_LETTER = {"error": "E", "warning": "W", "info": "I"}


def codes_text(result: CheckResult) -> str:
    """`E:NN002 W:NN402x5 I:NN403`, or `crash` / `-` (clean)."""
    if result.crash is not None:
        return f"CRASH({result.crash_kind})"
    counts = Counter((f.severity, f.code) for f in result.findings)
    parts = [f"{SEVERITY_LETTER[s]}:{c}" + (f"x{n}" if n > 1 else "")
             for (s, c), n in sorted(counts.items(), key=lambda kv: ("ewi".index(kv[0][0][0]), kv[0][1]))]
    return " ".join(parts) or "-"


def row_text(row: Row) -> str:
    if row.build_error:
        return f"{row.name:50s} BUILD FAILED: {row.build_error[:150]}"
    total = row.build_seconds + sum(c.seconds for c in row.checks)
    by_mode = {c.mode: c for c in row.checks}
    train = codes_text(by_mode["train"]) if "train" in by_mode else ""
    cells = [f"{row.name:50s}", f"{row.params / 1e6:7.1f}M", f"{total:6.1f}s", f"train {train}"]
    if "eval" in by_mode:
        ev = codes_text(by_mode["eval"])
        cells.append("eval =" if ev == train else f"eval {ev}")
    if "compile" in by_mode:
        c = by_mode["compile"]
        cells.append(f"compile {codes_text(c)} ({c.note})" if c.crash is None else f"compile {codes_text(c)}")
    if row.mutated:
        cells.append("MUTATED: " + "; ".join(m for c in row.checks for m in c.mutation)[:200])
    for c in row.checks:
        if c.crash is not None:
            cells.append(f"[{c.mode}] {c.crash[:160]}" + (f" ({c.note[:80]})" if c.note else ""))
    return "  ".join(cells)


def summary(rows: list[Row]) -> dict:
    """Per library: models, crashes, corpus errors, mutations, models with alarms, and alarm codes."""
    out: dict[str, dict] = {}
    for lib in sorted({r.library for r in rows}) + ["all"]:
        mine = [r for r in rows if lib in ("all", r.library)]
        alarmed = [r for r in mine if r.alarms]
        out[lib] = {
            "models": len(mine),
            "build_failed": sum(1 for r in mine if r.build_error),
            "crashes": sum(1 for r in mine if r.crashed),
            "corpus_errors": sum(1 for r in mine if any(c.crash_kind == "corpus" for c in r.checks)),
            "mutations": sum(1 for r in mine if r.mutated),
            "models_with_alarms": len(alarmed),
            "clean": sum(1 for r in mine if not r.alarms and not r.crashed and not r.build_error
                         and not any(c.crash for c in r.checks)),
            # Per code: how many models get it (any mode) at warning/error severity.
            "alarm_models_by_code": dict(sorted(Counter(
                code for r in alarmed for code in {f.code for f in r.alarms}).items())),
            "seconds": round(sum(r.build_seconds + sum(c.seconds for c in r.checks) for r in mine), 1),
        }
    return out


def summary_text(s: dict) -> str:
    lines = [f"{'library':14s} {'models':>6s} {'clean':>6s} {'alarms':>6s} {'crash':>6s} {'corpus':>6s} "
             f"{'mutated':>7s} {'build':>6s} {'time':>8s}  models with a warning/error, by code"]
    for lib, v in s.items():
        codes = ", ".join(f"{c} {n}" for c, n in v["alarm_models_by_code"].items()) or "-"
        lines.append(f"{lib:14s} {v['models']:6d} {v['clean']:6d} {v['models_with_alarms']:6d} {v['crashes']:6d} "
                     f"{v['corpus_errors']:6d} {v['mutations']:7d} {v['build_failed']:6d} {v['seconds']:7.0f}s  {codes}")
    return "\n".join(lines)


def environment() -> dict:
    import torch

    env = {"date": date.today().isoformat(), "python": platform.python_version(), "torch": torch.__version__,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"}
    for lib in ("torchvision", "timm", "transformers"):
        try:
            env[lib] = __import__(lib).__version__
        except ImportError:
            env[lib] = None
    import nnlint

    env["nnlint"] = nnlint.__version__
    return env


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", help="case name or glob (repeatable): resnet18, 'timm/vit*', hf/t5")
    p.add_argument("--family", action="append", help="family (repeatable): resnet, vit, decoder, moe, ssm ...")
    p.add_argument("--library", action="append", choices=sorted(corpus.LIBRARY_MODULES))
    p.add_argument("--fast", action="store_true", help="only the CI subset")
    p.add_argument("--modes", default="train,eval", help="comma-separated: train, eval (default both)")
    p.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, choices=sorted(OPTIMIZERS),
                   help="the optimizer handed to each check (corpus/optim.py; default AdamW with decay groups)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile checks")
    p.add_argument("--json", help="write every row (findings with messages and evidence) here")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    cases = corpus.select(corpus.all_cases(), args.only, args.family, args.library, args.fast)
    missing = corpus.missing_libraries()
    if missing:
        print(f"not installed, so not in the corpus: {', '.join(missing)}", file=sys.stderr)
    if args.list:
        for c in cases:
            print(f"{c.name:50s} {c.family:14s} {c.note}")
        print(f"{len(cases)} cases")
        return 0
    modes = tuple(m for m in args.modes.split(",") if m)
    rows: list[Row] = []
    started = time.perf_counter()
    for i, case in enumerate(cases, 1):
        row = check_case(case, modes=modes, compile=not args.no_compile, optimizer=args.optimizer)
        rows.append(row)
        print(f"[{i:3d}/{len(cases)}] {row_text(row)}", flush=True)
    s = summary(rows)
    print(f"\n{len(rows)} models in {time.perf_counter() - started:.0f}s\n" + summary_text(s))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": environment(), "summary": s, "rows": [r.to_dict() for r in rows]}, f, indent=1)
        print(f"wrote {args.json}")
    return 1 if any(r.crashed or r.mutated for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
