"""Does `nnlint fix` help? Train each faulty fixture model before and after the fix, for the same steps,
on the same data in the same order, from the same seed, and compare the loss and the test accuracy.

    python benchmarks/fix_training.py [--steps 300] [--lrs 0.003,0.01,0.03,0.1] [--adam] [--only dead_relu,tanh]

The task is scikit-learn's bundled digits (1797 8x8 images, 10 classes, no network needed) when
scikit-learn is installed, else a synthetic task of the same shape (10 noisy 8x8 prototypes). Each model
sees it in the shape and the style of its fixture's own sample batch: images are resized to the
fixture's H x W and repeated over its channels, flat inputs are resized to its feature count, and the
values are mapped to the sample batch's overall mean and std (so the uncentered-input and raw-pixel
fixtures really get uncentered or raw-scaled data). Labels are taken modulo the model's number of
outputs. The fix is `nnlint.fix(model, first training batch, unsafe=True)`, i.e. what a user gets by
fixing on real data; "before" trains the model exactly as the fixture builds it.

Training: SGD with momentum 0.9 (or Adam), batch 64, cross-entropy, torch.manual_seed(0) before each run,
at every learning rate of a small grid: a faulty init mostly shows as a model that only trains at some
learning rates, or not at all, so each model is reported at its own best learning rate (a fixed one
would favour whichever model its scale happens to suit). Reported: the mean training loss over the last
10% of steps, the mean over the first 20% (how fast training gets going), accuracy on the 360 held-out
images, and at how many learning rates of the grid the model trains at all.
A script, not a test: it takes about five minutes on a CPU.
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
    else:
        raise ValueError(f"input of shape {tuple(example.shape)}")
    x = (x - x.mean()) / x.std()
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
        raise ValueError("the output is not (batch, classes)")
    return out.shape[1]


def train(model, x, y, x_test, y_test, steps: int, lr: float, adam: bool = False,
          batch: int = 64) -> tuple[float, float, float]:
    """Final training loss (mean over the last 10% of steps), test accuracy, and the early training loss
    (mean over the first 20% of steps: how fast it gets going)."""
    torch.manual_seed(0)
    order = torch.randperm(x.shape[0])
    opt = torch.optim.Adam(model.parameters(), lr=lr) if adam else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    losses = []
    for step in range(steps):
        start = (step * batch) % (x.shape[0] - batch)
        idx = order[start:start + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tail = losses[-max(steps // 10, 1):]
    head = losses[:max(steps // 5, 1)]
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return sum(tail) / len(tail), accuracy, sum(head) / len(head)


def codes(report) -> str:
    found = sorted({d.code for d in report.diagnostics if d.severity in ("error", "warning")})
    return ",".join(found) or "-"


@dataclass
class Run:
    lr: float
    loss: float
    accuracy: float
    early: float


@dataclass
class Comparison:
    findings: str
    fixed: str
    left: str
    before: list[Run]
    after: list[Run]

    @staticmethod
    def best(runs: list[Run]) -> Run:
        return max(runs, key=lambda r: (r.accuracy, -r.loss if r.loss == r.loss else -math.inf))


def run_fixture(path: Path, data, steps: int, lrs: list[float], adam: bool) -> Comparison:
    """Train the fixture's model as built and as fixed, at every learning rate of the grid."""
    images, labels = data
    loaded = load(path)
    example = loaded.batch
    if not isinstance(example, torch.Tensor) or not example.is_floating_point() or example.dim() not in (2, 4):
        raise ValueError("its batch is not a float (N, F) or (N, C, H, W) tensor")
    classes = outputs_of(loaded.model, example)
    x_all = shaped_like(images, example)
    y_all = labels % classes
    split = x_all.shape[0] - 360
    x, y, x_test, y_test = x_all[:split], y_all[:split], x_all[split:], y_all[split:]
    findings = codes(nnlint.check(loaded.model, x[:64]))
    before, after, fixed, left = [], [], "-", "-"
    for lr in lrs:
        model = load(path).model
        before.append(Run(lr, *train(model, x, y, x_test, y_test, steps, lr, adam)))
        model = load(path).model
        result = nnlint.fix(model, x[:64], unsafe=True)
        fixed = ",".join(sorted({o.diagnostic.code for o in result.applied})) or "-"
        left = codes(result.report)
        after.append(Run(lr, *train(model, x, y, x_test, y_test, steps, lr, adam)))
    return Comparison(findings, fixed, left, before, after)


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lrs", default="0.003,0.01,0.03,0.1", help="the learning-rate grid")
    parser.add_argument("--adam", action="store_true", help="Adam instead of SGD with momentum 0.9")
    parser.add_argument("--only", default="", help="comma-separated parts of fixture names")
    args = parser.parse_args(argv)
    lrs = [float(v) for v in args.lrs.split(",")]
    (images, labels), task = digits()
    optimizer = "Adam" if args.adam else "SGD (momentum 0.9)"
    print(f"task: {task}, {images.shape[0] - 360} training / 360 test images; {args.steps} steps of {optimizer}, "
          f"batch 64, at each learning rate of {lrs}\n"
          "final loss / acc: at each model's best learning rate (in brackets); early loss: mean over the first 20% "
          "of steps, at that lr; trains at: learning rates of the grid where test accuracy beats 2x chance\n")
    header = (f"{'fixture':32} {'findings':22} {'left':6} {'final loss before':>17} {'final loss after':>17} "
              f"{'early loss':>13} {'acc before':>10} {'acc after':>9} {'trains at':>9}")
    print(header)
    print("-" * len(header))
    started = time.time()
    for path in faulty_fixtures([o for o in args.only.split(",") if o]):
        try:
            c = run_fixture(path, (images, labels), args.steps, lrs, args.adam)
        except Exception as exc:   # a fixture this task does not fit (token inputs, a regression head)
            print(f"{path.stem:32} skipped: {type(exc).__name__}: {str(exc)[:70]}")
            continue
        b, a = Comparison.best(c.before), Comparison.best(c.after)
        chance = 2.0 / 10
        trains = f"{sum(r.accuracy > chance for r in c.before)} -> {sum(r.accuracy > chance for r in c.after)}"
        early = f"{fmt_loss(b.early)}->{fmt_loss(a.early)}"
        print(f"{path.stem:32} {c.findings[:22]:22} {c.left[:6]:6} {fmt_loss(b.loss):>8} [{b.lr:<6g}] "
              f"{fmt_loss(a.loss):>8} [{a.lr:<6g}] {early:>13} {b.accuracy:>10.1%} {a.accuracy:>9.1%} {trains:>9}")
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
