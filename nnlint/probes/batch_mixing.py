"""NN701's probe: in eval mode, does changing one sample change the outputs of the others?

Sample 0 takes another sample's inputs (each integer input on its own, the float inputs together) and
the outputs of samples 1 .. k-1 are compared with the clean pass (nnlint.probes.passes). Sample 0 is
the one changed, not the last: a sequence-first RNN fed a batch-first tensor reads the batch as
time, so only the later "time steps" see the change. A relative change between FLOOR and RECHECK is
measured again in float64 on a copy of the model, where batched-matmul rounding (TF32, blocked
kernels) is 1e-12 and a real dependence stays what it was. A change that survives is located: the
first op whose output mixes the samples (nnlint.probes.locate).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Optional

from nnlint.probes import compare
from nnlint.probes.base import Probe, ProbeContext, probe
from nnlint.probes.locate import Origin, differs_across_samples, locate
from nnlint.probes.passes import Dependence, Variant
from nnlint.trace.batch import map_tensors

FLOOR = 1e-6      # relative: below it nothing is looked into further (healthy models measure 0.0)
RECHECK = 1e-4    # relative: below it the change is measured again in float64


@dataclass
class BatchMixing:
    tested: bool
    reason: str = ""                    # why it was not tested
    change: float = 0.0                 # max |change of samples 1..k-1| / max |their output|
    delta: float = 0.0                  # the same, absolute
    float64_change: Optional[float] = None
    changed_input: str = ""             # which input of sample 0 was changed
    output: str = ""                    # the output where the change was largest
    samples: int = 0
    origin: Optional[Origin] = None
    batch_first_module: Optional[str] = None   # the module to build with batch_first=True, when that is the cause
    # the modules after it that read (seq, batch, ...) too: once the first is fixed, the samples mix there
    later_batch_first: list[str] = field(default_factory=list)
    pairwise: list[str] = field(default_factory=list)   # outputs with two batch dims, not compared

    @property
    def mixes(self) -> bool:
        return self.tested and self.change > FLOOR and (self.float64_change is None or self.float64_change > FLOOR)


def measure(d: Dependence, variants: Optional[list[Variant]] = None) -> tuple[Optional[compare.Change], Optional[Variant], list[int]]:
    """The largest change of the other samples over the variants, the variant that made it, and the
    outputs left out as pairwise."""
    shapes = d.full_output_shapes()
    best: Optional[compare.Change] = None
    chosen: Optional[Variant] = None
    pairwise: set[int] = set()
    for variant in variants if variants is not None else d.layout.variants:
        dv = d.where_varied(variant)
        found, skipped = compare.across_samples(dv.clean().outputs, dv.changed(variant).outputs, dv.layout.k, shapes,
                                                dv.layout.size)
        pairwise.update(skipped)
        if found is not None and (best is None or found.relative > best.relative):
            best, chosen = found, variant
    return best, chosen, sorted(pairwise)


@probe
class BatchMixingProbe(Probe):
    name = "batch_mixing"
    summary = "changes one sample's input in eval mode and compares the other samples' outputs"

    def run(self, ctx: ProbeContext) -> BatchMixing:
        d = Dependence.of(ctx)
        if d is None:
            return BatchMixing(False, "the probes did not run (see the notes)")
        if d.layout.k < 2:
            return BatchMixing(False, "the batch has one sample")
        if not d.layout.variants:
            return BatchMixing(False, "every sample of the batch is the same")
        best, variant, pairwise = measure(d)
        if best is not None and best.relative > FLOOR and d.small:
            d = d.at_full_size()             # measured again at the batch's own size before it counts
            best, variant, pairwise = measure(d, [variant])
        result = BatchMixing(True, samples=d.layout.k, pairwise=[_path(d, i) for i in pairwise])
        if best is None or variant is None:
            return result
        result.change, result.delta = best.relative, best.delta
        result.changed_input, result.output = variant.name, _path(d, best.output)
        if best.relative <= FLOOR:
            return result
        if best.relative < RECHECK:
            result.float64_change = _float64_change(d, variant)
            if not result.mixes:
                return result
        clean, _ = d.probe_batch()
        changed, _ = d.probe_batch(variant)
        result.origin = locate(d.model, lambda: d.run(clean), lambda: d.run(changed), differs_across_samples(d.layout.k))
        result.batch_first_module = _batch_first_module(ctx.model, result.origin)
        if result.batch_first_module is not None:
            result.later_batch_first = _later_batch_first(d, clean, changed, result.batch_first_module)
        return result


MAX_CHAIN = 4   # sequence-first modules followed down the model after the first


def _later_batch_first(d: Dependence, clean, changed, first: str) -> list[str]:
    """The sequence-first modules the samples reach next, found by setting `batch_first=True` on the
    first one (and then on each found) for a moment and locating again: an LSTM feeding a
    MultiheadAttention, both built without batch_first, is one fix of two modules, not two rounds in
    which the first looks like it moved the fault. Every flag is restored."""
    modules = dict(d.model.named_modules())
    flipped: list = []
    found: list[str] = []
    try:
        name = first
        while len(found) < MAX_CHAIN:
            for m in modules[name].modules():
                if getattr(m, "batch_first", None) is False:
                    m.batch_first = True
                    flipped.append(m)
            origin = locate(d.model, lambda: d.run(clean), lambda: d.run(changed), differs_across_samples(d.layout.k))
            name = _batch_first_module(d.model, origin)
            if name is None or name == first or name in found:
                break
            found.append(name)
    except Exception:   # the model refuses the other layout: the first module is still the finding
        pass
    finally:
        for m in flipped:
            m.batch_first = False
    return found


def _path(d: Dependence, index: int) -> str:
    return d.output_paths[index] if index < len(d.output_paths) else f"output {index}"


def _float64_change(d: Dependence, variant: Variant) -> Optional[float]:
    """The same change on a float64 copy of the model and batch (None when the model cannot be copied)."""
    import copy

    try:
        model = copy.deepcopy(d.model).double()
    except Exception:
        return None
    batch = map_tensors(lambda t: t.double() if t.is_floating_point() else t, d.batch)
    d64 = Dependence(model, batch, d.trace, d.layout, small=False)
    try:
        best, _, _ = measure(d64, [variant])
    except Exception:   # an op without a float64 kernel
        return None
    return best.relative if best is not None else 0.0


def _batch_first_module(model, origin: Optional[Origin]) -> Optional[str]:
    """Where `batch_first=True` is the fix: from the origin's module up, the outermost of the unbroken
    run of modules that take a `batch_first` argument and hold a module reading (seq, batch, ...): the
    GRU itself, the TransformerEncoderLayer around a MultiheadAttention, a user's module that passes
    its own `batch_first` through."""
    if origin is None:
        return None
    modules = dict(model.named_modules())
    parts = origin.module.split(".") if origin.module else []
    found = None
    for n in range(len(parts), -1, -1):
        m = modules.get(".".join(parts[:n]))
        if m is not None and (hasattr(m, "batch_first") or _takes_batch_first(m)) and any(getattr(s, "batch_first", None) is False for s in m.modules()):
            found = ".".join(parts[:n])
        elif found is not None:
            break
    return found


def _takes_batch_first(module) -> bool:
    try:
        return "batch_first" in inspect.signature(type(module).__init__).parameters
    except (TypeError, ValueError):
        return False
