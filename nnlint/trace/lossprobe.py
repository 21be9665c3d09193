"""The loss of the check's backward, and the record of the objective (records.Objective): the user's
`loss_fn`, a model output's `.loss` (Hugging Face models given labels), a step's loss; else a surrogate.

`loss_fn` may be `nn.CrossEntropyLoss()`, `F.cross_entropy`, or any function that calls torch losses (a
language model's `F.cross_entropy(logits.view(-1, V), y.view(-1))`, a main loss plus an auxiliary one). A
TorchFunctionMode around the call (`loss_calls`) sees each torch loss it makes, measures its input and
target before the call (nnlint.trace.objective), and follows, inside `loss_fn`, the tensors derived from
the model's outputs, so that each call knows which model tensor it was fed (its lineage serial) and what
the loss function did to it first (`log_softmax`, `.detach()`).

When a call would raise (a class index out of range: an IndexError on CPU, a device-side assert on
CUDA), it is not made; when the loss function or the backward raises, the failure is recorded. Either
way the check goes on, with a surrogate loss driving the backward, and the objective rules explain the
failure; `raise_unexplained` turns a failure no finding explains back into "could not run".
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from nnlint.diagnostics import Location
from nnlint.errors import ModelRaised
from nnlint.trace import objective as measuring
from nnlint.trace import ops as opnames
from nnlint.trace.batch import iter_tensors
from nnlint.trace.records import LossCall, LossFailure, LossValue, Objective, Trace
from nnlint.trace.source import is_user_file

# Ops inside a loss function that cut the graph between the model and the loss.
_CUTS = {"detach", "detach_"}


class LossWouldFail(Exception):
    """A loss call that would raise was not made; `call.raised` says why."""

    def __init__(self, call: LossCall):
        super().__init__(call.raised)
        self.call = call


class LossRaised(ModelRaised):
    """The loss or its backward raised and no finding explains why: the check could not run."""

    def __init__(self, failure: LossFailure):
        Exception.__init__(self, failure.message)
        self.what, self.original = failure.stage, None


def loss_of_pass(output, out_tensors, target, loss_fn, trace: Trace, seen: list[LossCall],
                 serial_of: Callable[[Any], Optional[int]]):
    """The loss to run the backward pass from (None when nothing in the output can carry a gradient),
    recording the objective on `trace`. `seen`: the loss calls made inside the forward."""
    if loss_fn is None:
        model_loss = output_loss(output)
        if model_loss is None:
            return surrogate_loss(out_tensors)
        trace.objective = Objective("outputs.loss", f"{trace.model_type}(...).loss", calls=list(seen))
        drop_label_inputs(trace)
        return backward_loss(model_loss, trace, [t for t in out_tensors if t is not model_loss])
    trace.objective = Objective("loss_fn", getattr(loss_fn, "__name__", type(loss_fn).__name__))
    loss = None
    with loss_calls(serial_of, follow=True, within=sys._getframe()) as calls:
        try:
            loss = loss_fn(output, target) if target is not None else loss_fn(output)
        except LossWouldFail as exc:
            trace.objective.failure = predicted_failure("the loss function", exc.call)
        except Exception as exc:
            trace.objective.failure = LossFailure("the loss function", _error(exc), str(ModelRaised("the loss function", exc)))
    trace.objective.calls = calls
    if trace.objective.failure is not None:
        trace.notes.append(f"the loss could not be computed ({trace.objective.failure.error}): a surrogate loss "
                           "drove the backward pass, so the gradients are relative")
        return surrogate_loss(out_tensors)
    return backward_loss(loss, trace, out_tensors)


def drop_label_inputs(trace: Trace) -> None:
    """A batch tensor that only losses read as their target (a Hugging Face batch's `labels`) is the
    loss's, not an input the data rules should judge: drop it from the trace's inputs."""
    consumers: dict[int, list] = {}
    for op in trace.ops_in("train"):
        for s in op.inputs:
            consumers.setdefault(s, []).append(op)

    def only_targets(serial: int, depth: int = 0) -> bool:
        uses = consumers.get(serial, [])
        if not uses or depth > 8:
            return False
        for op in uses:
            if op.func in measuring.LOSSES and op.inputs[:1] != [serial]:
                continue
            if (op.kind in opnames.PASSTHROUGH or op.func in opnames.PASSTHROUGH) and op.outputs \
                    and all(only_targets(o, depth + 1) for o in op.outputs):
                continue
            return False
        return True

    kept = [rec for rec in trace.inputs if not only_targets(rec.serial)]
    if kept and len(kept) < len(trace.inputs):
        trace.inputs = kept
        trace.input_serials = [rec.serial for rec in kept]


def output_loss(output):
    """A model output's own loss: `outputs.loss` of a Hugging Face ModelOutput (or a dict's "loss"), when
    it is a floating tensor."""
    import torch

    loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) and loss.is_floating_point() else None


def backward_loss(loss, trace: Trace, out_tensors):
    """What the backward runs from, given the real loss: the loss itself when it is a scalar in the
    graph; its mean when it is not reduced; a surrogate over the outputs when it is not connected to
    the graph (a Python float, a leaf rebuilt from `.item()`, a NumPy round trip, `no_grad`), so that the
    gradient rules still see the model's own cuts and not the loss's."""
    import torch

    objective = trace.objective
    objective.value = describe_value(loss)
    value = objective.value
    if isinstance(loss, torch.Tensor) and loss.requires_grad and loss.grad_fn is not None and value.floating:
        trace.loss_is_surrogate = False
        if loss.numel() == 1:
            objective.backward = "loss"
            return loss.reshape(())
        objective.backward = "loss.mean()"
        trace.notes.append(f"the loss has shape {tuple(loss.shape)}, not a scalar: the check's backward ran from "
                           "its mean")
        return loss.float().mean()
    objective.backward = "surrogate"
    trace.notes.append("the loss is not connected to the model's parameters: a surrogate loss drove the "
                       "backward pass, so the gradients are relative")
    return surrogate_loss(out_tensors)


def describe_value(loss) -> LossValue:
    import torch

    if not isinstance(loss, torch.Tensor):
        return LossValue(type(loss).__name__, floating=isinstance(loss, float))
    grad_fn = type(loss.grad_fn).__name__ if loss.grad_fn is not None else None
    return LossValue("Tensor", tuple(loss.shape), bool(loss.requires_grad), grad_fn, loss.is_floating_point())


def predicted_failure(stage: str, call: LossCall) -> LossFailure:
    where = f" at {call.location.file}:{call.location.line}" if call.location is not None else ""
    error = f"{call.loss}{where} would raise, so it was not called: {call.raised}"
    return LossFailure(stage, error, f"{stage} cannot run: {error}")


def backward_failure(exc: BaseException) -> LossFailure:
    return LossFailure("the backward pass", _error(exc), str(ModelRaised("the backward pass", exc)))


def raise_unexplained(trace: Trace, explained: bool) -> None:
    """The check could not run when the loss failed and no finding explains the failure."""
    failure = trace.objective.failure if trace.objective is not None else None
    if failure is not None and not explained:
        raise LossRaised(failure)


def _user_line(frame, within) -> Optional[Location]:
    while frame is not None and frame is not within:
        if is_user_file(frame.f_code.co_filename):
            return Location(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def surrogate_loss(out_tensors):
    """A fixed random projection of every floating output. Its gradient does not depend on the
    output's value, so a zero-initialized final layer still passes gradients. The projection direction
    is rank one (a (rows,) vector times a (last dim,) vector): as good as a full random tensor for this
    purpose, and it costs one mat-vec instead of a randn the size of the logits (25M floats for GPT-2's
    vocabulary). Seeded by its own generators: the global RNG is not touched."""
    import torch

    losses = []
    for i, t in enumerate(out_tensors):
        if not t.requires_grad or t.numel() == 0:
            continue
        gen = torch.Generator(device=t.device)
        gen.manual_seed(1234 + i)
        flat = t.reshape(-1, t.shape[-1]) if t.dim() > 0 else t.reshape(1, 1)
        acc = torch.float64 if t.dtype == torch.float64 else torch.float32
        cols = torch.randn(flat.shape[1], generator=gen, device=t.device, dtype=acc)
        rows = torch.randn(flat.shape[0], generator=gen, device=t.device, dtype=acc)
        losses.append(((flat.to(acc) @ cols) @ rows / (t.numel() ** 0.5)).float())
    return sum(losses) if losses else None


# ---------------------------------------------------------------------------------------------
# The probe


@contextmanager
def loss_calls(serial_of: Callable[[Any], Optional[int]] = lambda t: None, *, follow: bool = False,
               within=None) -> Iterator[list[LossCall]]:
    """Every torch loss call made inside the block, measured before it runs, as a list filled while it
    runs. `serial_of` names the model's tensors (the recorder's lineage); with `follow`, tensors computed
    inside the block from them are followed too (a loss function's `logits.view(-1, V)`), with the ops
    that computed them. A call that would raise is not made: LossWouldFail is raised instead. A call's
    location is the innermost user line below the frame `within` (the one that called the loss function:
    an `nn.CrossEntropyLoss()` called by nnlint has none)."""
    from torch.overrides import TorchFunctionMode

    from nnlint.trace.tensormap import TensorMap

    calls: list[LossCall] = []
    origins = TensorMap()    # tensor -> (serial of the model tensor, ops since)

    def origin(t) -> tuple[Optional[int], tuple[str, ...]]:
        s = serial_of(t)
        return (s, ()) if s is not None else origins.get(t, (None, ()))

    def followed(name: str, func, args, kwargs, result) -> None:
        source = next((o for o in map(origin, iter_tensors((args, kwargs))) if o[0] is not None), None)
        if source is None:
            return
        kind = opnames.kind_of(name)
        if name == "__get__" and getattr(getattr(func, "__self__", None), "__name__", "") == "data":
            kind = "detach"   # `.data`: the values without the graph
        cut = kind in _CUTS or name in _CUTS
        step = () if (kind in opnames.PASSTHROUGH or name in opnames.PASSTHROUGH or name == "__get__") and not cut else \
            ("detach" if cut else kind,)
        for out in iter_tensors(result):
            if serial_of(out) is None:
                origins[out] = (source[0], (source[1] + step)[-8:])

    class _Probe(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = opnames.func_name(func)
            call = None
            if name in measuring.LOSSES:
                try:
                    call = measuring.measure(name, func, args, kwargs)
                except Exception:   # an unusual call: the loss still runs, the rules just skip it
                    call = None
            if call is None:
                result = func(*args, **kwargs)
                if follow:
                    followed(name, func, args, kwargs, result)
                return result
            first = args[0] if args else kwargs.get("input")
            call.serial, call.steps = origin(first)
            call.location = _user_line(sys._getframe(1), within)
            calls.append(call)
            if call.predicted:
                raise LossWouldFail(call)
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                call.raised = _error(exc)
                raise
            measuring.record_value(call, result)
            return result

    with _Probe():
        yield calls
