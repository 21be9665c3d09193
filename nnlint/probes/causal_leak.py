"""NN703's probe: in an autoregressive model, does the output at position t change when a later token
changes?

Only for a model declared or recognised as causal (nnlint.probes.causality). Sample 0's sequence
inputs take another sample's values from the middle position t0 = T // 2 on (nnlint.probes.passes:
the same changed passes the batch-mixing probe compares across samples), and sample 0's outputs at
positions before t0 are compared with the clean pass: relative change above FLOOR is a leak, located
at the first op whose earlier positions changed (nnlint.probes.locate): attention without its mask,
a sum over the whole sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnlint.probes import compare
from nnlint.probes.base import Probe, ProbeContext, probe
from nnlint.probes.causality import recognise
from nnlint.probes.locate import Origin, differs_before, locate
from nnlint.probes.passes import Dependence, Variant

FLOOR = 1e-6   # relative; a causal model's earlier positions are bit-identical (PEERS.md)


@dataclass
class CausalLeak:
    causal: bool                        # declared or recognised as autoregressive
    why: str = ""                       # how: "declared", "GPT2LMHeadModel", "a triangular mask (tril) ..."
    tested: bool = False
    reason: str = ""
    change: float = 0.0                 # max |change at positions < t0| / max |output there|
    position: int = 0                   # t0: the first position changed
    seq_len: int = 0
    changed_input: str = ""
    output: str = ""
    origin: Optional[Origin] = None

    @property
    def leaks(self) -> bool:
        return self.tested and self.change > FLOOR


@probe
class CausalLeakProbe(Probe):
    name = "causal_leak"
    summary = "changes a causal model's later tokens and compares the outputs at earlier positions"

    def run(self, ctx: ProbeContext) -> CausalLeak:
        causality = recognise(ctx)
        result = CausalLeak(causality.causal, causality.why)
        if not causality.causal:
            return result
        d = Dependence.of(ctx)
        if d is None:
            result.reason = "the probes did not run (see the notes)"
            return result
        if d.causal_from is None:
            result.reason = "the batch has no sequence input (an (N, T) tensor of ids or (N, T, F) of features)"
            return result
        best, variant = _measure(d)
        if best is not None and best.relative > FLOOR and d.small:
            d = d.at_full_size()
            best, variant = _measure(d)
        if best is None or variant is None:
            result.reason = "no output has a position for each input position"
            return result
        result.tested = True
        result.change, result.position, result.seq_len = best.relative, d.causal_from, d.seq_len
        result.changed_input, result.output = variant.name, d.output_paths[best.output]
        if result.leaks:
            clean, _ = d.probe_batch()
            changed, _ = d.probe_batch(variant)
            result.origin = locate(d.model, lambda: d.run(clean), lambda: d.run(changed),
                                   differs_before(d.seq_len, d.causal_from, d.layout.k))
        return result


def _measure(d: Dependence) -> tuple[Optional[compare.Change], Optional[Variant]]:
    best: Optional[compare.Change] = None
    chosen: Optional[Variant] = None
    timed = {i.index for i in d.layout.inputs if i.timed}
    for variant in d.layout.variants:
        # only the sequence inputs change, and only from t0 on: any other input may move every position
        if not set(variant.inputs) <= timed:
            continue
        dv = d.where_varied(variant)
        if not dv.changed(variant).varied:
            continue
        found = compare.before(dv.clean().outputs, dv.changed(variant).outputs, dv.seq_len, dv.causal_from, dv.layout.k)
        if found is not None and (best is None or found.relative > best.relative):
            best, chosen = found, variant
    return best, chosen
