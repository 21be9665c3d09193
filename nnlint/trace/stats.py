"""Statistics taken on the fly, on the tensor's own device, with cheap reductions.

Nothing is synced to the host per op: every reduction on an accelerator is queued as a small tensor
in a `PendingStats` and all of them are read back with one transfer per device at the end of the pass
(CPU results, where a read is no sync, are read at once; their callbacks still run at the end). The
reductions are the fast ones measured in DESIGN.md (sum, a sum of squares, a uint8 count), not var_mean.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

from nnlint.trace.records import TensorSummary
from nnlint.trace.wrappers import is_dtensor

# A reduction over this many elements or more is taken on a sample: SAMPLE_BLOCKS runs of BLOCK
# contiguous elements, evenly spread over the tensor's memory (a prime distance apart, so that the runs
# do not land on the same rows of every channel). The runs are read at memory speed: on a (8, 64, 112,
# 112) map a sum over them takes 0.05 ms where an every-25th-element sample took 0.8 (on one core; a
# strided read touches every cache line and does not vectorize). Error bound: even if the 128 values
# of a run were perfectly correlated, 2048 independent runs give the mean to 2.2% of the std and the
# std to 1.6% of itself (one standard error), far inside any rule's threshold (2x and more).
SAMPLE_ABOVE = 1 << 20
SAMPLE_BLOCKS = 1 << 11
BLOCK = 1 << 7
# Positions per unit on which the fraction of active positions is counted: its standard error is at
# most 0.5 / sqrt(2048) = 1.1% (0.22% at the 1% a dead unit is judged by). Counting is a slow
# reduction (1.5 ns an element on one core): every position of ResNet-50's ReLU maps at 8x224 was 0.13 s
# of a 0.44 s forward, and 8192 positions of each of ConvNeXt-T's (8, 56, 56, 1536) GELU inputs 46 ms.
UNIT_POSITIONS = 1 << 11


class PendingStats:
    """Queue of device tensors to read back once; each entry resolves into a Python value later."""

    def __init__(self):
        self._tensors: list[Any] = []
        self._callbacks: list[Callable[[list[float]], None]] = []
        self.scratch = Scratch()   # result slots of the CPU reductions

    def defer(self, tensors: list[Any], callback: Callable[[list[float]], None]) -> None:
        """Read `tensors` (each 0-d or 1-d) at the end and call `callback` with their flattened values.

        CPU tensors are read now (the callback still runs at the end, in order): on the CPU a read is
        no sync, and thousands of tiny result tensors kept alive between the activations pin glibc's
        heap, so that the freed activations are not reused as whole blocks (peak RSS with glibc's
        defaults, `benchmarks/overhead.py`'s memory children: ViT-B/16's check 1.40x the plain step's
        with them kept, 1.10-1.14x read at once; the 6-layer Llama's 1.25x and 1.08x)."""
        if all(t.device.type == "cpu" for t in tensors):
            # floats, as the accelerator path reads them (counts and flags included)
            tensors = _Read(_floats(tensors))
        self._tensors.append(tensors)
        self._callbacks.append(callback)

    def defer_read(self, values: list[float], callback: Callable[[list[float]], None]) -> None:
        """Values already read (on the CPU), for a callback at the end like the others."""
        self._tensors.append(_Read(values))
        self._callbacks.append(callback)

    def resolve(self) -> None:
        import torch

        # What is left is on accelerators. Grouped by device and dtype, so that each group is one cat and
        # one conversion to float64, not one kernel launch per 0-d tensor (thousands of them per pass).
        groups: dict[Any, list[Any]] = {}
        offsets: dict[Any, int] = {}
        flat_refs: list[list[tuple[Any, int, int]]] = []
        for group in self._tensors:
            if isinstance(group, _Read):
                flat_refs.append(group)
                continue
            refs = []
            for t in group:
                t = t.detach().reshape(-1)
                key = (t.device, t.dtype)
                start = offsets.get(key, 0)
                groups.setdefault(key, []).append(t)
                offsets[key] = start + t.numel()
                refs.append((key, start, t.numel()))
            flat_refs.append(refs)
        # One transfer per device: the only host sync of the whole trace.
        per_device: dict[Any, list[tuple[Any, Any]]] = {}
        for key, chunks in groups.items():
            per_device.setdefault(key[0], []).append((key, torch.cat(chunks).to(torch.float64)))
        values: dict[Any, list[float]] = {}
        for parts in per_device.values():
            flat = torch.cat([t for _, t in parts]).tolist()
            at = 0
            for key, t in parts:
                values[key] = flat[at:at + t.numel()]
                at += t.numel()
        for refs, callback in zip(flat_refs, self._callbacks):
            if isinstance(refs, _Read):
                callback(refs.values)
                continue
            out: list[float] = []
            for key, start, n in refs:
                out.extend(values[key][start:start + n])
            callback(out)
        self._tensors.clear()
        self._callbacks.clear()


def _floats(tensors: list[Any]) -> list[float]:
    """The values of CPU tensors as floats, in order (a 0-d one, most of them, with one `item()`)."""
    out: list[float] = []
    for t in tensors:
        if t.dim() == 0:
            out.append(float(t.item()))
        else:
            out.extend(float(v) for v in t.detach().reshape(-1).tolist())
    return out


class Scratch:
    """Where the CPU reductions write their results (`out=`), reused op after op. A reduction that
    returns a new tensor leaves, for every op of the forward, a few small blocks freed between the
    activations; glibc keeps such blocks in its per-size caches (tcache, fastbins), which do not merge
    with their neighbours, so the backward that follows finds the freed activations split and takes
    fresh pages for its gradients. Measured on ConvNeXt-T at 8x224 (median of 7): the check's backward
    0.15-0.2 s slower than the plain step's with new result tensors, and as fast with glibc's caches
    turned off (GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0), or with these."""

    def __init__(self):
        self._sums: dict[Any, tuple[Any, Any, Any, Any]] = {}   # dtype -> (both, total, squares, rows)
        self._mask: Any = None
        self._counts: Any = None

    def sums(self, whole, flat, acc) -> list[float]:
        """[Σx over `whole`, Σx² over `flat`] (1-d tensors, `flat` a sample of `whole`) in `acc`."""
        import torch

        slots = self._sums.get(acc)
        if slots is None:
            both = torch.zeros(2, dtype=acc)
            slots = self._sums[acc] = (both, both[0], both[1], torch.zeros(SAMPLE_BLOCKS, dtype=acc))
        both, total, squares, rows = slots
        torch.sum(whole, dim=0, dtype=acc, out=total)
        if flat.dim() == 1 and flat.dtype == acc and flat.is_contiguous():
            torch.dot(flat, flat, out=squares)
        elif flat.dim() == 2 and flat.dtype == acc and flat.shape[0] == SAMPLE_BLOCKS:
            torch.linalg.vecdot(flat, flat, out=rows)      # the sample's runs, no copy of them
            torch.sum(rows, dim=0, out=squares)
        else:
            squares.copy_(sum_of_squares(flat, acc))
        return both.tolist()

    def counts_above(self, y, unit_dim: int, above: float) -> list[int]:
        """Per unit (index along unit_dim), how many of y's values are > above."""
        import torch

        n, units = y.numel(), y.shape[unit_dim]
        if self._mask is None or self._mask.numel() < n:
            self._mask = torch.empty(max(n, 2 * (0 if self._mask is None else self._mask.numel())), dtype=torch.bool)
        if self._counts is None or self._counts.numel() < units:
            self._counts = torch.empty(max(units, 1024), dtype=torch.int32)
        mask = self._mask[:n].view(y.shape)
        counts = self._counts[:units]
        torch.gt(y, above, out=mask)
        torch.sum(mask.view(torch.uint8), dim=unit_dims(y, unit_dim), dtype=torch.int32, out=counts)
        return counts.tolist()


@dataclass
class _Read:
    """Values already read (from CPU tensors), waiting for their callback."""

    values: list


def measurable(x) -> bool:
    """A dense tensor: sparse and nested ones have no strided values to reduce (the model may take a
    sparse adjacency matrix; it is lineage, not a statistic)."""
    import torch

    return x.layout == torch.strided and not getattr(x, "is_nested", False)


def _dense_only(reduce):
    """A statistic of a tensor that is not measurable is not taken (its store is never called). A
    DTensor's (an activation under tensor parallelism) is taken on this rank's shard: no collective
    runs during the pass (parameters and gradients are read whole: nnlint.trace.wrappers)."""
    @functools.wraps(reduce)
    def wrapper(x, *args, **kwargs):
        if is_dtensor(x):
            if any(p.is_partial() for p in x.placements):
                return None   # each rank holds a partial sum (a row-parallel layer's output, before its all-reduce)
            x = x.to_local()
        if measurable(x):
            return reduce(x, *args, **kwargs)
        return None

    return wrapper


def in_memory_order(x):
    """x's values as a flat tensor: a view where they are dense in memory in some order (a permuted
    tensor, such as ConvNeXt's channels-last blocks), a copy only where they are not (a slice).
    Reductions that do not care about order (sums, norms, extremes) read it at memory speed: on a
    permuted (8, 56, 56, 384) map, torch.aminmax takes 32 ms on the tensor itself, 2 ms on this view (one core)."""
    if x.is_contiguous():
        return x.reshape(-1)
    permuted = x.permute(sorted(range(x.dim()), key=lambda d: -x.stride(d)))
    return permuted.reshape(-1) if permuted.is_contiguous() else x.flatten()


def _sampled(x):
    """A flat view of x, or a strided sample of it when it is very large."""
    return _sample_of(in_memory_order(x))


def _sample_of(flat):
    """A flat contiguous tensor, or a (SAMPLE_BLOCKS, BLOCK) view of runs of it when it is very large."""
    n = flat.numel()
    if n >= SAMPLE_ABOVE:
        flat = flat.as_strided((SAMPLE_BLOCKS, BLOCK), (_block_distance(n), 1), flat.storage_offset())
    return flat


@functools.lru_cache(maxsize=256)
def _block_distance(n: int) -> int:
    """The largest prime distance at which SAMPLE_BLOCKS runs of BLOCK elements fit in n: a prime is a
    multiple of no channel, row or feature size, so consecutive runs start at different positions in them."""
    d = (n - BLOCK) // (SAMPLE_BLOCKS - 1)
    while d > 2 and any(d % f == 0 for f in range(2, int(d ** 0.5) + 1)):
        d -= 1
    return d


def sum_of_squares(flat, acc):
    """Σx² of a flat or sampled tensor in the accumulation dtype: a dot product where it is one
    contiguous float vector (3x faster than vector_norm there), else squares summed."""
    import torch

    if flat.dim() == 1 and flat.dtype == acc and flat.is_contiguous():
        return torch.dot(flat, flat)
    if flat.dim() == 2 and flat.dtype == acc:
        return torch.linalg.vecdot(flat, flat).sum()   # a sample's runs, with no copy of them
    return torch.sum(flat.to(acc).square(), dtype=acc)


def accumulation_dtype(x):
    """float32 for half/bfloat16/float32 tensors (no overflow, no copy); float64 stays float64."""
    import torch

    return torch.float64 if x.dtype == torch.float64 else torch.float32


@_dense_only
def summarize(x, pending: PendingStats, store: Callable[[TensorSummary], None],
              cache: dict | None = None, key: Any = None, bounds: Any = None) -> None:
    """Queue mean/std/non-finite of a floating tensor; `store` receives the TensorSummary.

    With a `cache` and a `key` naming this value of this tensor, a tensor already summarized is not
    reduced again: one op's output is the next op's input and often a module's output as well.
    `bounds`: two 0-d tensors that are finite exactly when every value of the tensor is (its max and
    min), when the caller has them from a reduction of its own (a weight's rows: inventory), so that the
    whole tensor is not read again for the non-finite check.
    """
    import torch

    if cache is not None:
        if key in cache:
            cache[key].append(store)
            return
        stores = cache[key] = [store]
        store = lambda s: [f(s) for f in stores]  # noqa: E731
    shape = tuple(x.shape)
    dtype = str(x.dtype).replace("torch.", "")
    if x.numel() == 0:
        store(TensorSummary(shape, dtype, 0.0, 0.0, False))
        return
    whole = in_memory_order(x.detach())
    flat = _sample_of(whole)
    n = flat.numel()
    acc = accumulation_dtype(flat)

    def done(values: list[float]) -> None:
        total, sq, top, bottom = values
        finite = all(v == v and abs(v) != float("inf") for v in (top, bottom))
        if not finite:
            store(TensorSummary(shape, dtype, float("nan"), float("nan"), True))
            return
        # Finite values whose sum of squares overflows the accumulator: report the scale as inf.
        mean = total / n_sum
        var = sq / n - mean * mean if sq != float("inf") else float("inf")
        store(TensorSummary(shape, dtype, mean, max(var, 0.0) ** 0.5, False))

    # Non-finite is decided over the whole tensor (not the sample: one NaN counts). On the CPU, where
    # a value is read at once, by the sum over every value: finite, every value is (a NaN or an inf
    # would make it NaN or inf). Only a sum that is not (a NaN, an inf, or finite values that
    # overflow it: a float32 attention mask full of finfo.min) is looked at again, by its max and min.
    # That drops a third of the reads (ResNet-50's forward at 8x224: 0.02 s) and makes the mean exact.
    # On an accelerator, where a read would sync, max and min are queued with the rest.
    if bounds is None and whole.device.type == "cpu":
        n_sum = whole.numel()
        total, sq = pending.scratch.sums(whole, flat, acc)
        bottom = top = total
        if not math.isfinite(total):
            bottom, top = (float(v) for v in torch.aminmax(whole))
        pending.defer_read([total, sq, top, bottom], done)
        return
    n_sum = n
    if bounds is None:
        lo, hi = torch.aminmax(whole)     # one pass for both
    else:
        hi, lo = bounds
    pending.defer([torch.sum(flat, dtype=acc), sum_of_squares(flat, acc), hi, lo], done)


@_dense_only
def summarize_exact(x, pending: PendingStats, store: Callable[[TensorSummary], None]) -> None:
    """Like summarize, with var_mean (exact even when the mean dwarfs the std); for small tensors."""
    import torch

    shape = tuple(x.shape)
    dtype = str(x.dtype).replace("torch.", "")
    if x.numel() < 2:
        summarize(x, pending, store)
        return
    xf = x.detach().float()
    var, mean = torch.var_mean(xf, correction=0)
    bad = (~torch.isfinite(xf)).any().float()

    def done(values: list[float]) -> None:
        v, m, b = values
        store(TensorSummary(shape, dtype, m, max(v, 0.0) ** 0.5, bool(b) or v != v))

    pending.defer([var, mean, bad], done)


def unit_dims(x, unit_dim: int) -> tuple[int, ...]:
    d = unit_dim % x.dim()
    return tuple(i for i in range(x.dim()) if i != d)


@_dense_only
def active_fraction_per_unit(y, unit_dim: int, pending: PendingStats, store: Callable[[list[float]], None],
                             above: float = 0.0) -> None:
    """Fraction of positions where each unit (channel or feature) is > `above`: a ReLU-like activation's
    pre-activations out of its flat region."""
    import torch

    y = y.detach()
    if y.dim() == 0 or y.numel() == 0:
        return
    if y.dim() == 1:
        y = y.unsqueeze(0)
        unit_dim = 1
    if unit_dim % y.dim() == 1 and y.dim() >= 3:
        # A conv map: count on a regular spatial grid of at most UNIT_POSITIONS positions per channel
        # (every sample kept). A dead channel is silent everywhere, so the grid finds it just as surely.
        spatial = y.numel() // (y.shape[0] * y.shape[1])
        stride = 1
        while y.shape[0] * spatial // (stride ** (y.dim() - 2)) > UNIT_POSITIONS:
            stride += 1
        if stride > 1:
            y = y[(slice(None), slice(None)) + (slice(None, None, stride),) * (y.dim() - 2)]
    elif unit_dim % y.dim() == y.dim() - 1 and y.numel() // y.shape[-1] > UNIT_POSITIONS:
        # Features of a linear layer: every k-th row (token, sample) of the flattened leading dims.
        rows = y.reshape(-1, y.shape[-1])
        y = rows[:: -(-rows.shape[0] // UNIT_POSITIONS)]
    dims = unit_dims(y, unit_dim)
    positions = y.numel() // y.shape[unit_dim]
    if y.device.type == "cpu":
        counts = pending.scratch.counts_above(y, unit_dim, above)
        pending.defer_read(counts, lambda v: store([c / positions for c in v]))
        return
    counts = (y > above).view(torch.uint8).sum(dim=dims, dtype=torch.int32)
    pending.defer([counts], lambda v: store([c / positions for c in v]))


@_dense_only
def saturated_fraction(z, threshold: float, pending: PendingStats, store: Callable[[float], None]) -> None:
    """Fraction of pre-activations with |z| > threshold (the flat region of sigmoid/tanh)."""
    import torch

    z = _sampled(z.detach())
    n = z.numel()
    if n == 0:
        return
    count = (z > threshold).view(torch.uint8).sum(dtype=torch.int64) + (z < -threshold).view(torch.uint8).sum(dtype=torch.int64)
    pending.defer([count], lambda v: store(v[0] / n))


@_dense_only
def channel_moments(x, channel_dim: int, pending: PendingStats, store: Callable[[list[float], list[float]], None]) -> None:
    """Per-channel mean and std of an input tensor (exact; inputs are small next to activations)."""
    import torch

    xf = x.detach().float()
    if xf.dim() < 2:
        return
    dims = unit_dims(xf, channel_dim)
    var, mean = torch.var_mean(xf, dim=dims, correction=0)
    c = mean.numel()
    pending.defer([mean, var], lambda v: store(v[:c], [max(a, 0.0) ** 0.5 for a in v[c:]]))


@_dense_only
def mean_abs_correlation(x, pending: PendingStats, store: Callable[[float], None], max_features: int = 512) -> None:
    """Mean absolute off-diagonal correlation of a 2-D (samples x features) input."""
    if x.dim() != 2 or x.shape[0] < 3 or not (2 <= x.shape[1] <= max_features):
        return
    xf = x.detach().float()
    xc = xf - xf.mean(dim=0, keepdim=True)
    off = mean_abs_correlation_of((xc.T @ xc) / xf.shape[0])
    if off is not None:
        pending.defer([off], lambda v: store(v[0]))


def mean_abs_correlation_of(cov):
    """The mean absolute off-diagonal correlation of a feature covariance matrix (a 0-d tensor), over the
    features that vary; None when fewer than two do. nnlint.distributed computes it from the covariance of
    the whole batch, summed over the ranks' shards."""
    std = cov.diagonal().clamp(min=0).sqrt()
    keep = std > 1e-12
    if int(keep.sum()) < 2:
        return None
    corr = cov[keep][:, keep] / (std[keep][:, None] * std[keep][None, :])
    f = corr.shape[0]
    return (corr.abs().sum() - corr.diagonal().abs().sum()) / (f * (f - 1))
