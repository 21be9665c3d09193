"""What the probes cost on the peer gallery (benchmarks/gallery): every one-batch case checked by
`nnlint.check` with every rule (the dependence probes and the first-update probe run by default),
with the probes' rules ignored (`ignore=`: no probe runs), and with `steps=50`; each probe's own time
is read from its `run` (a wrapper counts it), and set against the traced step (train forward,
backward, eval forward: `report.phases`) and a plain training step of the same setup.

    nice python benchmarks/probe_cost.py [--json out.json]

The gallery's models are tiny, so the traced step is bound by instrumentation, not compute: these
ratios bound what the probes add on small models; benchmarks/overhead.py measures the check on
ResNet-50 and GPT-2 shapes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # `benchmarks.gallery`

PROBE_RULES = {"batch_mixing": "NN701", "ignored_input": "NN702", "causal_leak": "NN703", "update_ratio": "NN804"}
ALL_PROBE_RULES = ["NN701", "NN702", "NN703", "NN804", "NN805", "NN806"]
TRACED = ("train forward", "backward", "eval forward")


def count_probe_time(spent: dict) -> None:
    """Wrap every registered probe's run so that the seconds it takes add up in `spent`."""
    from nnlint.probes.base import all_probes

    for name, p in all_probes().items():
        run = type(p).run

        def timed_run(self, ctx, run=run, name=name):
            start = time.perf_counter()
            try:
                return run(self, ctx)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        type(p).run = timed_run


def check(case, **kwargs):
    import nnlint

    setup = case.build()
    declared = {k: case.options[k] for k in ("frozen", "causal") if k in case.options}
    start = time.perf_counter()
    report = nnlint.check(setup.model, setup.batch, target=setup.target, loss_fn=setup.loss_fn,
                          optimizer=setup.optimizer, progress=False, **declared, **kwargs)
    return time.perf_counter() - start, report


def plain_step(case) -> float:
    from benchmarks.gallery.case import default_optimizer, standard_step

    setup = case.build()
    optimizer = setup.optimizer or default_optimizer(setup.model)
    setup.model.train()
    times = []
    for _ in range(4):
        start = time.perf_counter()
        standard_step(setup, optimizer, 0)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def measure(case, spent: dict) -> dict:
    check(case)   # warm-up
    no_probes = min(check(case, ignore=ALL_PROBE_RULES)[0] for _ in range(3))
    spent.clear()
    default, report = check(case)
    per = {name: spent.get(name, 0.0) for name in PROBE_RULES}
    default = min([default] + [check(case)[0] for _ in range(2)])
    spent.clear()
    steps, stepped = check(case, steps=50)
    try:
        step = plain_step(case)
    except Exception:   # the case's loss raises (the bug): no plain step to compare with
        step = float("nan")
    return {"name": case.name, "default": default, "no_probes": no_probes, "steps50": steps,
            "traced": sum(v for k, v in report.phases.items() if k in TRACED),
            "probes_phase": report.phases.get("probes", 0.0), "steps_probes_phase": stepped.phases.get("probes", 0.0),
            "plain_step": step, **per, "train_steps": spent.get("train_steps", 0.0)}


def summary(rows: list[dict]) -> list[str]:
    def total(key):
        return sum(r[key] for r in rows)

    def median_ratio(key, over):
        return statistics.median(r[key] / r[over] for r in rows if r[over] and r[over] == r[over])

    lines = [f"{len(rows)} one-batch cases: check {total('default'):.2f} s with every rule, {total('no_probes'):.2f} s "
             f"with the probes' rules ignored ({total('default') / total('no_probes'):.2f}x; median per case "
             f"{median_ratio('default', 'no_probes'):.2f}x); steps=50 {total('steps50'):.2f} s",
             f"traced step {total('traced'):.2f} s in all; the probes phase {total('probes_phase'):.2f} s "
             f"({total('probes_phase') / total('traced'):.2f}x the traced step; median per case "
             f"{median_ratio('probes_phase', 'traced'):.2f}x)"]
    for name in (*PROBE_RULES, "train_steps"):
        lines.append(f"  {name:<14} {total(name):6.2f} s ({total(name) / total('traced'):.2f}x the traced step; "
                     f"median {statistics.median(r[name] for r in rows) * 1000:.1f} ms per case, "
                     f"{median_ratio(name, 'traced'):.2f}x)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write every case's times here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    from benchmarks.gallery import all_cases
    from nnlint.errors import NNLintError

    torch.set_num_threads(1)
    spent: dict = {}
    count_probe_time(spent)
    rows = []
    for case in all_cases():
        if case.loop or case.out_of_scope:
            continue
        try:
            rows.append(measure(case, spent))
        except NNLintError as exc:   # e.g. the numpy round trip without numpy installed
            print(f"{case.name}: skipped, the check cannot run here ({exc})", file=sys.stderr)
            continue
        print(case.name, {k: round(v, 4) for k, v in rows[-1].items() if k != "name"}, file=sys.stderr, flush=True)
    print("\n".join(summary(rows)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
