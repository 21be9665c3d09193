"""What the dependence probes (batch mixing, ignored inputs, causal leakage) share: a few samples of the
batch, one clean eval-mode pass on them and passes with one input of sample 0 changed, compared output
by output. Computed once per check (ProbeContext.shared) and read by every probe that needs them.

The probe batch is SAMPLES rows of the user's batch. For the first look it is also made small: token
sequences longer than MAX_TOKENS are cut to their first and last MAX_TOKENS / 2 positions (so that a
padded sample keeps its padding, at either end), image sides longer than MAX_SIDE cropped (on
ResNet-50 at 224 pixels and GPT-2 at 128 tokens a pass costs 2-3% of a training step instead of 8-17%;
measured on 2 CPU cores, 0.04 s of a 2.1 s step and 0.12 s of a 3.7 s step).
What depends on what is structure, not size, so the small batch answers the question; whatever it
finds is measured again at the batch's own size before it is reported (`at_full_size`), so a model
that reads only positions past the cut is not taken for one that ignores its input. A model that
cannot run on the small batch (a fixed sequence length or image size) is probed at its own size, and
one that cannot run on a few samples (a fixed batch size) on the whole batch. A change the cut leaves
no trace of (sample 0's and the donor's values equal in every position kept) is made at the batch's
own size (`where_varied`).

A changed input takes another sample's values (a donor row of the batch, so token ids, masks and pixel
values stay valid), for a causal model only from the middle of the sequence on. Every pass runs in
eval mode without grad (the clean one with grad on the float inputs, for their gradients, but for an
image its stem conv reads whole: `gradient_inputs`) under the same fixed seed, so a dropout left on in
eval draws the same mask each time. Nothing here imports torch at module level.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from nnlint.probes.causality import recognise
from nnlint.trace.batch import call_model, iter_tensors, map_tensors, named_tensors
from nnlint.trace.recorder import eager
from nnlint.trace.state import seed_all

SAMPLES = 2          # rows of the probe batch: sample 0 is changed, sample 1 watched
MAX_TOKENS = 8       # token sequences are cut to this many positions for the first look
MAX_SIDE = 64        # image sides are cropped to this many pixels for the first look
SEED = 0
# Keyword arguments a model is called with on a cropped image, where its forward takes them: Hugging
# Face's vision transformers (ViT, DeiT, BEiT, CLIP, SigLIP, Swin, ViTMAE) refuse an image of another
# size than their config's unless told to interpolate their position embeddings, and would be probed at
# 224 pixels (ViT-B/16: 0.18 of a training step instead of 0.02). Which sample and which input a
# prediction depends on does not change with it, and a finding is measured again at the batch's own
# size, where the model is called as the user calls it.
CROPPED_IMAGE_KEYWORDS = {"interpolate_pos_encoding": True}


@dataclass(frozen=True)
class Input:
    """One tensor of the user's batch, as the probes see it."""

    path: str                 # "batch", "batch[1]", "batch['attention_mask']"
    index: int                # its position among the batch's tensors
    batched: bool             # dim 0 holds the samples
    is_float: bool
    donor: Optional[int]      # a row of the batch whose values differ from sample 0's; None: all rows equal
    timed: bool = False       # dim 1 is the sequence of the main sequence input
    # Only a loss target (a Hugging Face batch's labels, nnlint.trace.lossprobe): changing it changes
    # nothing but the loss, a scalar no comparison reads, so no pass changes it.
    loss_only: bool = False


@dataclass(frozen=True)
class Variant:
    """Which inputs of sample 0 a pass changes: one integer input, or all float inputs together."""

    name: str                 # the input's path, or "float inputs"
    inputs: tuple[int, ...]   # Input.index of each changed tensor
    # Only these features: (dim, inclusive (first, last) runs along it); None: the whole sample.
    features: Optional[tuple[int, tuple[tuple[int, int], ...]]] = None


@dataclass
class Layout:
    size: int                          # samples in the user's batch
    k: int                             # samples in the probe batch
    rows: list[int]                    # rows taken from the batch: 0 .. k-1, then the donors
    inputs: list[Input]
    seq_len: Optional[int] = None      # length of the main sequence input (dim 1), when there is one
    causal: bool = False               # a causal model: inputs change only from the middle of the sequence

    @property
    def variants(self) -> list[Variant]:
        varied = [i for i in self.inputs if i.batched and i.donor is not None and not i.loss_only]
        out = [Variant(i.path, (i.index,)) for i in varied if not i.is_float]
        floats = tuple(i.index for i in varied if i.is_float)
        if floats:
            out.append(Variant("float inputs" if len(floats) > 1 else self.inputs[floats[0]].path, floats))
        return out


@dataclass
class Pass:
    """The outputs of one pass (every tensor of the model's output, detached, in order)."""

    outputs: list[Any]
    grads: dict[int, Any] = field(default_factory=dict)   # clean pass: Input.index -> d(projection)/d(input)
    varied: bool = True       # False: the donor's values equal sample 0's where they were taken


def layout(batch, causal: bool, model_inputs: Optional[set[str]] = None) -> Optional[Layout]:
    """The probe batch's rows and inputs. `model_inputs`: the paths of the batch's tensors the traced
    step saw the model read (trace.inputs: those it saw only as loss targets are left out of it)."""
    tensors = list(named_tensors(batch))
    leading = [t.shape[0] for _, t in tensors if t.dim() > 0]
    if not leading:
        return None
    if _per_sample_list(batch):
        raise ProbeSkipped("the batch holds a list of tensors, one per sample (detection-style images), "
                           "which the probes do not slice")
    size = int(leading[0])
    k = min(SAMPLES, size)
    seq_len = _sequence_length([t for _, t in tensors], size)
    rows = list(range(k))
    inputs = []
    for index, (path, t) in enumerate(tensors):
        batched = t.dim() > 0 and t.shape[0] == size
        donor = _donor(t, k) if batched and size > 1 else None
        if donor is not None and donor not in rows:
            rows.append(donor)
        inputs.append(Input(path, index, batched, t.is_floating_point(), donor,
                            timed=seq_len is not None and batched and t.dim() >= 2 and t.shape[1] == seq_len,
                            loss_only=model_inputs is not None and path not in model_inputs))
    return Layout(size, k, rows, inputs, seq_len, causal and seq_len is not None and seq_len >= 2)


def _per_sample_list(batch) -> bool:
    """A list of tensors of one shape inside an argument (torchvision detection's `model([img0, img1])`):
    the samples are the list's elements, not the rows of a tensor."""
    import torch

    args = list(batch.values()) if isinstance(batch, Mapping) else list(batch) if isinstance(batch, (tuple, list)) else []
    return any(isinstance(arg, list) and len(arg) >= 2 and all(isinstance(t, torch.Tensor) for t in arg) for arg in args)


def _sequence_length(tensors: list, size: int) -> Optional[int]:
    """Dim 1 of the first integer (N, T) input (token ids), else of the first float (N, T, F) input."""
    for t in tensors:
        if t.dim() == 2 and t.shape[0] == size and not t.is_floating_point() and t.dtype.is_signed:
            return int(t.shape[1])
    for t in tensors:
        if t.dim() == 3 and t.shape[0] == size and t.is_floating_point():
            return int(t.shape[1])
    return None


def _donor(t, k: int) -> Optional[int]:
    """The first row, after the probe's own, whose values differ from sample 0's (else one of the probe's)."""
    first = t[0]
    for i in list(range(k, t.shape[0])) + list(range(1, k)):
        if t[i].shape != first.shape or not bool((t[i] == first).all()):
            return i
    return None


class Dependence:
    """The passes on one probe batch (small, or at the batch's own size); each computed once."""

    def __init__(self, model, batch, trace, lay: Layout, small: bool, every_gradient: bool = False):
        self.model, self.batch, self.trace, self.layout = model, batch, trace, lay
        self.small = small
        self.every_gradient = every_gradient   # the last word on a finding: no input's gradient skipped
        self.seq_len = lay.seq_len if lay.seq_len is None or not small else min(lay.seq_len, MAX_TOKENS)
        self.selection, self.shrunk, cropped = self._select(batch, lay, small)
        self.keywords = _accepted(model, CROPPED_IMAGE_KEYWORDS) if cropped else {}
        self._passes: dict[str, Pass] = {}
        self._full: Optional[Dependence] = None
        self._whole: Optional[Dependence] = None
        self.output_paths: list[str] = []     # "output", "output['logits']": the outputs' names, in order

    @property
    def causal_from(self) -> Optional[int]:
        """A causal model's changed inputs differ from this position on (the middle of the sequence)."""
        return self.seq_len // 2 if self.layout.causal and self.seq_len else None

    @classmethod
    def of(cls, ctx) -> Optional["Dependence"]:
        """The shared passes of this check: the small probe batch when the model runs on it, else the
        batch's own size, else the whole batch; None when the batch has no samples to vary."""
        if "dependence" not in ctx.shared:
            try:
                ctx.shared["dependence"] = cls._first_that_runs(ctx)
            except Exception as exc:   # said once for every probe that reads the passes
                ctx.shared["dependence"] = None
                why = str(exc) if isinstance(exc, ProbeSkipped) else \
                    f"the model raised in eval mode: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ctx.trace.notes.append(f"the dependence probes (batch mixing, ignored inputs, causal leakage) did not "
                                       f"run: {why}; NN701-NN703 could not look")
        return ctx.shared["dependence"]

    @classmethod
    def _first_that_runs(cls, ctx) -> Optional["Dependence"]:
        if ctx.step is not None:
            raise ProbeSkipped("the check ran a training step (step=), so the model's own inputs are not known")
        lay = layout(ctx.batch, recognise(ctx).causal, {r.path for r in ctx.trace.inputs} or None)
        if lay is None:
            return None
        error: Optional[Exception] = None
        for small, current in ((True, lay), (False, lay), (False, _whole_batch(lay))):
            d = cls(ctx.model, ctx.batch, ctx.trace, current, small)
            if small and not d.shrunk:
                continue   # nothing to make smaller: the batch's own size comes next
            try:
                d.clean()
                return d
            except Exception as exc:   # this size does not fit the model: try the next
                error = exc
            if current.k == current.size:
                break
        raise error if error is not None else RuntimeError("the model did not run on the probe batch")

    def at_full_size(self) -> "Dependence":
        """The same passes at the batch's own size (a finding on the small batch is measured again there)."""
        if not self.small:
            return self
        if self._full is None:
            self._full = Dependence(self.model, self.batch, self.trace, self.layout, small=False)
        return self._full

    def whole_batch(self) -> "Dependence":
        """The same passes on every sample of the batch: an input that has no influence on two samples
        (a dead ReLU layer there) may still have one on the others. It takes the gradient of every float
        input: swapping sample 0's values says nothing of the other samples, the gradient sums over all."""
        if self.layout.k == self.layout.size and not self.small and self.every_gradient:
            return self
        if self._whole is None:
            self._whole = Dependence(self.model, self.batch, self.trace, _whole_batch(self.layout), small=False,
                                     every_gradient=True)
        return self._whole

    # -- the probe batch --
    def _select(self, batch, lay: Layout, small: bool):
        import torch

        rows = torch.tensor(lay.rows)
        shrunk, cropped = [False], [False]

        def take(t):
            if t.dim() > 0 and t.shape[0] == lay.size:
                t = t[rows.to(t.device)]
            if small:
                cut = self._cut(t)
                crop = self._crop(cut)
                shrunk[0] = shrunk[0] or crop is not t
                cropped[0] = cropped[0] or crop is not cut
                t = crop
            return t

        return map_tensors(take, batch), shrunk[0], cropped[0]

    def _cut(self, t):
        """Cut the sequence dims (every dim of the main sequence's length) to their first and last positions."""
        import torch

        full = self.layout.seq_len
        if full is not None and full > MAX_TOKENS:
            # the first and the last positions: a padded sample's padding (right or left) stays in
            half = MAX_TOKENS // 2
            for d in range(1, t.dim()):
                if t.shape[d] == full:
                    tail = MAX_TOKENS - half
                    t = torch.cat([t.narrow(d, 0, half), t.narrow(d, full - tail, tail)], dim=d)
        return t

    @staticmethod
    def _crop(t):
        """Crop an image's sides (every dim after the channels) to their middle MAX_SIDE pixels."""
        if t.is_floating_point() and t.dim() >= 4:
            for d in range(2, t.dim()):
                if t.shape[d] > MAX_SIDE:
                    t = t.narrow(d, (t.shape[d] - MAX_SIDE) // 2, MAX_SIDE)
        return t

    @property
    def gradient_inputs(self) -> list[Input]:
        """The float inputs the clean pass takes gradients for: all of them, but for a lone float input
        that goes straight into weight layers reading every feature (an image into a stem conv). Its
        features cannot be read in part, and whether it is read at all is the swap of its variant, a pass
        the batch-mixing probe makes anyway (nnlint.probes.first_layer)."""
        from nnlint.probes.first_layer import reads_every_feature

        floats = [i for i in self.layout.inputs if i.batched and i.is_float]
        read = [i for i in floats if not i.loss_only]
        if len(read) == 1 and read[0].donor is not None and not self.every_gradient:
            record = next((r for r in self.trace.inputs if r.path == read[0].path), None)
            if reads_every_feature(self.trace, self.model, record):
                return [i for i in floats if i is not read[0]]
        return floats

    def probe_batch(self, variant: Optional[Variant] = None, *, requires_grad: bool = False):
        """k rows: sample 0 (with the variant's inputs taken from their donors), then samples 1 .. k-1.
        Returns the batch and whether the variant changed anything."""
        lay = self.layout
        changed = set(variant.inputs) if variant is not None else set()
        index = iter(range(len(lay.inputs)))
        varied = [False]
        start = self.causal_from

        def build(t):
            spec = lay.inputs[next(index)]
            if not spec.batched:
                return t
            out = t[: lay.k].clone()
            if spec.index in changed and spec.donor is not None:
                donor = t[lay.rows.index(spec.donor)]
                if variant.features is not None:
                    dim, runs = variant.features
                    for first, last in runs:   # dim counts the batch: the sample's own dims are one less
                        out[0].narrow(dim - 1, first, last - first + 1).copy_(donor.narrow(dim - 1, first, last - first + 1))
                elif spec.timed and start is not None:
                    out[0, start:] = donor[start:]
                else:
                    out[0] = donor
                varied[0] = varied[0] or not bool((out[0] == t[0]).all())
            if requires_grad and spec.is_float:
                out.requires_grad_(True)
            return out

        return map_tensors(build, self.selection), varied[0]

    # -- the passes --
    def run(self, batch, *, grad: bool = False) -> list:
        import torch

        self.model.eval()
        # compiled code runs eagerly, as in the traced step: no compile for a probe's new shapes
        with torch.random.fork_rng(devices=_cuda_devices()), eager():
            seed_all(SEED)
            with torch.set_grad_enabled(grad):
                named = list(named_tensors(call_model(self.model, batch, **self.keywords), "output"))
        self.output_paths = [path for path, _ in named]
        return [t for _, t in named]

    def clean(self) -> Pass:
        """The unchanged probe batch, with the gradient of a fixed random projection of every float
        output with respect to each float input (zero where an input has no influence)."""
        if "clean" not in self._passes:
            self._passes["clean"] = self._clean()
        return self._passes["clean"]

    def _clean(self) -> Pass:
        import torch

        floats = self.gradient_inputs
        batch, _ = self.probe_batch(requires_grad=bool(floats))
        leaves = list(iter_tensors(batch))
        outputs = self.run(batch, grad=bool(floats))
        grads: dict[int, Any] = {}
        if floats:
            g = torch.Generator().manual_seed(SEED)
            terms = [(o * torch.randn(o.shape, generator=g).to(o)).sum() for o in outputs
                     if o.is_floating_point() and o.requires_grad]
            wanted = [leaves[i.index] for i in floats]
            found = torch.autograd.grad(sum(terms), wanted, allow_unused=True) if terms else [None] * len(wanted)
            for spec, leaf, grad in zip(floats, wanted, found):
                grads[spec.index] = torch.zeros_like(leaf) if grad is None else grad.detach()
        return Pass([o.detach() for o in outputs], grads)

    def changed(self, variant: Variant) -> Pass:
        """The probe batch with the variant's inputs of sample 0 taken from another sample."""
        if variant.name not in self._passes:
            import torch

            batch, varied = self.probe_batch(variant)
            with torch.no_grad():
                self._passes[variant.name] = Pass(self.run(batch), varied=varied)
        return self._passes[variant.name]

    def where_varied(self, variant: Variant) -> "Dependence":
        """This probe batch, or the batch's own size where cutting it removed every difference the
        variant makes (a mask that differs from sample 0's only in positions the cut left out): an
        input is not taken for ignored, nor a sample's influence for absent, because the cut hid it."""
        if self.small and not self.changed(variant).varied:
            return self.at_full_size()
        return self

    def full_output_shapes(self) -> list[Optional[tuple[int, ...]]]:
        """The shape of each output in the traced step (the whole batch), where the trace knows it."""
        from nnlint.trace.structure import Structure

        structure = Structure.of(self.trace)
        out = []
        for s in self.trace.output_serials:
            summary = structure.summary(s)
            out.append(tuple(summary.shape) if summary is not None else None)
        return out


def _accepted(model, keywords: dict) -> dict:
    """The keywords that the model's forward names as its parameters (not a catch-all **kwargs)."""
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (AttributeError, TypeError, ValueError):
        return {}
    return {k: v for k, v in keywords.items()
            if k in parameters and parameters[k].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def _whole_batch(lay: Layout) -> Layout:
    """Probe on every sample (a model that runs only at its batch size): the donors are rows of it."""
    return Layout(lay.size, lay.size, list(range(lay.size)), lay.inputs, lay.seq_len, lay.causal)


def _cuda_devices() -> list:
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []


class ProbeSkipped(Exception):
    """A probe that cannot run on this setup, and why (said in the trace's notes)."""
