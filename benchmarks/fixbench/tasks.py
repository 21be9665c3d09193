"""The tasks, as 8x8 single-channel images with labels, and how a model is fed and scored on them.

- digits: scikit-learn's bundled digits (1797 8x8 images in [0, 16], 10 classes, no network needed), or
  when scikit-learn is not installed a synthetic stand-in of the same shape (10 noisy prototypes).
  Easy: even a badly set-up model learns something, so it shows how much a fix speeds training up.
- xor: a synthetic task where a broken model sits at chance. Smoothed gaussian 8x8 images; two random
  4x4 patterns in opposite corners give two projections z1, z2, and the class is 2 [|z1| > median] +
  [|z2| > median]: 4 balanced classes, symmetric in the sign of each projection, so no linear function
  of the input predicts them (a linear model scores 25%, chance), while a healthy ReLU MLP or CNN learns
  them to 70-85% in 300 steps (measured: MLP 3x64 83%, 6x16 80%, 11x64 72%; CNN 3x16 74%, 3x4 66%).
  It needs working hidden units: a model whose hidden layers are dead, saturated or collapsed scores
  like the linear model. (An 11-layer, 5-wide ReLU MLP does not learn it either, even at Kaiming init:
  that shape is too narrow for ReLU, which is what the benchmark should show about such a repair.)

A generated model is fed its inputs as a pipeline would: flat features standardized per feature
(StandardScaler), images standardized per channel; the raw-input mutation instead gets them at 8-bit
pixel scale (RAW_SCALE, RAW_OFFSET). A fixture is fed the images resized to its own input shape and
mapped to its sample batch's mean and std (shaped_like), so its own input fault shows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

RAW_SCALE, RAW_OFFSET = 64.0, 128.0   # the raw-input mutation: standardized values * 64 + 128 (8-bit pixel scale)


@dataclass
class Dataset:
    name: str
    title: str
    images: torch.Tensor       # (N, 8, 8) float
    labels: torch.Tensor       # (N,) long
    classes: int
    test: int                  # the last `test` samples are held out

    @property
    def train(self) -> int:
        return self.images.shape[0] - self.test


def digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        images, labels = synthetic_digits()
        return Dataset("digits", "synthetic 8x8 digits (scikit-learn not installed)", images, labels, 10, 360)
    data = load_digits()
    images = torch.tensor(data.data, dtype=torch.float32).view(-1, 8, 8)
    return Dataset("digits", "scikit-learn digits", images, torch.tensor(data.target, dtype=torch.long), 10, 360)


def synthetic_digits(n: int = 1797) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten 8x8 prototypes with pixel values in [0, 16], plus noise and a random shift of a pixel."""
    g = torch.Generator().manual_seed(0)
    prototypes = (torch.rand(10, 8, 8, generator=g) > 0.6).float() * 16
    labels = torch.randint(0, 10, (n,), generator=g)
    x = prototypes[labels] + 3 * torch.randn(n, 8, 8, generator=g)
    shifts = torch.randint(-1, 2, (n, 2), generator=g)
    x = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(0, 1)) for img, s in zip(x, shifts)])
    return x.clamp(0, 16), labels


def xor(n: int = 7000, test: int = 1000) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g)
    kernel = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), kernel.view(1, 1, 3, 3))[:, 0]
    x = (x - x.mean()) / x.std()
    bits = []
    for row, col in ((0, 0), (4, 4)):
        pattern = torch.zeros(8, 8)
        pattern[row:row + 4, col:col + 4] = torch.randn(4, 4, generator=g)
        z = (x * pattern).sum((1, 2)).abs()
        bits.append((z > z.median()).long())
    labels = 2 * bits[0] + bits[1]
    return Dataset("xor", "synthetic XOR-like (4 classes from |projections|; linear = chance)", x, labels, 4, test)


TASKS = {"digits": digits, "xor": xor}


# ---------------------------------------------------------------------------------------------
# Feeding a model


def standardized(images: torch.Tensor, flat: bool) -> torch.Tensor:
    """(N, 64) standardized per feature (a constant pixel stays 0), or (N, 1, 8, 8) per channel."""
    n = images.shape[0]
    if flat:
        x = images.reshape(n, -1)
        mean, std = x.mean(0), x.std(0)
        return torch.where(std > 1e-6, (x - mean) / std.clamp_min(1e-6), torch.zeros_like(x))
    x = images[:, None]
    return (x - x.mean()) / x.std()


def generated_inputs(data: Dataset, flat: bool, raw: bool) -> torch.Tensor:
    x = standardized(data.images, flat)
    return x * RAW_SCALE + RAW_OFFSET if raw else x


def shaped_like(images: torch.Tensor, example: torch.Tensor, side: Optional[int] = None) -> torch.Tensor:
    """The 8x8 images in a fixture's input shape (N, F) or (N, C, H, W) (`side`: at side x side instead
    of H x W), with its overall mean/std."""
    n = images.shape[0]
    if example.dim() == 4:
        c, h, w = example.shape[1:]
        h, w = (side, side) if side else (h, w)
        x = F.interpolate(images[:, None], size=(h, w), mode="bilinear", align_corners=False).repeat(1, c, 1, 1)
    elif example.dim() == 2:
        features = example.shape[1]
        side = int(math.isqrt(features))
        if side * side == features:
            x = F.interpolate(images[:, None], size=(side, side), mode="bilinear", align_corners=False).reshape(n, -1)
        else:
            x = F.interpolate(images.reshape(n, 1, -1), size=features, mode="linear", align_corners=False)[:, 0]
        # per feature, as a tabular pipeline's StandardScaler does: the flat fixtures' batches are
        # standardized features, and only a fixture's own fault should show
        x = standardized(x, flat=True)
    else:
        raise ValueError(f"input of shape {tuple(example.shape)}")
    x = (x - x.mean()) / x.std()   # images: per channel, which is overall here (one channel, repeated)
    return x * example.float().std() + example.float().mean()


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Objective:
    """How a model is trained and scored. A classifier: cross-entropy on the labels, accuracy of the
    argmax. A bounded (tanh) head, a policy's actions: each class gets a fixed target vector in
    [-0.8, 0.8]^outputs (the action to take for it, as in behaviour cloning), the loss is the MSE to it,
    and a prediction is right when the nearest target is its class's."""

    classes: int
    targets: Optional[torch.Tensor] = None      # (classes, outputs) for a bounded head

    @staticmethod
    def regression(classes: int, outputs: int) -> "Objective":
        g = torch.Generator().manual_seed(0)
        return Objective(classes, torch.rand(classes, outputs, generator=g) * 1.6 - 0.8)

    @property
    def name(self) -> str:
        return "classify" if self.targets is None else "regress"

    @property
    def chance(self) -> float:
        return 1.0 / self.classes

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y) if self.targets is None else F.mse_loss(out, self.targets[y])

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(1) if self.targets is None else torch.cdist(out, self.targets).argmin(1)


@dataclass
class Split:
    """A model's data: its inputs, labels (modulo its outputs for a classifier with fewer), objective."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    objective: Objective

    @staticmethod
    def of(data: Dataset, x_all: torch.Tensor, objective: Objective) -> "Split":
        y_all = data.labels if objective.targets is not None else data.labels % objective.classes
        n = data.train
        return Split(x_all[:n], y_all[:n], x_all[n:], y_all[n:], objective)

    def first_batch(self, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """What a user fixes on: the first training batch (the data order of seed 0)."""
        torch.manual_seed(0)
        idx = torch.randperm(self.x.shape[0])[:size]
        return self.x[idx], self.y[idx]
