"""Overhead of `nnlint.check` against a plain training step (forward + backward) of the same model and
batch, measured in the same run. Prints ratios; the targets (issue 6) are <= 1.3x time and <= 1.15x
peak memory.

    python benchmarks/overhead.py [--device cpu|cuda] [--repeats 5] [--models resnet50,gpt2-6]

Timing: one warm-up of each, then plain and check interleaved, median of the repeats. Memory: each
measured in a fresh subprocess (peak RSS above the RSS after building model and batch on the CPU;
torch.cuda.max_memory_allocated on CUDA), so one run's allocator cache does not flatter the other.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def plain_step(model, batch):
    model.train()
    out = model(batch)
    out.float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)


def check_step(model, batch):
    import nnlint

    nnlint.check(model, batch)


def sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_case(name, device, repeats):
    from models import build

    model, batch = build(name, device)
    for fn in (plain_step, check_step):   # warm-up: allocator, lazy imports, kernels
        fn(model, batch)
    sync(device)
    times = {"plain": [], "check": []}
    for _ in range(repeats):
        for label, fn in (("plain", plain_step), ("check", check_step)):
            sync(device)
            t0 = time.perf_counter()
            fn(model, batch)
            sync(device)
            times[label].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


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

    model, batch = build(name, device)
    fn = plain_step if which == "plain" else check_step
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(model, batch)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        # No warm-up run: the allocator would keep its freed blocks and hide the step's peak. The
        # imports a check makes lazily are made here, so they are not counted as its memory.
        import nnlint.api
        import nnlint.registry
        import nnlint.trace.tracer

        nnlint.registry.all_rules()
        _reset_peak_rss()
        base = _rss_bytes()
        fn(model, batch)
        peak = _rss_bytes("VmHWM") - base
    print(json.dumps({"peak": peak}))


def memory_case(name, device):
    out = {}
    for which in ("plain", "check"):
        proc = subprocess.run([sys.executable, __file__, "--memory-child", name, device, which],
                              capture_output=True, text=True, check=True)
        out[which] = json.loads(proc.stdout.strip().splitlines()[-1])["peak"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="resnet50,gpt2-6")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    import torch
    from tabulate import tabulate

    rows = []
    for name in args.models.split(","):
        t = time_case(name, args.device, args.repeats)
        m = memory_case(name, args.device)
        rows.append([name, f"{t['plain']:.2f}", f"{t['check']:.2f}", f"{t['check'] / t['plain']:.2f}x",
                     f"{m['plain'] / 2**20:.0f}", f"{m['check'] / 2**20:.0f}", f"{m['check'] / max(m['plain'], 1):.2f}x"])
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(tabulate(rows, headers=["model", "step s", "check s", "time ratio", "step MiB", "check MiB", "memory ratio"]))
    print("targets: time ratio <= 1.30x, memory ratio <= 1.15x")


if __name__ == "__main__":
    main()
