"""Overhead of `nnlint.check` against a plain training step (forward, loss, backward) of the same model
and batch, measured in the same run, with every default rule on. Prints ratios, where the check's time
goes (its phases), and the fixed cost a small model pays. Targets (issue 17): at most 1.15x time and
1.1x peak memory on each model; under 20 ms of fixed cost.

    python benchmarks/overhead.py [--device cpu|cuda] [--repeats 5]
                                  [--models gpt2,bert,llama,vit,resnet50,convnext_tiny] [--no-memory]

Models (benchmarks/models.py): Hugging Face GPT-2 (6 layers), BERT-base, a 6-layer Llama and ViT-B/16
built from their configs, torchvision ResNet-50 and ConvNeXt-T; where transformers or torchvision are
missing, ResNet-50 and GPT-2 fall back to local copies and the others are skipped. `llama-1b`
(TinyLlama's 1.1B shape, 1x128 tokens) is the big-model case: run it on its own.

Timing: one warm-up of each, then plain and check interleaved, median of the repeats. Memory: each
measured in a fresh subprocess (peak RSS above the RSS after building model and batch on the CPU;
torch.cuda.max_memory_allocated on CUDA), so one run's allocator cache does not flatter the other.
Fixed cost: the check of a 3-layer, 16-unit MLP on 8 samples minus its plain step, median of 20.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def plain_step(case):
    from nnlint.trace.batch import call_model

    model = case.model
    model.train()
    started = time.perf_counter()
    out = call_model(model, case.batch)
    if case.loss_fn is not None:
        loss = case.loss_fn(out, case.target)
    elif getattr(out, "loss", None) is not None:
        loss = out.loss
    else:
        loss = out.float().pow(2).mean()
    forward = time.perf_counter() - started
    loss.backward()
    model.zero_grad(set_to_none=True)
    return forward   # the rest of the step is its backward


def check_step(case):
    import nnlint

    return nnlint.check(case.model, case.batch, progress=False, **case.check_arguments())


def sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_case(case, device, repeats):
    plain_step(case)
    check_step(case)        # warm-up: allocator, lazy imports, kernels
    sync(device)
    times = {"plain": [], "check": []}
    phases: dict[str, list[float]] = {}
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        forward = plain_step(case)
        sync(device)
        times["plain"].append(time.perf_counter() - t0)
        phases.setdefault("plain forward", []).append(forward)
        phases.setdefault("plain backward", []).append(times["plain"][-1] - forward)
        t0 = time.perf_counter()
        report = check_step(case)
        sync(device)
        times["check"].append(time.perf_counter() - t0)
        for name, seconds in report.phases.items():
            phases.setdefault(name, []).append(seconds)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["phases"] = {k: statistics.median(v) for k, v in phases.items()}
    out["findings"] = sorted({d.code for d in report.diagnostics if d.severity != "info"})
    return out


def fixed_cost(repeats: int = 20) -> float:
    """Seconds a check adds to the step of a model too small for any per-op cost to matter."""
    import torch
    from models import Case

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4))
    case = Case(model, torch.randn(8, 16), torch.randint(0, 4, (8,)), torch.nn.functional.cross_entropy)
    t = time_case(case, "cpu", repeats)
    return t["check"] - t["plain"]


def _rss_bytes(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss():
    # Writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0), so the
    # peak measured next is the step's alone, not the import's or the model build's.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_child(name, device, which):
    """Runs in a subprocess: peak memory of one step above the memory of model + batch."""
    import torch
    from models import build

    case = build(name, device)
    fn = plain_step if which == "plain" else check_step
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(case)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        # No warm-up run: the allocator would keep its freed blocks and hide the step's peak. The
        # imports a check makes lazily are made here, so they are not counted as its memory.
        import nnlint.api
        import nnlint.registry
        import nnlint.trace.tracer  # noqa: F401

        nnlint.registry.all_rules()
        _reset_peak_rss()
        base = _rss_bytes()
        fn(case)
        peak = _rss_bytes("VmHWM") - base
    print(json.dumps({"peak": peak}))


# glibc raises its mmap threshold each time it frees a block above it (up to 32 MiB), so after the
# first large tensors are freed, blocks below the new threshold come from the heap, which keeps what
# is freed: a process's peak RSS then depends on the order of its frees as much as on what it holds
# (measured on the 6-layer Llama: the check's statistics' small temporaries made the backward's peak
# 610 MiB instead of 409; with the threshold fixed, 392 against the plain step's 390). Each arm is
# measured both ways: with glibc's defaults (what a user's process gets) and with the threshold fixed
# at glibc's initial 128 KiB (what the tensors need).
FIXED_HEAP = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def memory_case(name, device):
    out = {}
    for heap, env in (("", {}), (" fixed", FIXED_HEAP)):
        for which in ("plain", "check"):
            proc = subprocess.run([sys.executable, __file__, "--memory-child", name, device, which],
                                  capture_output=True, text=True, env={**os.environ, **env})
            if proc.returncode != 0:
                raise SystemExit(f"memory of {name} ({which}) failed:\n{proc.stderr[-2000:]}")
            out[which + heap] = json.loads(proc.stdout.strip().splitlines()[-1])["peak"]
        if device == "cuda":
            break   # the CUDA caching allocator is not glibc's
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join(("gpt2", "bert", "llama", "vit", "resnet50", "convnext_tiny")))
    parser.add_argument("--no-memory", action="store_true", help="time only")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    import torch
    from tabulate import tabulate

    from models import build

    rows, split, results = [], [], {}
    for name in args.models.split(","):
        try:
            case = build(name, args.device)
        except SystemExit as exc:
            print(f"skipped {name}: {exc}", file=sys.stderr)
            continue
        t = time_case(case, args.device, args.repeats)
        del case
        m = None if args.no_memory else memory_case(name, args.device)
        results[name] = {"time": t, "memory": m}
        rows.append([name, f"{t['plain']:.3f}", f"{t['check']:.3f}", f"{t['check'] / t['plain']:.2f}x",
                     "" if m is None else f"{m['plain'] / 2**20:.0f}", "" if m is None else f"{m['check'] / 2**20:.0f}",
                     "" if m is None else f"{m['check'] / max(m['plain'], 1):.2f}x",
                     "" if m is None or "check fixed" not in m else f"{m['check fixed'] / max(m['plain fixed'], 1):.2f}x",
                     ", ".join(t["findings"]) or "none"])
        split.append([name] + [f"{t['phases'].get(p, 0.0) / t['plain']:.2f}" for p in PHASES])
    fixed = fixed_cost() if args.device == "cpu" else None
    print(f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"device {args.device}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(tabulate(rows, headers=["model", "step s", "check s", "time", "step MiB", "check MiB", "memory",
                                  "memory, fixed heap", "findings"]))
    if not args.no_memory and args.device == "cpu":
        print("memory: peak RSS with glibc's defaults; fixed heap: with MALLOC_MMAP_THRESHOLD_=131072 in both "
              "arms (see FIXED_HEAP)")
    print("\nwhere the check's time goes, in plain steps (the plain step's own forward and backward first: the "
          "check's backward runs none of nnlint's code, so it differs from the plain one by noise and memory only):")
    print(tabulate(split, headers=["model"] + list(PHASES)))
    if fixed is not None:
        print(f"\nfixed cost (a 3-layer MLP on 8 samples): {fixed * 1000:.1f} ms")
    print("targets: time <= 1.15x, memory <= 1.10x, fixed cost < 20 ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "fixed_cost": fixed}, f, indent=1)


PHASES = ("plain forward", "plain backward", "setup", "train forward", "backward", "gradient statistics", "eval forward", "reading the statistics back",
          "probes", "rules")


if __name__ == "__main__":
    main()
