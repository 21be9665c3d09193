from __future__ import annotations

from nnlint.fix.kinds.batch_first import BatchFirst, BatchFirstParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import location_for
from nnlint.rules.dataflow._origin import REDUCTIONS, describe_origin, origin_location, share
from nnlint.trace.records import Trace

_SEQUENCE_FIRST = {"lstm", "gru", "rnn_tanh", "rnn_relu", "multi_head_attention_forward",
                   "_transformer_encoder_layer_fwd", "_native_multi_head_attention"}
_VIEWS = {"view", "reshape", "view_as", "reshape_as", "flatten", "unflatten"}


class BatchMixing(Rule):
    """## What it does
    In eval mode, changes one sample of the batch (sample 0 takes another sample's inputs) and
    compares the outputs of the other samples with those of the unchanged batch, on 2 samples of the
    batch. Any change of another sample's output means the model mixes samples; the finding names
    the first op whose output mixes them, found by running both batches again and comparing every
    op's output along the batch dim.

    Typical causes: `x.view(t, b, f)` where `x.transpose(0, 1)` was meant (view reinterprets memory,
    so one row gets pieces of several samples); an `nn.LSTM`/`nn.GRU`/`nn.MultiheadAttention`/
    `nn.TransformerEncoderLayer` built with the default `batch_first=False` and fed `(batch, seq, ...)`
    (it reads the batch as the sequence); `softmax(dim=0)` or `F.normalize(dim=0)`; a sum or mean over
    dim 0.

    Not reported: BatchNorm in eval mode (it uses running statistics, per sample; one built with
    `track_running_stats=False` normalizes with the batch's own and mixes it: NN503 reports that),
    outputs with two batch-sized dims (a pairwise-distance or similarity matrix, where every row is
    meant to see every sample). The outputs are compared relative to their largest value; healthy models measure exactly
    0 (rows of other samples are computed by the same kernels on the same values). A change between
    1e-6 and 1e-4 of the output is measured again on a float64 copy of the model, where the rounding
    of batched matrix products (TF32, blocked kernels) vanishes and a real dependence does not.

    Measured on the issue's gallery (relative change of the other samples): view-for-transpose
    1.5e-2, softmax over dim 0 0.16, LSTM 0.83, GRU 0.49, MultiheadAttention 0.67,
    TransformerEncoderLayer 0.37, normalize(dim=0) 0.2, batch sum 0.6; every healthy twin 0 (a
    fast-path TransformerEncoderLayer 4.7e-7, under the float64 band).

    ## Why is this bad?
    Each sample's prediction then depends on what else is in the batch: training learns from
    information it will not have at test time (a sample alone, another batch size), the loss leaks
    labels across samples, and eval results change with the batch composition.

    ## Options
    - `relative_tolerance` (default 1e-5): report when the change exceeds this fraction of the other
      samples' largest output value ...
    - `absolute_tolerance` (default 1e-6): ... and this absolute amount.

    ## Fix safety
    Unsafe, and only for a `batch_first` mix-up: the module is built with `batch_first=True` (what
    reads its output by position may need a look). A `view` becomes a `transpose`/`permute` and a
    wrong `dim` the right one by hand: the message says which.
    """

    code = "NN701"
    name = "batch-mixing"
    severity = "error"
    summary = "changing one sample changes other samples' outputs (view for transpose, batch_first, dim=0)"
    options = {"relative_tolerance": 1e-5, "absolute_tolerance": 1e-6}
    reads = frozenset({"batch_mixing"})
    about = "model"
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.GRU(8, 16)              # batch_first=False: reads dim 0 as the sequence
            batch = torch.randn(4, 12, 8)      # (batch, time, features)
            """, module=""),
        Healthy("""
            model = nn.GRU(8, 16, batch_first=True)
            batch = torch.randn(4, 12, 8)      # (batch, time, features)
            """),
    )

    def check(self, trace: Trace):
        result = trace.probes.get("batch_mixing")
        if result is None or not result.mixes:
            return
        change = result.float64_change if result.float64_change is not None else result.change
        if change <= self.opts["relative_tolerance"] or result.delta <= self.opts["absolute_tolerance"]:
            return
        origin = result.origin
        if origin is not None and _batch_statistics(trace, origin):
            return   # a BatchNorm without running statistics: NN503 reports that cause
        module = origin.module if origin is not None else ""
        where = f"; the samples first mix at {describe_origin(trace, origin)}" if origin is not None else ""
        measured = f"{share(result.change)} of their largest value" + (
            f" ({share(result.float64_change)} in float64)" if result.float64_change is not None else "")
        fix = None
        if result.batch_first_module is not None:
            owner = trace.modules.get(result.batch_first_module)
            fix = BatchFirst.make(result.batch_first_module,
                                  f"build {result.batch_first_module or 'the model'} with batch_first=True",
                                  BatchFirstParams(owner.type if owner is not None else ""))
        yield self.diagnostic(
            module,
            f"changing sample 0's {result.changed_input} in eval mode changes the other samples' {result.output} by "
            f"{measured}{where}: {_advice(trace, result)}",
            location=origin_location(trace, origin) if origin is not None else None,
            evidence={"change": result.change, "float64_change": result.float64_change, "delta": result.delta,
                      "changed_input": result.changed_input, "output": result.output, "samples": result.samples,
                      "origin": origin.func if origin is not None else None, "pairwise": result.pairwise},
            fix=fix,
        )
        for later in result.later_batch_first:   # fixed in the same round as the first, or it looks moved
            owner = trace.modules.get(later)
            kind = owner.type if owner is not None else ""
            yield self.diagnostic(
                later,
                f"{later} ({kind}) reads dim 0 as the sequence (batch_first=False) too: once "
                f"{result.batch_first_module or 'the model'} is built with batch_first=True, the samples mix here; "
                "build it with batch_first=True as well",
                location=location_for(trace, later),
                evidence={"after": result.batch_first_module, "change": None},
                fix=BatchFirst.make(later, f"build {later} with batch_first=True", BatchFirstParams(kind)),
            )


def _batch_statistics(trace: Trace, origin) -> bool:
    """The mixing starts in a BatchNorm built with track_running_stats=False (NN503's finding)."""
    rec = trace.modules.get(origin.module)
    return origin.func == "batch_norm" and rec is not None and rec.attrs.get("track_running_stats") is False


def _advice(trace: Trace, result) -> str:
    origin = result.origin
    func = origin.func.strip("<>") if origin is not None else ""
    if result.batch_first_module is not None:
        reader = trace.modules.get(origin.module)
        owner = trace.modules.get(result.batch_first_module)
        what = f"{origin.module or 'the model'} ({reader.type if reader is not None else origin.module_type})"
        build = "build it with batch_first=True" if result.batch_first_module == origin.module else \
            (f"build {result.batch_first_module or 'the model'} ({owner.type if owner is not None else ''}) with "
             "batch_first=True, which it passes on")
        return (f"{what} reads dim 0 as the sequence (batch_first=False) but is fed (batch, seq, ...): {build}, "
                "or transpose(0, 1) its input and output")
    if func in _SEQUENCE_FIRST:
        return "the layer reads dim 0 as the sequence: build it with batch_first=True, or transpose(0, 1) around it"
    if func in _VIEWS:
        return (f"{func}() reinterprets memory, so one row gets values of several samples; to swap dims use "
                "transpose()/permute() (then .contiguous() or reshape if a view is needed)")
    if func in ("softmax", "log_softmax", "normalize") and origin.dim == 0:
        return f"{func} over dim=0 normalizes across the batch; normalize each sample: dim=1 (or dim=-1)"
    if func in REDUCTIONS:
        return (f"{func}() reduces over the batch (dim {origin.dim if origin.dim is not None else 'all'}); reduce over "
                "each sample's own dims (dim=1 ...), or make the batch statistic explicit outside the model")
    return "each sample must be computed from its own inputs only: reduce, normalize and reshape within a sample"
