"""The tracer: one training-mode forward + backward and one eval-mode forward, observed.

Global module hooks say which module is running (the pattern of torch/utils/module_tracker.py); a
TorchFunctionMode sees every torch call, functional or method or inside a module, and records its lineage
(tensor serials in and out), its module stack and its user source line. Statistics are queued on the
tensor's device and read back once at the end (stats.PendingStats). Everything is installed for the
duration of `run_trace` only, and the model is restored exactly as it was found (state.ModelState).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from nnlint.diagnostics import Location
from nnlint.errors import BatchMismatch, ModelRaised, NNLintError
from nnlint.trace import ops as opnames
from nnlint.trace import stats
from nnlint.trace.lossprobe import call_loss
from nnlint.trace.records import (
    InputRecord,
    ModuleCall,
    ModuleRecord,
    OpRecord,
    OptimizerRecord,
    ParamRecord,
    TensorSummary,
    Trace,
)
from nnlint.trace.source import construction_sites, user_location
from nnlint.trace.state import ModelState

SATURATION_THRESHOLD = {"tanh": 2.2, "sigmoid": 4.4}
EVAL_SLICE = 2   # samples in the eval-mode pass: it looks for modes and RNG use, not statistics


# ---------------------------------------------------------------------------------------------
# Structures in and out of the model


def iter_tensors(obj: Any, depth: int = 0):
    """Every tensor inside a tensor, tuple/list, dict/ModelOutput or dataclass (depth-limited)."""
    import torch

    if depth > 6:
        return
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from iter_tensors(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from iter_tensors(v, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from iter_tensors(getattr(obj, f.name, None), depth + 1)


def named_tensors(obj: Any, path: str = "batch", depth: int = 0):
    import torch

    if depth > 4:
        return
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from named_tensors(v, f"{path}[{k!r}]", depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from named_tensors(v, f"{path}[{i}]", depth + 1)


def call_model(model, batch):
    """A Tensor is called as model(batch), a tuple/list as model(*batch), a dict as model(**batch)."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def describe_batch(batch: Any, depth: int = 0) -> str:
    import torch

    if isinstance(batch, torch.Tensor):
        return "x".join(str(s) for s in batch.shape) or "scalar"
    if depth > 2:
        return "..."
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k}: {describe_batch(v, depth + 1)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (list, tuple)):
        return "(" + ", ".join(describe_batch(v, depth + 1) for v in batch) + ")"
    return type(batch).__name__


def slice_batch(batch: Any, n: int):
    """The first n samples of every tensor that has the batch's leading size; None if that is unclear."""
    import torch

    tensors = list(iter_tensors(batch))
    if not tensors or tensors[0].dim() == 0:
        return None
    size = tensors[0].shape[0]
    if size <= n:
        return batch

    def cut(obj, depth=0):
        if isinstance(obj, torch.Tensor):
            return obj[:n] if obj.dim() > 0 and obj.shape[0] == size else obj
        if depth > 4:
            return obj
        if isinstance(obj, Mapping):
            try:
                return type(obj)({k: cut(v, depth + 1) for k, v in obj.items()})
            except TypeError:
                return {k: cut(v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*(cut(v, depth + 1) for v in obj))
        if isinstance(obj, (list, tuple)):
            return type(obj)(cut(v, depth + 1) for v in obj)
        return obj

    return cut(batch)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        return (shape[0] if shape else 1), (shape[0] if shape else 1)
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive


def _simple_attrs(module) -> dict[str, Any]:
    """The module's public scalar configuration (p, negative_slope, in_features, kernel_size ...)."""
    out: dict[str, Any] = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[key] = value
        elif isinstance(value, tuple) and all(isinstance(v, (int, float, bool)) for v in value):
            out[key] = list(value)
    return out


# ---------------------------------------------------------------------------------------------
# The recorder


class _Recorder:
    """Everything one trace accumulates; the TorchFunctionMode and the hooks call into it."""

    def __init__(self, model, pending: stats.PendingStats):
        from torch.utils.weak import WeakTensorKeyDictionary

        self.model = model
        self.pending = pending
        self.phase = "train"
        self.serials = WeakTensorKeyDictionary()
        self.next_serial = 1
        self.unit_kind: dict[int, str] = {}       # serial -> "conv" | "linear": which dim holds units
        self.ops: list[OpRecord] = []
        self.calls: list[ModuleCall] = []
        self.stack: list[tuple[str, str, int, int]] = []   # (name, type, call_index, index into calls)
        self.call_counts: dict[tuple[str, str], int] = {}
        self.names: dict[int, str] = {}
        self.opaque: list[dict[str, Any]] = []
        self.failure: Optional[dict[str, Any]] = None
        self.busy = False   # True while nnlint itself computes statistics: those calls are not the model's
        self.summaries: dict[tuple[int, int], list] = {}   # (serial, version) -> stores, see summarize()
        for name, module in model.named_modules(remove_duplicate=False):
            self.names.setdefault(id(module), name)
        self.param_serials: dict[int, str] = {}
        for name, p in model.named_parameters(remove_duplicate=True):
            self.param_serials[self.serial(p)] = name

    # -- lineage --
    def serial(self, t) -> int:
        s = self.serials.get(t)
        if s is None:
            s = self.fresh(t)
        return s

    def fresh(self, t) -> int:
        s = self.next_serial
        self.next_serial += 1
        self.serials[t] = s
        return s

    def summarize(self, t, store) -> None:
        """Summarize a tensor once per value, however many ops and modules read it."""
        stats.summarize(t, self.pending, store, cache=self.summaries, key=(self.serial(t), t._version))

    # -- module hooks --
    def module_name(self, module) -> str:
        name = self.names.get(id(module))
        if name is None:
            parent = self.stack[-1][0] if self.stack else ""
            name = f"{parent}.<{type(module).__name__}>" if parent else f"<{type(module).__name__}>"
        return name

    def enter_module(self, module, args) -> None:
        name = self.module_name(module)
        key = (self.phase, name)
        index = self.call_counts.get(key, 0)
        self.call_counts[key] = index + 1
        call = ModuleCall(name, type(module).__name__, self.phase, index,
                          [self.serial(t) for t in iter_tensors(args)], [], len(self.ops), len(self.ops))
        self.calls.append(call)
        self.stack.append((name, type(module).__name__, index, len(self.calls) - 1))

    def exit_module(self, module, args, output) -> None:
        if not self.stack:
            return
        name, mtype, index, call_pos = self.stack.pop()
        call = self.calls[call_pos]
        call.end_op = len(self.ops)
        out_tensors = list(iter_tensors(output))
        in_tensors = list(iter_tensors(args))
        if call.end_op == call.first_op and self.phase == "train" and any(True for _ in module.parameters()):
            # A module with weights ran and the mode saw nothing inside it: TorchScript, a compiled
            # region or a C++ extension. Link its inputs to its outputs so lineage stays connected.
            self.opaque.append({"module": name, "type": mtype})
            outs = [self.fresh(t) for t in out_tensors]
            self._append_op("opaque", f"<{mtype}>", [self.serial(t) for t in in_tensors], outs, {}, None)
        call.outputs = [self.serial(t) for t in out_tensors]
        if self.phase == "train" and out_tensors and out_tensors[0].is_floating_point():
            self.busy = True
            try:
                self.summarize(out_tensors[0], lambda s, c=call: setattr(c, "output_summary", s))
            finally:
                self.busy = False

    # -- ops --
    def _append_op(self, kind, name, in_serials, out_serials, args, location) -> OpRecord:
        module, mtype, index = (self.stack[-1][:3] if self.stack else ("", type(self.model).__name__, 0))
        op = OpRecord(
            index=len(self.ops), phase=self.phase, kind=kind, func=name, module=module, module_type=mtype,
            call_index=index, inputs=in_serials, outputs=out_serials, location=location, args=args,
            module_stack=tuple(s[0] for s in self.stack[:-1]),
        )
        self.ops.append(op)
        return op

    def record(self, func, types, args, kwargs):
        import torch

        name = opnames.func_name(func)
        if self.busy or name in opnames.IGNORED:
            return func(*args, **kwargs)
        kind = opnames.kind_of(name)
        if self.phase == "eval" and kind not in opnames.RANDOM_OPS:
            return self._call(func, name, kind, args, kwargs)

        in_tensors = list(iter_tensors(args)) + list(iter_tensors(kwargs))
        in_serials = [self.serial(t) for t in in_tensors]
        op_args = self._scalar_args(kind, args, kwargs)
        op = self._append_op(kind, name, in_serials, [], op_args, user_location())
        first = in_tensors[0] if in_tensors else None
        floating = first is not None and first.is_floating_point()
        if self.phase == "train" and floating:
            self._pre_stats(op, kind, first, in_tensors)
        out = self._call(func, name, kind, args, kwargs)
        out_tensors = list(iter_tensors(out))
        out_serials = []
        for t in out_tensors:
            # An in-place op returns its input: the result is a new value of the same tensor object.
            out_serials.append(self.fresh(t) if any(t is i for i in in_tensors) else self.serial(t))
        op.outputs = out_serials
        self._propagate_unit_kind(kind, in_serials, out_serials)
        if kind in opnames.WEIGHT_OPS:
            # The weight is the first parameter input of 2+ dims: torch.addmm(bias, x, weight) (Hugging
            # Face's Conv1D in GPT-2) passes the bias first.
            params = [(s, t) for s, t in zip(in_serials, in_tensors) if s in self.param_serials]
            pick = next((s for s, t in params if t.dim() >= 2), params[0][0] if params else None)
            if pick is not None:
                op.weight = self.param_serials[pick]
        if self.phase == "train" and out_tensors and isinstance(out_tensors[0], torch.Tensor) \
                and out_tensors[0].is_floating_point() and name not in opnames.PASSTHROUGH:
            self._post_stats(op, kind, out_tensors[0], out_serials[0])
        return out

    def _call(self, func, name, kind, args, kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if self.failure is None:
                self.failure = {
                    "func": name, "kind": kind,
                    "stack": [(s[0], s[1]) for s in self.stack],
                    "shapes": [tuple(t.shape) for t in iter_tensors(args)],
                    "exc": exc,
                }
            raise

    @staticmethod
    def _scalar_args(kind, args, kwargs) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if kind == "dropout":
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            training = kwargs.get("training", args[2] if len(args) > 2 else True)
            out = {"p": float(p), "training": bool(training)}
        elif kind == "leaky_relu":
            out = {"negative_slope": float(kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01))}
        elif kind == "batch_norm":
            out = {"training": bool(kwargs.get("training", args[5] if len(args) > 5 else False))}
        return out

    def _propagate_unit_kind(self, kind, in_serials, out_serials) -> None:
        if kind == "conv":
            k = "conv"
        elif kind in ("linear", "matmul", "embedding", "attention", "rnn"):
            k = "linear"
        else:
            k = next((self.unit_kind[s] for s in in_serials if s in self.unit_kind), None)
        if k is not None:
            for s in out_serials:
                self.unit_kind[s] = k

    def _pre_stats(self, op: OpRecord, kind: str, first, in_tensors) -> None:
        """Statistics of the inputs, taken before the call (an in-place op would overwrite them)."""
        put = op.stats.__setitem__
        if kind in opnames.SATURATING:
            self.summarize(first, lambda s: put("in", s))
            stats.saturated_fraction(first, SATURATION_THRESHOLD[kind], self.pending, lambda f: put("saturated", f))
        elif kind in opnames.ACTIVATIONS or kind in opnames.WEIGHT_OPS or kind in opnames.NORM_OPS:
            self.summarize(first, lambda s: put("in", s))
        elif kind == "add":
            operands = [t for t in in_tensors if t.is_floating_point() and t.dim() > 0]
            if len(operands) == 2:
                results: list[Optional[TensorSummary]] = [None, None]

                def store(i, s):
                    results[i] = s
                    if all(r is not None for r in results):
                        put("operands", list(results))

                for i, t in enumerate(operands):
                    self.summarize(t, lambda s, i=i: store(i, s))

    def _post_stats(self, op: OpRecord, kind: str, out, out_serial: int) -> None:
        put = op.stats.__setitem__
        self.summarize(out, lambda s: put("out", s))
        if kind in opnames.RELU_FAMILY:
            unit_dim = 1 if (self.unit_kind.get(out_serial) == "conv" and out.dim() >= 3) else -1
            op.args["unit_dim"] = unit_dim % max(out.dim(), 1)
            stats.active_fraction_per_unit(out, unit_dim, self.pending, lambda f: put("unit_active", f))


def _make_mode(recorder: _Recorder):
    from torch.overrides import TorchFunctionMode

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return recorder.record(func, types, args, kwargs or {})

    return _Mode()


class _Instrumented:
    """Global module hooks plus the function mode, for the duration of a `with` block."""

    def __init__(self, recorder: _Recorder, phase: str):
        self.recorder = recorder
        self.phase = phase
        self.handles: list[Any] = []
        self.mode = None

    def __enter__(self):
        from torch.nn.modules import module as module_mod

        self.recorder.phase = self.phase
        self.recorder.stack.clear()
        self.handles = [
            module_mod.register_module_forward_pre_hook(lambda m, a: self.recorder.enter_module(m, a)),
            module_mod.register_module_forward_hook(lambda m, a, o: self.recorder.exit_module(m, a, o), always_call=True),
        ]
        self.mode = _make_mode(self.recorder)
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        for h in self.handles:
            h.remove()
        self.recorder.stack.clear()
        return False


# ---------------------------------------------------------------------------------------------
# The entry point


def run_trace(
    model,
    batch,
    *,
    target: Any = None,
    loss_fn: Optional[Callable] = None,
    optimizer: Any = None,
    train_transform: Any = None,
    source_origins: Optional[dict[int, Location]] = None,
    eval_pass: bool = True,
) -> Trace:
    """Run the model once in training mode (forward + backward) and once in eval mode; return the Trace."""
    from nnlint._torch import import_torch

    torch = import_torch()
    if not isinstance(model, torch.nn.Module):
        raise NNLintError(f"expected a torch.nn.Module to check, got {type(model).__name__}")
    started = time.perf_counter()
    batch = materialize_batch(batch)
    validate_batch(batch)
    pending = stats.PendingStats()
    if _on_meta_device(model, batch):
        return _static_trace(model, batch, source_origins, optimizer, train_transform, pending, started)
    state = ModelState.capture(model)
    recorder = _Recorder(model, pending)

    modules = _module_records(model, source_origins)
    params = _param_records(model, pending)
    inputs = _input_records(batch, recorder, pending)

    trace = Trace(
        model_type=type(model).__name__, modules=modules, params=params, ops=recorder.ops, inputs=inputs,
        output_serials=[], calls=recorder.calls, root_training=model.training,
        batch_description=describe_batch(batch), param_serials=recorder.param_serials,
        input_serials=[i.serial for i in inputs],
        device=str(next((t.device for t in iter_tensors(batch)), "cpu")),
    )
    trace.optimizer = _optimizer_record(optimizer, model)
    trace.train_transform = describe_transform(train_transform)
    _setup_locations(trace, batch, optimizer, train_transform, source_origins)
    try:
        model.train()
        state.detach_grads()
        with torch.enable_grad():
            rng_before = _rng_snapshot(torch)
            with _Instrumented(recorder, "train"), _eager():
                output = _forward(model, batch, recorder)
            train_used_rng = _rng_changed(torch, rng_before, _rng_snapshot(torch))
            out_tensors = [t for t in iter_tensors(output) if t.is_floating_point()]
            trace.output_serials = [recorder.serial(t) for t in iter_tensors(output)]
            loss = _loss(output, out_tensors, target, loss_fn, trace)
            if loss is not None and loss.requires_grad:
                try:
                    loss.backward()
                except Exception as exc:  # the user's loss or a custom backward
                    raise ModelRaised("the backward pass", exc) from exc
                trace.backward_ran = True
            if loss is not None:
                stats.summarize(loss.reshape(1), pending, lambda s: setattr(trace, "loss", s.mean))
        _grad_stats(model, params, pending)
        if eval_pass and (train_used_rng or any(o.kind in opnames.RANDOM_OPS for o in recorder.ops)):
            _eval_pass(model, batch, recorder, trace)
        elif eval_pass:
            # Nothing random ran in training mode, so nothing can in eval mode: the eval pass (which
            # looks only for RNG use) would find nothing, and skipping it saves ~10% of the check.
            trace.eval_ran = True
    finally:
        mutated = state.mutated_parameters()
        state.restore()
    pending.resolve()
    if mutated:
        trace.notes.append("the model's forward wrote to parameters in place: " + ", ".join(mutated[:5]))
    _choose_input_channel_dims(trace)
    trace.incomplete = recorder.opaque
    trace.seconds = time.perf_counter() - started
    return trace


def materialize_batch(batch):
    """A generator, iterator or DataLoader given as the batch: its first element is the batch."""
    import torch

    if isinstance(batch, (torch.Tensor, Mapping, list, tuple)) or batch is None:
        return batch
    if hasattr(batch, "__next__"):
        try:
            return next(batch)
        except StopIteration:
            raise NNLintError("the batch iterator is empty: give nnlint one batch (a tensor, tuple or dict)") from None
    if hasattr(batch, "__iter__") and not isinstance(batch, (str, bytes)):
        return materialize_batch(iter(batch))
    return batch


def validate_batch(batch) -> None:
    tensors = list(iter_tensors(batch))
    if batch is None:
        raise NNLintError("no batch was given: pass one sample batch, e.g. torch.randn(16, 3, 32, 32)")
    if tensors and all(t.dim() > 0 and t.shape[0] == 0 for t in tensors):
        raise NNLintError(f"the batch is empty ({describe_batch(batch)}): give at least a few samples (16-64 "
                          "is typical), so that the statistics mean something")


def _on_meta_device(model, batch) -> bool:
    return any(p.device.type == "meta" for p in model.parameters()) or any(
        t.device.type == "meta" for t in iter_tensors(batch))


def _static_trace(model, batch, origins, optimizer, train_transform, pending, started) -> Trace:
    """A model on the meta device has shapes but no values: record its structure (modes, options,
    optimizer), which the structural rules read, and say that nothing was measured."""
    trace = Trace(model_type=type(model).__name__, modules=_module_records(model, origins),
                  params=_param_records(model, pending), ops=[], inputs=[], output_serials=[],
                  root_training=model.training, batch_description=describe_batch(batch), device="meta")
    trace.optimizer = _optimizer_record(optimizer, model)
    trace.train_transform = describe_transform(train_transform)
    _setup_locations(trace, batch, optimizer, train_transform, origins)
    trace.notes.append("the model is on the meta device (no values): only the structural rules ran "
                       "(modes, BatchNorm options, optimizer); move it to a real device to measure it")
    pending.resolve()
    trace.seconds = time.perf_counter() - started
    return trace


class _eager:
    """Run torch.compile'd code eagerly while tracing: the tracer sees every op, and no compile cost
    is paid for a single step. torch.compiler.set_stance exists from torch 2.6; before, compiled
    regions show up as NN001 instead."""

    def __enter__(self):
        import warnings

        import torch

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=r".*torch.compile\(module\)` when there are global hooks.*")
        # Only when dynamo is loaded: without it nothing can be compiled, and importing it costs ~1.5 s.
        compiler = getattr(torch, "compiler", None) if "torch._dynamo" in sys.modules else None
        set_stance = getattr(compiler, "set_stance", None)
        self._stance = set_stance("force_eager") if set_stance is not None else None
        if self._stance is not None:
            self._stance.__enter__()
        return self

    def __exit__(self, *exc):
        if self._stance is not None:
            self._stance.__exit__(*exc)
        self._warnings.__exit__(*exc)
        return False


def _forward(model, batch, recorder: _Recorder):
    try:
        return call_model(model, batch)
    except NNLintError:
        raise
    except Exception as exc:
        raise _explain_forward_failure(model, batch, recorder, exc) from exc


def _explain_forward_failure(model, batch, recorder: _Recorder, exc: Exception) -> NNLintError:
    failure = recorder.failure
    text = str(exc)
    if failure is not None and failure["exc"] is exc and any(w in text for w in ("dtype", "scalar type", "Half", "Double", "BFloat16")):
        where = failure["stack"][-1][0] if failure["stack"] else type(model).__name__
        param = next((p for p in model.parameters() if p.is_floating_point()), None)
        batch_dtypes = sorted({str(t.dtype).replace("torch.", "") for t in iter_tensors(batch) if t.is_floating_point()})
        want = str(param.dtype).replace("torch.", "") if param is not None else "?"
        return BatchMismatch(
            f"the batch's dtype ({', '.join(batch_dtypes) or 'integer'}) does not match the model's parameters "
            f"({want}) at {where}: convert the batch (e.g. batch.to(torch.{want})) or the model.\n"
            f"torch said: {text.splitlines()[0]}"
        )
    if failure is not None and failure["exc"] is exc and isinstance(exc, (RuntimeError, ValueError, IndexError)) \
            and failure["stack"]:
        name, mtype = failure["stack"][-1]
        module = dict(model.named_modules()).get(name)
        expects = _expected_input(module) if module is not None else None
        if expects is not None:
            got = "x".join(str(s) for s in failure["shapes"][0]) if failure["shapes"] else "?"
            return BatchMismatch(
                f"the batch does not fit the model: {name} ({mtype}) expects {expects}, "
                f"but received a tensor of shape {got} (the batch is {describe_batch(batch)}).\n"
                f"torch said: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            )
    return ModelRaised(f"{type(model).__name__}.forward", exc)


def _expected_input(module) -> Optional[str]:
    t = type(module).__name__
    a = vars(module)
    if "in_features" in a:
        return f"inputs whose last dimension is {a['in_features']} (in_features)"
    if "in_channels" in a and t.startswith("Conv"):
        dims = {"1d": "(N, C, L)", "2d": "(N, C, H, W)", "3d": "(N, C, D, H, W)"}.get(t[-2:].lower(), "")
        return f"{a['in_channels']} input channels at dim 1 of a {dims} tensor".replace(" of a  tensor", "")
    if "num_embeddings" in a:
        return f"integer ids in [0, {a['num_embeddings']})"
    if "num_features" in a:
        return f"{a['num_features']} features/channels at dim 1"
    if "normalized_shape" in a:
        return f"trailing dimensions {tuple(a['normalized_shape'])}"
    if "input_size" in a:
        return f"sequences whose feature dimension is {a['input_size']}"
    if "embed_dim" in a:
        return f"embeddings of size {a['embed_dim']}"
    return None


def _loss(output, out_tensors, target, loss_fn, trace: Trace):
    import torch

    if loss_fn is not None:
        trace.loss_is_surrogate = False
        trace.target_info["loss_type"] = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        if isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor):
            if output.dim() == 2 and not target.is_floating_point() and target.dim() == 1:
                trace.target_info["num_classes"] = int(output.shape[1])
        try:
            # The probe records the cross-entropy/NLL/BCE terms inside loss_fn (classes, value, label
            # entropy) for NN304, whatever wraps them.
            loss, terms = call_loss(loss_fn, output, target)
        except Exception as exc:
            raise ModelRaised("the loss function", exc) from exc
        if terms:
            trace.target_info["classification_losses"] = terms
        return loss
    # The surrogate: a fixed random projection of every floating output. Its gradient does not
    # depend on the output's value, so a zero-initialized final layer still passes gradients. The
    # projection direction is rank one (a (rows,) vector times a (last dim,) vector): as good as a full
    # random tensor for this purpose, and it costs one mat-vec instead of a randn the size of the
    # logits (25M floats for GPT-2's vocabulary).
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


def _rng_snapshot(torch) -> list:
    """Comparable RNG states of the CPU and every initialized CUDA device."""
    states = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states += torch.cuda.get_rng_state_all()
    return states


def _rng_changed(torch, before: list, after: list) -> bool:
    return len(before) != len(after) or any(not torch.equal(a, b) for a, b in zip(before, after))


def _eval_pass(model, batch, recorder: _Recorder, trace: Trace) -> None:
    """Eval-mode forward without grad on a small slice: does anything still consume the RNG?"""
    import torch

    model.eval()
    small = slice_batch(batch, EVAL_SLICE)
    for candidate in ([small, batch] if small is not None and small is not batch else [batch]):
        rng_before = _rng_snapshot(torch)
        try:
            with torch.no_grad(), _Instrumented(recorder, "eval"), _eager():
                call_model(model, candidate)
        except Exception:
            # A model that cannot run on a slice (a fixed batch size) gets the full batch; one that
            # fails in eval mode altogether has already run in training mode, so skip the pass.
            recorder.ops[:] = [o for o in recorder.ops if o.phase != "eval"]
            recorder.calls[:] = [c for c in recorder.calls if c.phase != "eval"]
            recorder.call_counts = {k: v for k, v in recorder.call_counts.items() if k[0] != "eval"}
            continue
        trace.eval_rng_consumed = _rng_changed(torch, rng_before, _rng_snapshot(torch))
        trace.eval_ran = True
        return
    trace.notes.append("the eval-mode pass raised, so the eval-mode rules (NN501) did not run")


def _module_records(model, origins) -> dict[str, ModuleRecord]:
    sites = construction_sites(model, origins)
    import torch

    records: dict[str, ModuleRecord] = {}
    for name, module in model.named_modules():
        cls = type(module)
        records[name] = ModuleRecord(
            name=name, type=cls.__name__, type_path=f"{cls.__module__}.{cls.__qualname__}",
            is_leaf=not any(True for _ in module.children()), training=module.training,
            location=sites.get(name),
            params=[f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)],
            attrs=_simple_attrs(module), is_torch_builtin=cls.__module__.startswith("torch.nn"),
            scripted=isinstance(module, torch.jit.ScriptModule),
        )
    return records


def _param_records(model, pending: stats.PendingStats) -> dict[str, ParamRecord]:
    import torch

    records: dict[str, ParamRecord] = {}
    first_name: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        module, _, attr = name.rpartition(".")
        shape = tuple(p.shape)
        fan_in, fan_out = _fans(shape)
        rec = ParamRecord(name=name, module=module, attr=attr, shape=shape, requires_grad=p.requires_grad,
                          mean=0.0, std=0.0, all_zero=False, rows_identical=False, fan_in=fan_in,
                          fan_out=fan_out, norm=0.0)
        records[name] = rec
        if id(p) in first_name:
            rec.tied_to = first_name[id(p)]
            continue
        first_name[id(p)] = name
        if p.numel() == 0 or p.device.type == "meta" or not p.is_floating_point():
            continue

        def store(s: TensorSummary, rec=rec, n=p.numel()):
            rec.mean, rec.std = s.mean, s.std
            rec.norm = ((s.std ** 2 + s.mean ** 2) * n) ** 0.5 if s.std == s.std else float("nan")
            rec.all_zero = rec.norm == 0.0

        with torch.no_grad():
            stats.summarize(p, pending, store)
            if p.dim() >= 2 and p.shape[0] > 1:
                # Every row equal <=> each column's max equals its min: two fast reductions with
                # column-sized outputs, no copy of the weight (a 1B-parameter model stays frugal).
                flat = p.detach().reshape(p.shape[0], -1)
                same = (flat.amax(dim=0) == flat.amin(dim=0)).all()
                pending.defer([same], lambda v, rec=rec: setattr(rec, "rows_identical", bool(v[0])))
    return records


def _grad_stats(model, params: dict[str, ParamRecord], pending: stats.PendingStats) -> None:
    import torch

    for name, p in model.named_parameters(remove_duplicate=True):
        rec = params[name]
        if p.grad is None:
            continue
        g = p.grad.detach()
        norm = torch.linalg.vector_norm(g.reshape(-1), dtype=stats.accumulation_dtype(g))

        def store(v, rec=rec):
            n = v[0]
            rec.grad_norm = n if n == n else float("nan")
            rec.grad_all_zero = n == 0.0
            rec.grad_nonfinite = not (n == n and n != float("inf"))

        pending.defer([norm], store)


def _input_records(batch, recorder: _Recorder, pending: stats.PendingStats) -> list[InputRecord]:
    records = []
    for path, t in named_tensors(batch):
        rec = InputRecord(path=path, serial=recorder.serial(t), summary=TensorSummary(tuple(t.shape), str(t.dtype).replace("torch.", ""), 0.0, 0.0),
                          is_float=t.is_floating_point())
        records.append(rec)
        if not rec.is_float or t.numel() == 0:
            continue
        stats.summarize_exact(t, pending, lambda s, rec=rec: setattr(rec, "summary", s))
        if t.dim() >= 2:
            dims = [1] if t.dim() != 3 else [1, 2]
            rec.channel_dim = 1
            candidates: dict[int, Any] = {}
            for d in dims:
                stats.channel_moments(t, d, pending, lambda m, s, d=d, c=candidates: c.__setitem__(d, (m, s)))
            rec._candidates = candidates  # resolved by _choose_input_channel_dims
        if t.dim() == 2:
            stats.mean_abs_correlation(t, pending, lambda v, rec=rec: setattr(rec, "mean_abs_correlation", v))
    return records


def _choose_input_channel_dims(trace: Trace) -> None:
    """Images and 1-D signals keep channels at dim 1; a 3-D input read by a Linear has features last."""
    first_consumer: dict[int, str] = {}
    for op in trace.ops:
        for s in op.inputs:
            first_consumer.setdefault(s, op.kind)
    for rec in trace.inputs:
        candidates = rec.__dict__.pop("_candidates", None)
        if not candidates:
            continue
        dim = 1
        if 2 in candidates and first_consumer.get(rec.serial) != "conv":
            dim = 2
        rec.channel_dim = dim
        rec.channel_mean, rec.channel_std = candidates.get(dim, ([], []))


def _optimizer_record(optimizer, model) -> Optional[OptimizerRecord]:
    if optimizer is None:
        return None
    optimizer = _unwrap_optimizer(optimizer)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for g in getattr(optimizer, "param_groups", []):
        groups.append({
            "weight_decay": float(g.get("weight_decay", 0.0) or 0.0),
            "lr": float(g["lr"]) if isinstance(g.get("lr"), (int, float)) else None,
            "params": [names.get(id(p), "?") for p in g.get("params", [])],
            # LBFGS, Rprop, SparseAdam have no weight decay at all; Adam(decoupled_weight_decay=True)
            # is AdamW: NN506 reads both.
            "supports_weight_decay": "weight_decay" in g,
            "decoupled_weight_decay": bool(g.get("decoupled_weight_decay", False)),
        })
    return OptimizerRecord(type=type(optimizer).__name__, groups=groups)


def _unwrap_optimizer(optimizer, depth: int = 0):
    """The torch optimizer inside a wrapper (accelerate's AcceleratedOptimizer keeps it in .optimizer,
    Lightning's LightningOptimizer in ._optimizer): its class is what the user chose."""
    for attr in ("optimizer", "_optimizer"):
        inner = getattr(optimizer, attr, None)
        if depth < 4 and inner is not None and inner is not optimizer and hasattr(inner, "param_groups"):
            return _unwrap_optimizer(inner, depth + 1)
    return optimizer


def _setup_locations(trace: Trace, batch, optimizer, train_transform, origins) -> None:
    """Where the batch, the optimizer and the train transform were built, when the loader recorded it
    (keyed by id(object), like modules): the findings about them point at those lines."""
    origins = origins or {}
    if batch is not None and id(batch) in origins:
        trace.target_info["batch_location"] = origins[id(batch)]
    if optimizer is not None and id(optimizer) in origins:
        trace.target_info["optimizer_location"] = origins[id(optimizer)]
    if trace.train_transform is not None and id(train_transform) in origins:
        trace.train_transform["location"] = origins[id(train_transform)]


def describe_transform(transform) -> Optional[dict[str, Any]]:
    """A train transform as class names, recognised without importing torchvision."""
    if transform is None:
        return None
    steps = []
    dataset = None
    if _is_dataset(transform):
        # A training Dataset: its transform is what augments (torchvision datasets keep it in .transform).
        dataset, transform = type(transform).__name__, getattr(transform, "transform", None)
        if transform is None:
            return {"type": "None", "steps": [], "dataset": dataset}

    def walk(t, depth=0):
        if depth > 4:
            return
        inner = getattr(t, "transforms", None)
        if inner is None and type(t).__name__ == "Sequential" and hasattr(t, "children"):
            inner = list(t.children())   # torchvision's scriptable nn.Sequential(transforms...)
        if isinstance(inner, (list, tuple)):
            # Keep a wrapper's own name (RandomApply, RandomChoice, A.OneOf): it is what makes its
            # children random. Plain sequencing containers add nothing.
            if type(t).__name__ not in ("Compose", "Sequential", "ReplayCompose"):
                steps.append(type(t).__name__)
            for s in inner:
                walk(s, depth + 1)
        else:
            steps.append(type(t).__name__)

    walk(transform)
    out = {"type": type(transform).__name__, "steps": steps}
    if dataset is not None:
        out["dataset"] = dataset
    return out


def _is_dataset(obj) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and hasattr(obj, "transform") \
        and not callable(obj)
