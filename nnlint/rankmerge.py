"""The ranks' traces as the trace of the whole batch: what each rank measured on its own shard, reduced.

Under data parallelism (DDP, FSDP2) every rank runs the same model on its shard of the batch, so the
ranks' traces have the same ops, modules and parameters, and differ only in the statistics of the
tensors the batch flows through. Those combine as if one process had run the whole batch:

- a tensor's summary (TensorSummary: mean, std, non-finite) pools the shards' moments, weighted by
  their sizes (the mean of the means, then the within- plus between-shard variance: exact); a batch
  input's leading dimension is the sum of the shards';
- an input's per-channel means and stds pool the same way, channel by channel (exact);
- every other float (the fraction of a unit's positions that are active, of inputs that saturate, the
  loss, an input's mean feature correlation) is the mean of the ranks' values weighted by their share
  of the batch: exact for fractions and means over positions that split with the batch, an
  approximation for a correlation; a value every rank agrees on (a dropout's p) stays exactly that;
- what a loss call saw of its input and target (LossInput, LossTarget: the objective rules' evidence)
  reduces by its meaning (BOUNDED): mean and std pooled as above, minima and maxima as such, counts
  (labels per class, ignored, out of range) summed, "every value is ..." flags and-ed; the entropy of
  the label frequencies is recomputed from the summed class counts (the batch's, exact); a
  calibration against those frequencies stays the ranks' weighted mean (an approximation);
- everything else (names, kinds, shapes, lineage, integers, flags) must be the same on every rank: it
  is the trace's fingerprint. Ranks whose fingerprints differ (data-dependent control flow, shards of
  unequal size) cannot be merged this way; the caller falls back to merging their findings.

Not reduced here (LOCAL): the gradients (nnlint.distributed all-reduces the gradients themselves and
measures them again), the probes (each rank's own: the rules that read them are merged by finding),
the time, the notes, the device.

The reduction is three vectors: `first()` gives one to sum and one to take the maximum of across ranks,
`second(...)` the centered second moments to sum, and `rebuild(...)` the merged trace. Any all-reduce
does: torch.distributed's, or a plain sum over the traces of one process (the tests).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Any

from nnlint.trace.records import InputRecord, LossInput, LossTarget, ParamRecord, TensorSummary, Trace

# Fields each rank keeps as its own: not compared, not reduced here.
LOCAL = {
    (Trace, "probes"), (Trace, "seconds"), (Trace, "notes"), (Trace, "batch_description"), (Trace, "device"),
    (ParamRecord, "grad_norm"), (ParamRecord, "grad_all_zero"), (ParamRecord, "grad_nonfinite"),
}
# ... except whether a gradient reached the parameter: that must be the same on every rank.
PRESENCE = {(ParamRecord, "grad_norm")}
# Records whose (shape, mean, std) pool like a TensorSummary's, the batch along dim 0.
POOLED = (LossInput, LossTarget)
# Fields reduced by their meaning: how (see _Collect.bounded).
BOUNDED = {
    (LossInput, "shape"): "batch", (LossTarget, "shape"): "batch",
    (LossInput, "min"): "min", (LossTarget, "min"): "min", (LossInput, "max"): "max", (LossTarget, "max"): "max",
    (LossInput, "nonfinite"): "any", (LossTarget, "one_hot"): "all", (LossTarget, "integral"): "all",
    (LossInput, "row_sum"): "range", (LossTarget, "row_sum"): "range",
    (LossTarget, "ignored"): "sum", (LossTarget, "out_of_range"): "sum", (LossTarget, "class_counts"): "sum",
    (LossTarget, "first_out_of_range"): "first",
}
_NONE = float("-inf")   # an absent value, to a maximum


@dataclasses.dataclass
class _Moments:
    """One pooled value's part on this rank: n positions of this mean and std."""

    n: float
    mean: float
    std: float
    nonfinite: bool
    batch_size: int = 0        # a batch input's leading size: summed across ranks
    sample: bool = False       # std is the sample std (n - 1), as a loss call's summaries have it


class FlatTrace:
    """One rank's trace, flattened: the values to reduce, and a fingerprint of everything else."""

    def __init__(self, trace: Trace, weight: float):
        self.trace = trace
        self.weight = float(weight)     # this rank's share of the batch (its input elements)
        found = _Collect()
        _walk(trace, found)
        self.floats, self.moments, self.bounded = found.floats, found.moments, found.bounded
        self.fingerprint = hashlib.sha256("\x1f".join(found.tokens).encode()).hexdigest()
        # The same on two ranks only when they were given the same batch (tensor parallelism; or a data
        # parallel loader without a DistributedSampler): then there are no shards to pool.
        self.batch_digest = hashlib.sha256(repr([(i.summary.mean, i.summary.std, i.channel_mean, i.channel_std)
                                                 for i in trace.inputs]).encode()).hexdigest()

    def first(self) -> tuple[list[float], list[float]]:
        """(to sum, to take the max of): the weight, the weighted floats and each pooled value's n, n x mean
        and batch size; each float and its negation (minus the max of those is the min), and each pooled
        value's non-finite flag."""
        sums = [self.weight] + [self.weight * v for v in self.floats]
        for m in self.moments:
            sums += [m.n, m.n * m.mean, float(m.batch_size)]
        maxes = [v for f in self.floats for v in (f, -f)] + [float(m.nonfinite) for m in self.moments]
        for kind, value in self.bounded:
            (sums if kind in ("sum", "batch") else maxes).extend(_encode(kind, value))
        return sums, maxes

    def second(self, sums: list[float]) -> list[float]:
        """To sum: each pooled value's squared deviations around the merged mean, within and between."""
        base = 1 + len(self.floats)
        out = []
        for i, m in enumerate(self.moments):
            n_all, total = sums[base + 3 * i], sums[base + 3 * i + 1]
            mean = total / n_all if n_all else 0.0
            out.append(m.n * (m.std * m.std + (m.mean - mean) ** 2) if m.n else 0.0)
        return out

    def rebuild(self, sums: list[float], maxes: list[float], second: list[float]) -> Trace:
        """The merged trace: a copy of this rank's with every reduced value in place."""
        w_all = sums[0]
        floats = []
        for i, local in enumerate(self.floats):
            top, bottom = maxes[2 * i], -maxes[2 * i + 1]
            floats.append(top if top == bottom else (sums[1 + i] / w_all if w_all else local))
        base, flags = 1 + len(self.floats), 2 * len(self.floats)
        pooled = []
        for i, m in enumerate(self.moments):
            n_all, total, batch_size = sums[base + 3 * i: base + 3 * i + 3]
            if maxes[flags + i] > 0:   # as one process would: a NaN or inf anywhere, no mean or std
                pooled.append((float("nan"), float("nan"), True, int(batch_size)))
            elif not n_all:
                pooled.append((m.mean, m.std, False, int(batch_size)))
            else:
                var = second[i] / n_all * (n_all / (n_all - 1) if m.sample and n_all > 1 else 1.0)
                pooled.append((total / n_all, max(var, 0.0) ** 0.5 if var == var else var, False, int(batch_size)))
        at_sum, at_max = base + 3 * len(self.moments), flags + len(self.moments)
        bounded = []
        for kind, value in self.bounded:
            width = len(_encode(kind, value))
            if kind in ("sum", "batch"):
                bounded.append(_decode(kind, value, sums[at_sum:at_sum + width]))
                at_sum += width
            else:
                bounded.append(_decode(kind, value, maxes[at_max:at_max + width]))
                at_max += width
        return _recount(_walk(self.trace, _Replace(floats, pooled, bounded)))


def _encode(kind: str, value) -> list[float]:
    """A bounded value as floats to sum ("sum", "batch") or to take the maximum of (the rest)."""
    if kind == "sum":
        return [float(v) for v in value] if isinstance(value, list) else [float(value)]
    if kind == "batch":
        return [float(value[0])] if value else []
    if kind in ("min", "max"):
        return [-value if kind == "min" else value]
    if kind in ("all", "any"):
        return [float(not value) if kind == "all" else float(value)]
    if kind == "first":   # the smallest rank's label stands for "the first"
        return [_NONE if value is None else -float(value)]
    return [_NONE, _NONE] if value is None else [-value[0], value[1]]   # range: (min, max)


def _decode(kind: str, local, got: list[float]):
    if kind == "sum":
        return [int(v) for v in got] if isinstance(local, list) else int(got[0])
    if kind == "batch":
        return (int(got[0]),) + tuple(local[1:]) if local else local
    if kind in ("min", "max"):
        return -got[0] if kind == "min" else got[0]
    if kind in ("all", "any"):
        return got[0] == 0 if kind == "all" else got[0] > 0
    if kind == "first":
        return None if got[0] == _NONE else int(-got[0])
    return None if got[0] == _NONE else (-got[0], got[1])


def _recount(trace: Trace) -> Trace:
    """The entropy of the whole batch's label frequencies, from its summed class counts."""
    from nnlint.trace.objective import label_entropy

    if trace.objective is None:
        return trace
    calls = []
    for call in trace.objective.calls:
        counts = call.target.class_counts if call.target is not None else None
        if counts and sum(counts) and call.prior_entropy is not None:
            call = dataclasses.replace(call, prior_entropy=label_entropy(counts, call.family, call.options))
        calls.append(call)
    return dataclasses.replace(trace, objective=dataclasses.replace(trace.objective, calls=calls))


class _Collect:
    """The first walk: gather the values to reduce and the fingerprint's tokens."""

    def __init__(self):
        self.floats: list[float] = []
        self.moments: list[_Moments] = []
        self.tokens: list[str] = []
        self.bounded: list[tuple[str, Any]] = []

    def token(self, value: Any) -> None:
        self.tokens.append(repr(value))

    def float(self, value: float) -> float:
        self.floats.append(value)
        self.tokens.append("f")
        return value

    def summary(self, s: TensorSummary, batch: bool) -> TensorSummary:
        self.tokens.append(f"S{s.shape[1:] if batch else s.shape}{s.dtype}")
        self.moments.append(_Moments(float(s.numel), s.mean, s.std, s.nonfinite,
                                     s.shape[0] if batch and s.shape else 0))
        return s

    def channels(self, rec: InputRecord) -> tuple[list[float], list[float]]:
        self.tokens.append(f"C{len(rec.channel_mean)},{len(rec.channel_std)}")
        n = rec.summary.numel / max(len(rec.channel_mean), 1)
        for m, s in zip(rec.channel_mean, rec.channel_std):
            self.moments.append(_Moments(n, m, s, False))
        return rec.channel_mean, rec.channel_std

    def pooled(self, rec) -> tuple[float, float]:
        n = 1.0
        for d in rec.shape:
            n *= d
        std = rec.std * ((n - 1) / n) ** 0.5 if n > 1 else rec.std   # the population std, to pool
        self.moments.append(_Moments(n, rec.mean, std, False, sample=True))
        return rec.mean, rec.std

    def bound(self, kind: str, value):
        """A value reduced by its meaning: the fingerprint keeps what must agree (the length of a list of
        counts, a shape past the batch, whether a range was measured)."""
        self.bounded.append((kind, value))
        self.tokens.append(repr((kind, len(value) if kind == "sum" and isinstance(value, list) else
                                 tuple(value[1:]) if kind == "batch" and value else
                                 value is None if kind == "range" else None)))
        return value


class _Replace:
    """The second walk: the same order, each reduced value put in its place."""

    def __init__(self, floats: list[float], pooled: list[tuple], bounded: list):
        self._floats = iter(floats)
        self._pooled = iter(pooled)
        self._bounded = iter(bounded)

    def token(self, value: Any) -> None:
        pass

    def float(self, value: float) -> float:
        return next(self._floats)

    def summary(self, s: TensorSummary, batch: bool) -> TensorSummary:
        mean, std, nonfinite, batch_size = next(self._pooled)
        shape = (batch_size,) + tuple(s.shape[1:]) if batch and s.shape else s.shape
        return dataclasses.replace(s, shape=shape, mean=mean, std=std, nonfinite=nonfinite)

    def channels(self, rec: InputRecord) -> tuple[list[float], list[float]]:
        pooled = [next(self._pooled) for _ in rec.channel_mean]
        return [p[0] for p in pooled], [p[1] for p in pooled]

    def pooled(self, rec) -> tuple[float, float]:
        mean, std, _, _ = next(self._pooled)
        return mean, std

    def bound(self, kind: str, value):
        return next(self._bounded)


def _walk(obj: Any, leaf) -> Any:
    """Visit every value of a trace in a fixed order (fields in declaration order, dict keys sorted),
    letting `leaf` see the floats, summaries and everything else; returns the object rebuilt from what
    `leaf` returned (the same object where nothing changed)."""
    if isinstance(obj, TensorSummary):
        return leaf.summary(obj, batch=False)
    if isinstance(obj, float):
        return leaf.float(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        leaf.token(obj)
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _walk_record(obj, leaf)
    if isinstance(obj, dict):
        leaf.token(("dict", len(obj)))
        new = {}
        for key in sorted(obj, key=repr):
            leaf.token(key)
            new[key] = _walk(obj[key], leaf)
        return obj if all(new[k] is obj[k] for k in obj) else {k: new[k] for k in obj}
    if isinstance(obj, (list, tuple)):
        leaf.token((type(obj).__name__, len(obj)))
        items = [_walk(v, leaf) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    leaf.token(type(obj).__name__)
    return obj


def _walk_record(obj: Any, leaf) -> Any:
    cls = type(obj)
    leaf.token(cls.__name__)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        key, value = (cls, f.name), getattr(obj, f.name)
        if key in LOCAL:
            if key in PRESENCE:
                leaf.token(value is None)
            continue
        if cls is InputRecord and f.name == "summary":
            new = leaf.summary(value, batch=True)
        elif cls is InputRecord and f.name == "channel_mean":
            new, changes["channel_std"] = leaf.channels(obj)
        elif cls is InputRecord and f.name == "channel_std":
            continue   # with channel_mean
        elif key in BOUNDED:
            new = leaf.bound(BOUNDED[key], value)
        elif cls in POOLED and f.name == "mean":
            new, changes["std"] = leaf.pooled(obj)
        elif cls in POOLED and f.name == "std":
            continue   # with mean
        else:
            new = _walk(value, leaf)
        if new is not value:
            changes[f.name] = new
    changes = {k: v for k, v in changes.items() if v is not getattr(obj, k)}
    if not changes:
        return obj
    out = copy.copy(obj)
    names = {f.name for f in dataclasses.fields(obj)}
    for derived in [k for k in vars(out) if k not in names]:
        del out.__dict__[derived]   # caches built from the rank's own values (Graph.of keeps one on the trace)
    for name, value in changes.items():
        object.__setattr__(out, name, value)
    return out
