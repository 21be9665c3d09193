"""How the dependence probes compare a clean pass's outputs with a changed pass's: what changed where it
must not. Every number is relative to the largest magnitude of the compared part of the output, as
PEERS.md measured them (healthy models: exactly 0; the bugs: 2.2e-3 to 0.55).
Nothing here imports torch at module level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Change:
    delta: float        # the largest absolute change where nothing may change
    scale: float        # the largest magnitude there, in the clean pass
    output: int         # which of the model's output tensors (their order in the output structure)

    @property
    def relative(self) -> float:
        if self.scale > 0:
            return self.delta / self.scale
        return 0.0 if self.delta == 0 else float("inf")


def largest(t) -> float:
    """The largest finite magnitude (0.0 for none)."""
    import torch

    if t.numel() == 0:
        return 0.0
    top = float(t.abs().max())
    if (top == top and top != float("inf")) or not t.is_floating_point():
        return top    # every value finite: no boolean-indexed copy of a language model's logits
    finite = t[torch.isfinite(t)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def _as_float(t):
    """float32 (float64 stays): a change is judged against FLOOR = 1e-6 of the largest value, well above
    float32's rounding of a difference (6e-8 of it), and a float64 copy of a language model's logits
    costs 8 bytes a value (measured: 1.8 s of GPT-2's 7.5 s of probes)."""
    import torch

    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def delta(a, b, unknown: float = 0.0) -> float:
    """The largest change from a to b (float32 or float64 tensors). Where a value turns non-finite or back, the
    change is infinite; where both are non-finite (NaN and NaN, inf and inf) it cannot be measured:
    `unknown` stands for it (0.0: no dependence can be claimed; inf: none can be ruled out)."""
    import torch

    if a.numel() == 0:
        return 0.0
    # The common case in one pass: a finite largest difference means every value of both is finite
    # (inf - inf and NaN give NaN, inf - x gives inf, and max propagates NaN).
    fast = float((a - b).abs().max())
    if fast == fast and fast != float("inf"):
        return fast
    fin_a, fin_b = torch.isfinite(a), torch.isfinite(b)
    both = fin_a & fin_b
    worst = float((a[both] - b[both]).abs().max()) if bool(both.any()) else 0.0
    if bool((fin_a != fin_b).any()):
        return float("inf")
    if not bool(both.all()):
        worst = max(worst, unknown)
    return worst


def batch_dims(shape: Sequence[int], k: int, full: Optional[Sequence[int]], size: int) -> list[int]:
    """The dims of an output that hold the samples: the probe batch's size there, and the user's
    batch size in the traced step's output when its shape is known."""
    if full is not None and len(full) == len(shape):
        return [d for d in range(len(shape)) if shape[d] == k and full[d] == size]
    return [d for d in range(len(shape)) if shape[d] == k]


def across_samples(clean: list, changed: list, k: int, full_shapes: list, size: int) -> tuple[Optional[Change], list[int]]:
    """The largest change of samples 1 .. k-1 over the outputs with one batch dim; and the outputs
    skipped because they have two (pairwise distances, a similarity matrix: there every row is meant
    to see every sample)."""
    best: Optional[Change] = None
    pairwise: list[int] = []
    for i, (a, b) in enumerate(zip(clean, changed)):
        if a.shape != b.shape:
            continue
        dims = batch_dims(a.shape, k, full_shapes[i] if i < len(full_shapes) else None, size)
        if len(dims) > 1:
            pairwise.append(i)
            continue
        if not dims:
            continue
        others_a, others_b = (_as_float(t.narrow(dims[0], 1, k - 1)) for t in (a, b))
        found = Change(delta(others_a, others_b), largest(others_a), i)
        if best is None or found.relative > best.relative:
            best = found
    return best, pairwise


def anywhere(clean: list, changed: list) -> float:
    """The largest absolute change of any output (0.0 exactly: the changed input had no influence;
    a non-finite output cannot show one, so it counts as changed)."""
    worst = 0.0
    for a, b in zip(clean, changed):
        if a.shape != b.shape:
            return float("inf")
        worst = max(worst, delta(_as_float(a), _as_float(b), unknown=float("inf")))
    return worst


def before(clean: list, changed: list, seq_len: int, start: int, k: int) -> Optional[Change]:
    """The largest change of sample 0's outputs at positions before `start` (outputs with a dim of
    the sequence's length after the batch dim); None when no output has one."""
    best: Optional[Change] = None
    for i, (a, b) in enumerate(zip(clean, changed)):
        if a.shape != b.shape or a.dim() < 2 or a.shape[0] != k:
            continue
        dims = [d for d in range(1, a.dim()) if a.shape[d] == seq_len]
        if not dims:
            continue
        early_a, early_b = (_as_float(t[0].narrow(dims[0] - 1, 0, start)) for t in (a, b))
        found = Change(delta(early_a, early_b), largest(early_a), i)
        if best is None or found.relative > best.relative:
            best = found
    return best
