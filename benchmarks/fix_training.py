"""Does `nnlint fix` rescue training? Train every faulty fixture and a generated family of broken MLPs
and CNNs as built, after `nnlint.fix` (safe fixes), after `nnlint.fix(unsafe=True)`, after the naive
hand fix (ReLU + Kaiming everywhere, the reference to beat) and after the source fixer (`nnlint fix FILE
--unsafe-fixes`), each at its own best learning rate, and compare held-out accuracy.

    nice python benchmarks/fix_training.py [--quick] [--markdown] [--jobs 2] [--only sigmoid,exp]
        [--tasks digits,xor] [--fixture-tasks digits] [--no-fixtures] [--no-generated] [--source generated]
        [--steps 300] [--lrs 0.003,0.01,0.03,0.1] [--seeds 3] [--lr-on-mean] [--adam] [--emit DIR] [--save FILE]

Models (benchmarks/fixbench): every fixture under fixtures/ with an `# expect: NNxxx` marker that fits
the task (float (N, F) or (N, C, H, W) inputs, a (batch, classes) output), and the generated family
(fixbench/mutations.py: 11 faults planted in MLPs of depth 3/6/11 x width 5/16/64 and CNNs of depth
3/6 x 4/16 channels), each with its healthy twin (checked: fix must leave it alone; trained as built:
the ceiling). Tasks (fixbench/tasks.py): digits, and a synthetic XOR-like task on which a linear model
sits at chance. Training (fixbench/train.py): SGD momentum 0.9 (or Adam), batch 64, every learning rate
of the grid, 3 seeds; the seed orders the data, the init is fixed per model. The rate is chosen on seed
0 (the other seeds run at it), or with --lr-on-mean on the mean over all seeds (1.8x the training). A
fixed arm "clearly" loses when it is under by more than 2 points and 2 standard errors over the seeds.

--quick: 1 seed, 2 learning rates, a subset (about 2 minutes on two busy cores). The full run is 190
cases; measured on 2026-12-01 on two shared cores, `--steps 150 --lrs 0.01,0.03,0.1` took about 75
minutes of wall time at load 12-16 (split over several invocations: --only, --tasks, --no-fixtures,
--no-generated; --save rewrites the finished cases after every case, --load re-renders them) and 18
minutes in one invocation at load 3-5, so give it a quiet machine. benchmarks/README.md ("Fixes that rescue training") has the results and how they were run.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fixbench import report, summary  # noqa: E402
from benchmarks.fixbench.cases import Case, faulty_fixtures, run_case  # noqa: E402
from benchmarks.fixbench.models import family, twins  # noqa: E402
from benchmarks.fixbench.train import Protocol  # noqa: E402

QUICK_GENERATED = {"xor": ["mlp11x5_sigmoid", "mlp6x16_exp", "mlp3x16_dead", "mlp11x16_deep", "mlp3x64_huge",
                           "cnn3x4_raw"],
                   "digits": ["mlp11x5_tanh", "mlp6x64_tiny"]}
QUICK_FIXTURES = ["init_zero_all_layers.py", "activation_sigmoid_hidden.py"]


def cases_of(args) -> list[Case]:
    only = [o for o in args.only.split(",") if o]

    def wanted(name: str) -> bool:
        return not only or any(o in name for o in only)

    cases = []
    tasks = [t for t in args.tasks.split(",") if t]
    if not args.no_generated:
        specs = [s for s in family() if wanted(s.name)]
        for task in tasks:
            chosen = [s for s in specs if not args.quick or s.name in QUICK_GENERATED.get(task, [])]
            cases += [Case(task, spec=s, source=args.source in ("generated", "all")) for s in chosen]
            cases += [Case(task, spec=t, twin=True) for t in twins(chosen)]
    if not args.no_fixtures:
        names = QUICK_FIXTURES if args.quick else faulty_fixtures(only)
        for task in [t for t in args.fixture_tasks.split(",") if t and t in tasks]:
            cases += [Case(task, fixture=n, source=args.source == "all") for n in names if wanted(n)]
    return cases


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)   # small models: one thread each, and --jobs processes side by side
    sys.path.insert(0, str(ROOT))


def _run(job):
    case, folder, protocol, diagnose = job
    try:
        return run_case(case, folder, protocol, diagnose)
    except Exception as exc:   # one broken case must not lose the others' hours
        from benchmarks.fixbench.cases import CaseResult

        result = CaseResult(case)
        result.skipped = f"crashed: {type(exc).__name__}: {exc}"[:200]
        return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 learning rates, a subset of the models")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lrs", default="", help="the learning-rate grid (default: 0.003,0.01,0.03,0.1; Adam 1e-4..3e-3)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per learning rate (default 3; --quick 1)")
    parser.add_argument("--adam", action="store_true", help="Adam instead of SGD with momentum 0.9")
    parser.add_argument("--lr-on-mean", action="store_true",
                        help="choose each arm's learning rate on the mean over all seeds (every seed at every rate), not on seed 0")
    parser.add_argument("--only", default="", help="comma-separated parts of model names")
    parser.add_argument("--tasks", default="digits,xor")
    parser.add_argument("--fixture-tasks", default="digits,xor", help="the tasks the fixtures are trained on")
    parser.add_argument("--no-fixtures", action="store_true")
    parser.add_argument("--no-generated", action="store_true")
    parser.add_argument("--source", choices=("none", "generated", "all"), default="generated",
                        help="which models also go through the source fixer (nnlint fix FILE --unsafe-fixes)")
    parser.add_argument("--no-diagnose", action="store_true", help="skip the diagnostics of the losses")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--emit", default="", help="keep the generated model files in this folder")
    parser.add_argument("--save", default="", help="pickle the results (plain data: CaseResult per case) to this file")
    parser.add_argument("--load", default="", help="print the report of results saved with --save; train nothing")
    args = parser.parse_args(argv)
    if args.load:
        import pickle

        saved = pickle.loads(Path(args.load).read_bytes())
        _print_report(saved["results"], args, saved["protocol"], saved["wall"], None)
        return
    default_lrs = "1e-4,3e-4,1e-3,3e-3" if args.adam else "0.003,0.01,0.03,0.1"
    lrs = tuple(float(v) for v in (args.lrs or ("0.01,0.03" if args.quick and not args.adam else default_lrs)).split(","))
    if args.quick and args.adam and not args.lrs:
        lrs = (3e-4, 1e-3)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    protocol = Protocol(steps=args.steps, lrs=lrs, seeds=seeds, adam=args.adam, on_mean=args.lr_on_mean)
    cases = cases_of(args)
    folder = Path(args.emit).resolve() if args.emit else Path(tempfile.mkdtemp(prefix="fixbench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{len(cases)} cases; {protocol.steps} steps of {protocol.optimizer}, batch {protocol.batch}, "
          f"learning rates {list(lrs)}, {seeds} seed(s) each; {args.jobs} job(s); models in {folder}", flush=True)
    started, cpu = time.time(), time.process_time()
    jobs = [(c, folder, protocol, not args.no_diagnose) for c in cases]
    # the slow ones first, so the workers finish together: CNNs, then the deep MLPs
    order = sorted(range(len(jobs)), key=lambda i: -_cost(cases[i]))
    results = [None] * len(jobs)
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs, initializer=_worker_init) as pool:
            for done, (i, r) in enumerate(pool.imap_unordered(_indexed, [(i, jobs[i]) for i in order]), 1):
                results[i] = r
                _progress(done, len(jobs), r, started)
                _save_partial(args.save, results, protocol, started)
    else:
        _worker_init()
        for done, i in enumerate(order, 1):
            results[i] = _run(jobs[i])
            _progress(done, len(jobs), results[i], started)
            _save_partial(args.save, results, protocol, started)
    wall = time.time() - started
    _save_partial(args.save, results, protocol, started)
    _print_report(results, args, protocol, wall, folder)
    print(f"\n({wall:.0f} s wall, {time.process_time() - cpu + _children_cpu():.0f} s CPU)")
    if not args.emit:
        shutil.rmtree(folder, ignore_errors=True)


def _save_partial(save: str, results: list, protocol, started: float) -> None:
    """The results so far (the finished cases), rewritten after every case: a run stopped early keeps
    them; --load reads them like a finished run's."""
    if not save:
        return
    import pickle

    done = [r for r in results if r is not None]
    Path(save).write_bytes(pickle.dumps({"protocol": protocol, "results": done, "wall": time.time() - started}))


def _indexed(item):
    i, job = item
    return i, _run(job)


def _cost(case: Case) -> float:
    if case.fixture:
        return 3.0
    spec = case.spec
    return (4.0 if spec.family == "cnn" else 1.0) * spec.depth * (spec.width ** 0.5) * (0.3 if case.twin else 1.0)


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _progress(done: int, total: int, r, started: float) -> None:
    if r.skipped:
        print(f"[{done}/{total}] {r.case.name} [{r.case.task}]: skipped ({r.skipped})", flush=True)
        return
    cells = "  ".join(f"{a} {report.cell(r, a)}" for a in r.arms)
    print(f"[{done}/{total} {time.time() - started:.0f}s] {r.case.name} [{r.case.task}] {r.findings}: {cells}", flush=True)


def _print_report(results, args, protocol, wall, folder) -> None:
    main_results = [r for r in results if r.case.kind != "twin"]
    twin_results = {(r.case.spec.shape, r.case.task): r for r in results if r.case.kind == "twin"}
    tasks = {r.case.task: r.task_title for r in results if r.task_title}
    h = "### " if args.markdown else ""
    print(f"\n{h}Test accuracy (%) at each arm's best learning rate: mean ±std over {protocol.seeds} seed(s) @lr")
    print("tasks: " + "; ".join(f"{k} = {v}" for k, v in tasks.items()))
    print(f"{protocol.steps} steps of {protocol.optimizer}, batch {protocol.batch}, grid {list(protocol.lrs)} "
          f"(chosen on {'the mean over the seeds' if protocol.on_mean else 'seed 0'}); "
          "before = as built; fix = nnlint.fix (safe); unsafe = nnlint.fix(unsafe=True); naive = every hidden "
          "activation ReLU + Kaiming, nothing else; source = nnlint fix FILE --unsafe-fixes; twin = the healthy "
          "twin as built; =arm: the same model as that arm\n")
    for line in report.table(main_results, twin_results, args.markdown):
        print(line)
    print(f"\n{h}Aggregates")
    for line in report.aggregates(main_results, protocol.seeds):
        print(line)
    print(f"\n{h}Healthy twins")
    for line in report.twin_lines(twin_results.values(), protocol.seeds):
        print(line)
    print(f"\n{h}Losses, with the diagnosis")
    for line in report.loss_list(main_results, protocol.seeds):
        print(line)
    print(f"\n{h}Done means (issue 15): unsafe beats naive on mean accuracy; no fixed model worse than broken")
    for line in summary.verdict(main_results, protocol.seeds):
        print(f"  {line}")
    hurt = summary.twins_hurt(results, protocol.seeds)
    print("  healthy twins a fix made clearly worse: " + (f"{len(hurt)}: " + "; ".join(hurt) if hurt else "none"))
    if args.markdown:
        print(f"\n{h}Per fault (mean accuracy over the models at each arm's best learning rate)\n")
        for line in summary.fault_table(main_results):
            print(line)
        print(f"\n{h}Per model (mean ±std over the seeds @ the learning rate chosen)\n")
        for line in summary.model_table(main_results):
            print(line)
    print(f"\n{h}What each fix did (+ applied, x failed, u skipped as unsafe, - not fixable)")
    for line in report.logs(main_results):
        print(line)


if __name__ == "__main__":
    main()
