"""Does `nnlint fix` help? Train each faulty fixture model before and after the fix, for the same steps,
on the same data in the same order, from the same seed, and compare the loss and the test accuracy.

    python benchmarks/fix_training.py [--steps 300] [--lrs 0.003,0.01,0.03,0.1] [--seeds 3] [--adam]
                                      [--safe-only] [--only dead_relu,tanh] [--markdown]

The task is scikit-learn's bundled digits (1797 8x8 images, 10 classes, no network needed) when
scikit-learn is installed, else a synthetic task of the same shape (10 noisy 8x8 prototypes). Each model
sees it in the shape and the style of its fixture's own sample batch: images are resized to the fixture's
H x W and repeated over its channels, flat inputs are resized to its feature count and standardized per
feature, and the values are mapped to the sample batch's overall mean and std (so the uncentered-input
and raw-pixel fixtures really get uncentered or raw-scaled data). A classifier is trained with
cross-entropy on the labels (modulo its number of outputs). A model whose output is a tanh (a policy's
actions) is trained as in behaviour cloning: MSE to a fixed target vector per digit, and a prediction is
right when the nearest target is its digit's. The fix is `nnlint.fix(model, first training batch,
unsafe=True)` (`--safe-only`: without unsafe fixes), i.e. what a user gets by fixing on real data;
"before" trains the model exactly as the fixture builds it.

Training: SGD with momentum 0.9 (or Adam), batch 64, at every learning rate of a small grid, 3 seeds each
(the seed orders the data; the fixture's init and the fix's re-inits are fixed), averaged: a faulty init
mostly shows as a model that only trains at some learning rates, or not at all, so each model is reported
at its own best learning rate (a fixed one would favour whichever model its scale happens to suit).
Reported: the mean training loss over the last 10% of steps, the mean over the first 20% (how fast
training gets going), accuracy on the 360 held-out images (8 at a time, as a model serves them), and at
how many learning rates of the grid the model trains at all (test accuracy over twice chance).
A script, not a test: about 25 minutes on 2 CPU cores (`--seeds 1`: about 8).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nnlint  # noqa: E402
from nnlint.loader import load_target  # noqa: E402


# ---------------------------------------------------------------------------------------------
# The task


def digits() -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images N x 8 x 8 in [0, 16], labels N) and the task's name."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return synthetic_digits(), "synthetic 8x8 digits (scikit-learn not installed)"
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).view(-1, 8, 8)
    return (x, torch.tensor(data.target, dtype=torch.long)), "scikit-learn digits"


def synthetic_digits(n: int = 1797) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten 8x8 prototypes with pixel values in [0, 16], plus noise and a random shift of a pixel."""
    g = torch.Generator().manual_seed(0)
    prototypes = (torch.rand(10, 8, 8, generator=g) > 0.6).float() * 16
    labels = torch.randint(0, 10, (n,), generator=g)
    x = prototypes[labels] + 3 * torch.randn(n, 8, 8, generator=g)
    shifts = torch.randint(-1, 2, (n, 2), generator=g)
    x = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(0, 1)) for img, s in zip(x, shifts)])
    return x.clamp(0, 16), labels


def shaped_like(images: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
    """The 8x8 images in the fixture's input shape (N, F) or (N, C, H, W), with its overall mean/std."""
    n = images.shape[0]
    if example.dim() == 4:
        c, h, w = example.shape[1:]
        x = F.interpolate(images[:, None], size=(h, w), mode="bilinear", align_corners=False).repeat(1, c, 1, 1)
    elif example.dim() == 2:
        features = example.shape[1]
        side = int(math.isqrt(features))
        if side * side == features:
            x = F.interpolate(images[:, None], size=(side, side), mode="bilinear", align_corners=False).reshape(n, -1)
        else:
            x = F.interpolate(images.reshape(n, 1, -1), size=features, mode="linear", align_corners=False)[:, 0]
        # per feature, as a tabular pipeline's StandardScaler does (a constant pixel stays 0): the flat
        # fixtures' batches are standardized features, and only a fixture's own fault should show
        mean, std = x.mean(0), x.std(0)
        x = torch.where(std > 1e-6, (x - mean) / std.clamp_min(1e-6), torch.zeros_like(x))
    else:
        raise ValueError(f"input of shape {tuple(example.shape)}")
    x = (x - x.mean()) / x.std()   # images: per channel, which is overall here (one channel, repeated)
    return x * example.float().std() + example.float().mean()


# ---------------------------------------------------------------------------------------------
# One model


def load(path: Path):
    with contextlib.redirect_stdout(io.StringIO()):
        return load_target(str(path))


def outputs_of(model, example: torch.Tensor) -> int:
    model.eval()
    with torch.no_grad():
        out = model(example[:2])
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
        raise ValueError("the output is not (batch, classes) or (batch, actions)")
    return out.shape[1]


def bounded(model, example: torch.Tensor) -> bool:
    """True for a model whose output comes out of a tanh: a policy's actions or a bounded regression, not
    class scores. Read from the check's own trace (the op that makes the model's output), not guessed
    from output values: a model with vanishing activations has small outputs too."""
    from nnlint.trace.graph import Graph

    graph = Graph.of(nnlint.check(model, example[:16]).trace)
    return any(graph.is_model_output(op) and op.kind == "tanh" for op in graph.ops)


@dataclass
class Task:
    """How a model is trained and scored. A classifier: cross-entropy on the digit labels, accuracy of
    the argmax. A bounded (tanh) head: each digit gets a fixed target vector in [-0.8, 0.8]^outputs (the
    action a policy should take for it, as in behaviour cloning), the loss is the MSE to it, and a
    prediction is right when the nearest target is its digit's."""

    targets: Optional[torch.Tensor] = None      # (10, outputs) for a bounded head

    @staticmethod
    def for_model(model, example: torch.Tensor, outputs: int) -> "Task":
        if not bounded(model, example):
            return Task()
        g = torch.Generator().manual_seed(0)
        return Task(torch.rand(10, outputs, generator=g) * 1.6 - 0.8)

    @property
    def name(self) -> str:
        return "classify" if self.targets is None else "regress"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y) if self.targets is None else F.mse_loss(out, self.targets[y])

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(1) if self.targets is None else torch.cdist(out, self.targets).argmin(1)


def train(model, x, y, x_test, y_test, steps: int, lr: float, adam: bool = False, batch: int = 64,
          task: Task = Task(), seed: int = 0) -> tuple[float, float, float]:
    """Final training loss (mean over the last 10% of steps), test accuracy, and the early training loss
    (mean over the first 20% of steps: how fast it gets going)."""
    torch.manual_seed(seed)
    order = torch.randperm(x.shape[0])
    opt = torch.optim.Adam(model.parameters(), lr=lr) if adam else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    losses = []
    for step in range(steps):
        start = (step * batch) % (x.shape[0] - batch)
        idx = order[start:start + batch]
        loss = task.loss(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tail = losses[-max(steps // 10, 1):]
    head = losses[:max(steps // 5, 1)]
    model.eval()
    with torch.no_grad():
        # a few images at a time, as a model serves them: an eval output that depends on the batch
        # (BatchNorm on batch statistics) shows, as it would in use, instead of hiding in one big batch
        predicted = torch.cat([task.predict(model(x_test[i:i + EVAL_BATCH]))
                               for i in range(0, x_test.shape[0], EVAL_BATCH)])
    accuracy = (predicted == y_test).float().mean().item()
    return sum(tail) / len(tail), accuracy, sum(head) / len(head)


EVAL_BATCH = 8


def codes(report) -> str:
    found = sorted({d.code for d in report.diagnostics if d.severity in ("error", "warning")})
    return ",".join(found) or "-"


@dataclass
class Run:
    """One learning rate, averaged over the seeds."""

    lr: float
    loss: float
    accuracy: float
    early: float

    @staticmethod
    def mean(lr: float, results: list[tuple[float, float, float]]) -> "Run":
        # a NaN loss in any seed makes the mean NaN: a run that diverges once is not a run that trains
        return Run(lr, *(sum(r[i] for r in results) / len(results) for i in range(3)))


@dataclass
class Comparison:
    task: str
    fixed: str
    left: str
    before: list[Run]
    after: list[Run]

    @staticmethod
    def best(runs: list[Run]) -> Run:
        return max(runs, key=lambda r: (r.accuracy, -r.loss if r.loss == r.loss else -math.inf))


def run_fixture(path: Path, data, steps: int, lrs: list[float], adam: bool, seeds: int = 1,
                unsafe: bool = True) -> Comparison:
    """Train the fixture's model as built and as fixed, at every learning rate of the grid, once per
    seed (the seed orders the data; the fixture's init and the fix's named re-inits do not change)."""
    images, labels = data
    loaded = load(path)
    example = loaded.batch
    if not isinstance(example, torch.Tensor) or not example.is_floating_point() or example.dim() not in (2, 4):
        raise ValueError("its batch is not a float (N, F) or (N, C, H, W) tensor")
    outputs = outputs_of(loaded.model, example)
    task = Task.for_model(loaded.model, example, outputs)
    x_all = shaped_like(images, example)
    y_all = labels if task.targets is not None else labels % outputs
    split = x_all.shape[0] - 360
    x, y, x_test, y_test = x_all[:split], y_all[:split], x_all[split:], y_all[split:]
    before, after, fixed, left = [], [], "-", "-"
    for lr in lrs:
        runs_before, runs_after = [], []
        for seed in range(seeds):
            model = load(path).model
            runs_before.append(train(model, x, y, x_test, y_test, steps, lr, adam, task=task, seed=seed))
            model = load(path).model
            result = nnlint.fix(model, x[:64], unsafe=unsafe)
            fixed = ",".join(sorted({o.diagnostic.code for o in result.applied})) or "-"
            left = codes(result.report)
            runs_after.append(train(model, x, y, x_test, y_test, steps, lr, adam, task=task, seed=seed))
        before.append(Run.mean(lr, runs_before))
        after.append(Run.mean(lr, runs_after))
    return Comparison(task.name, fixed, left, before, after)


# ---------------------------------------------------------------------------------------------


def faulty_fixtures(only: list[str]) -> list[Path]:
    paths = []
    for path in sorted((ROOT / "fixtures").glob("*.py")):
        if not re.search(r"#\s*expect:\s*NN\d", path.read_text()):
            continue
        if only and not any(o in path.stem for o in only):
            continue
        paths.append(path)
    return paths


def fmt_loss(v: float) -> str:
    return "nan" if v != v else f"{v:.3f}"


COLUMNS = ("fixture", "task", "fixed", "left", "loss before", "loss after", "early loss",
           "acc before", "acc after", "trains at")


def row(path: Path, c: Comparison) -> tuple[str, ...]:
    b, a = Comparison.best(c.before), Comparison.best(c.after)
    chance = 2.0 / 10
    return (path.stem, c.task, c.fixed, c.left,
            f"{fmt_loss(b.loss)} [{b.lr:g}]", f"{fmt_loss(a.loss)} [{a.lr:g}]",
            f"{fmt_loss(b.early)} -> {fmt_loss(a.early)}", f"{b.accuracy:.1%}", f"{a.accuracy:.1%}",
            f"{sum(r.accuracy > chance for r in c.before)} -> {sum(r.accuracy > chance for r in c.after)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lrs", default="0.003,0.01,0.03,0.1", help="the learning-rate grid")
    parser.add_argument("--seeds", type=int, default=3, help="runs per learning rate, averaged")
    parser.add_argument("--adam", action="store_true", help="Adam instead of SGD with momentum 0.9")
    parser.add_argument("--safe-only", action="store_true", help="apply only the safe fixes (no --unsafe-fixes)")
    parser.add_argument("--only", default="", help="comma-separated parts of fixture names")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    lrs = [float(v) for v in args.lrs.split(",")]
    (images, labels), task = digits()
    optimizer = "Adam" if args.adam else "SGD (momentum 0.9)"
    print(f"task: {task}, {images.shape[0] - 360} training / 360 test images; {args.steps} steps of {optimizer}, "
          f"batch 64, at each learning rate of {lrs}, {args.seeds} seed(s) each, averaged; "
          f"{'safe fixes only' if args.safe_only else 'safe and unsafe fixes'}\n"
          "task: classify = cross-entropy on the digit; regress = a tanh head fit by MSE to a target vector per digit\n"
          "loss / acc: at each model's best learning rate (in brackets); early loss: mean over the first 20% "
          "of steps, at that lr; trains at: learning rates of the grid where test accuracy beats 2x chance\n")
    widths = (32, 8, 18, 8, 16, 16, 16, 10, 9, 9)
    if args.markdown:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
    else:
        print(" ".join(f"{c:{w}}" for c, w in zip(COLUMNS, widths)))
        print("-" * (sum(widths) + len(widths) - 1))
    started = time.time()
    for path in faulty_fixtures([o for o in args.only.split(",") if o]):
        try:
            c = run_fixture(path, (images, labels), args.steps, lrs, args.adam, args.seeds, not args.safe_only)
        except Exception as exc:   # a fixture this task does not fit (token inputs, an unbounded regression)
            print(f"{path.stem:32} skipped: {type(exc).__name__}: {str(exc)[:70]}")
            continue
        cells = row(path, c)
        if args.markdown:
            print("| " + " | ".join(cells) + " |", flush=True)
        else:
            print(" ".join(f"{v[:w]:{w}}" for v, w in zip(cells, widths)), flush=True)
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
