"""The recorder: global module hooks say which module is running (the pattern of
torch/utils/module_tracker.py), and a TorchFunctionMode sees every torch call, functional or method or
inside a module, and records its lineage (tensor serials in and out), its module stack, its user source
line and the statistics opstats asks for. Everything is installed for one `with Instrumented(...)`
block only.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from nnlint.trace import opstats, stats
from nnlint.trace import ops as opnames
from nnlint.trace.batch import iter_tensors
from nnlint.trace.records import ModuleCall, OpaqueRegion, OpRecord
from nnlint.trace.source import user_location
from nnlint.trace.tensormap import TensorMap
from nnlint.trace.wrappers import is_dtensor, user_class


@dataclass(frozen=True)
class Frame:
    """A module being run: one entry of the recorder's module stack."""

    name: str                 # qualified name
    type: str                 # class name
    call_index: int           # how many times this module had been entered before, in this phase
    call: int                 # index of its ModuleCall in Recorder.calls
    module: Any = None        # the module itself: where it holds its parameters now


@dataclass
class Failure:
    """The first torch call that raised during the pass, for the could-not-run message."""

    func: str
    kind: str
    stack: list[tuple[str, str]]      # (module name, type), outermost first
    shapes: list[tuple[int, ...]]     # shapes of the call's tensor arguments
    exc: BaseException


class Recorder:
    """Everything one trace accumulates; the TorchFunctionMode and the hooks call into it.

    `wanted` names the optional statistics (opstats) to take; None takes all of them.
    """

    def __init__(self, model, pending: stats.PendingStats, wanted: Optional[set[str]] = None):
        self.model = model
        self.pending = pending
        self.wanted = wanted
        self.phase = "train"
        self.serials = TensorMap()
        self.next_serial = 1
        self.unit_kind: dict[int, str] = {}       # serial -> "conv" | "linear": which dim holds units
        self.ops: list[OpRecord] = []
        self.calls: list[ModuleCall] = []
        self.stack: list[Frame] = []
        self.call_counts: dict[tuple[str, str], int] = {}
        self.names: dict[int, str] = {}
        self.opaque: list[OpaqueRegion] = []
        self.failure: Optional[Failure] = None
        self.skeleton = False   # eval pass: compute ops return zeros of their shape (see stand_in)
        self.stand_in_shapes: dict = {}   # stand_in's meta results, by the call's signature
        self.summaries: dict[tuple[int, int], list] = {}   # (serial, version) -> stores, see summarize()
        self.context = opstats.StatContext(pending, self.summarize, self.unit_dim)
        for name, module in model.named_modules(remove_duplicate=False):
            self.names.setdefault(id(module), name)
        self.param_serials: dict[int, str] = {}
        for name, p in model.named_parameters(remove_duplicate=True):
            self.param_serials[self.serial(p)] = name
        self.param_names = set(self.param_serials.values())
        # FSDP2 swaps parameters in and out around each forward (below); nothing else is looked for
        self.swaps_parameters = any(user_class(m) is not type(m) for m in model.modules())

    # -- lineage --
    def serial(self, t) -> int:
        s = self.serials.get(t)
        if s is None:
            s = self._shard_serial(t) if is_dtensor(t) else self.fresh(t)
        return s

    def _shard_serial(self, t) -> int:
        """A DTensor and its local shard are one value to the lineage: tensor parallelism's hooks turn
        one into the other (from_local, to_local) out of the function mode's sight."""
        local = getattr(t, "_local_tensor", None)
        s = None if local is None else self.serials.get(local)
        if s is None:
            s = self.fresh(t)
            if local is not None:
                self.serials[local] = s
        else:
            self.serials[t] = s
        return s

    def fresh(self, t) -> int:
        s = self.next_serial
        self.next_serial += 1
        self.serials[t] = s
        return s

    def summarize(self, t, store) -> None:
        """Summarize a tensor once per value, however many ops and modules read it."""
        stats.summarize(t, self.pending, store, cache=self.summaries, key=(self.serial(t), t._version))

    def unit_dim(self, t, serial: int) -> int:
        """The dimension that holds units: channels (1) of a conv map, else the last (features)."""
        return 1 if (self.unit_kind.get(serial) == "conv" and t.dim() >= 3) else -1

    def forget_phase(self, phase: str) -> None:
        """Drop what a pass of this phase recorded (an eval pass that raised, to be run again)."""
        self.ops[:] = [o for o in self.ops if o.phase != phase]
        self.calls[:] = [c for c in self.calls if c.phase != phase]
        self.call_counts = {k: v for k, v in self.call_counts.items() if k[0] != phase}

    # -- module hooks --
    def module_name(self, module) -> str:
        name = self.names.get(id(module))
        if name is None:
            parent = self.stack[-1].name if self.stack else ""
            name = f"{parent}.<{type(module).__name__}>" if parent else f"<{type(module).__name__}>"
        return name

    def enter_module(self, module, args) -> None:
        name = self.module_name(module)
        cls = user_class(module).__name__
        key = (self.phase, name)
        index = self.call_counts.get(key, 0)
        self.call_counts[key] = index + 1
        call = ModuleCall(name, cls, self.phase, index,
                          [self.serial(t) for t in iter_tensors(args)], [], len(self.ops), len(self.ops))
        self.calls.append(call)
        self.stack.append(Frame(name, cls, index, len(self.calls) - 1, module))

    def exit_module(self, module, args, output) -> None:
        if not self.stack:
            return
        frame = self.stack.pop()
        call = self.calls[frame.call]
        call.end_op = len(self.ops)
        out_tensors = list(iter_tensors(output))
        if call.end_op == call.first_op and self.phase == "train" and any(True for _ in module.parameters()):
            # Nothing was seen inside a module with weights: link its inputs to its outputs so that
            # lineage stays connected.
            self.opaque.append(OpaqueRegion(frame.name, frame.type))
            outs = [self.fresh(t) for t in out_tensors]
            self._append_op("opaque", f"<{frame.type}>", [self.serial(t) for t in iter_tensors(args)], outs, {}, None)
        call.outputs = [self.serial(t) for t in out_tensors]
        if self.phase == "train" and out_tensors and out_tensors[0].is_floating_point():
            with unobserved():
                self.summarize(out_tensors[0], lambda s, c=call: setattr(c, "output_summary", s))

    # -- ops --
    def _append_op(self, kind, name, in_serials, out_serials, args, location) -> OpRecord:
        top = self.stack[-1] if self.stack else Frame("", type(self.model).__name__, 0, -1)
        op = OpRecord(
            index=len(self.ops), phase=self.phase, kind=kind, func=name, module=top.name, module_type=top.type,
            call_index=top.call_index, inputs=in_serials, outputs=out_serials, location=location, args=args,
            module_stack=tuple(f.name for f in self.stack[:-1]),
        )
        self.ops.append(op)
        return op

    def record(self, func, types, args, kwargs):
        name = opnames.func_name(func)
        if name in opnames.IGNORED:
            return func(*args, **kwargs)
        kind = opnames.kind_of(name)
        if self.phase == "eval" and kind not in opnames.RANDOM_OPS:
            if self.skeleton and kind in opnames.COMPUTE_OPS:
                out = stand_in(func, args, kwargs, self.stand_in_shapes)
                if out is not None:
                    return out
            return self._call(func, name, kind, args, kwargs)

        in_tensors = list(iter_tensors(args)) + list(iter_tensors(kwargs)) if kwargs else list(iter_tensors(args))
        in_serials = [self.serial(t) for t in in_tensors]
        op = self._append_op(kind, name, in_serials, [], opnames.scalar_args(kind, args, kwargs), user_location())
        train = self.phase == "train"
        if train and in_tensors and in_tensors[0].is_floating_point():
            with unobserved():
                self._take(op, "input", in_tensors[0], in_serials[0], in_tensors)
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
            if not params and self.swaps_parameters and self.stack:
                params = self._held_parameters(self.stack[-1], in_serials, in_tensors)
            pick = next((s for s, t in params if t.dim() >= 2), params[0][0] if params else None)
            if pick is not None:
                op.weight = self.param_serials[pick]
        if train and out_tensors and out_tensors[0].is_floating_point() and name not in opnames.PASSTHROUGH \
                and name not in opnames.UNINITIALIZED:
            with unobserved():
                self.summarize(out_tensors[0], self.context.store(op, "out"))
                self._take(op, "output", out_tensors[0], out_serials[0], in_tensors)
        return out

    def _held_parameters(self, frame: Frame, in_serials: list, in_tensors: list) -> list:
        """The inputs that the running module holds as its parameters now, though they are not the
        tensors registered when the pass began: FSDP2 swaps each sharded parameter for an unsharded
        one during forward. They are named where the module holds them, and remembered under that name."""
        held = {id(t): attr for attr, t in getattr(frame.module, "_parameters", {}).items() if t is not None}
        found = []
        for s, t in zip(in_serials, in_tensors):
            attr = held.get(id(t))
            name = None if attr is None else (f"{frame.name}.{attr}" if frame.name else attr)
            if name in self.param_names:
                self.param_serials[s] = name
                found.append((s, t))
        return found

    def _take(self, op: OpRecord, on: str, x, serial: int, in_tensors: list) -> None:
        for statistic in opstats.for_op(op.kind, on, self.wanted):
            self.context.inputs, self.context.serial = in_tensors, serial
            statistic.take(x, op, self.context)

    def _call(self, func, name, kind, args, kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if self.failure is None:
                self.failure = Failure(name, kind, [(f.name, f.type) for f in self.stack],
                                       [tuple(t.shape) for t in iter_tensors(args)], exc)
            raise

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


def unobserved():
    """A block of nnlint's own arithmetic (the statistics) that no TorchFunctionMode sees: not the
    recorder's (inside its handler it is off anyway, but not in a module hook), not the loss probe's
    below it, not a user's. Each mode's Python handler costs microseconds a call, and the statistics
    make about ten torch calls for each of the model's (the 6-layer Llama's forward: 11,000 through
    the loss probe, 30 ms)."""
    import torch

    return torch._C.DisableTorchFunction()


def stand_in(func, args, kwargs, known: Optional[dict] = None):
    """Zeros of the shape, dtype and device `func(*args, **kwargs)` would return, without its FLOPs:
    the shape is inferred on the meta device. None when that cannot be done (an op with no meta
    kernel, an output that is not a tensor): the op then runs for real.

    `known` keeps the inferred (shape, dtype) by the call's signature (the function, every tensor's
    shape, dtype and device, the other arguments): a transformer calls a handful of distinct shapes
    dozens of times, and meta inference runs through Python decompositions (BERT-base's eval pass:
    1.2 ms a linear, 0.09 s of its 0.16 s)."""
    import torch

    from nnlint.trace.batch import map_tensors

    tensors = [t for t in iter_tensors((args, kwargs))]
    if not tensors:
        return None
    device = tensors[0].device
    key = _call_signature(func, args, kwargs) if known is not None else None
    if key is not None and key in known:
        shape, dtype = known[key]
        return torch.zeros(shape, dtype=dtype, device=device)
    try:
        meta = func(*map_tensors(lambda t: t.to("meta"), args), **map_tensors(lambda t: t.to("meta"), kwargs))
    except Exception:
        return None
    if not isinstance(meta, torch.Tensor):
        return None
    if key is not None:
        known[key] = (meta.shape, meta.dtype)
    return torch.zeros(meta.shape, dtype=meta.dtype, device=device)


_SIGNATURE_VALUES = (bool, int, float, str, type(None))


def _call_signature(func, args, kwargs) -> Optional[tuple]:
    """What a call's output shape and dtype depend on, hashable; None where an argument is neither a
    plain tensor nor a plain value (a tensor subclass, an object), whose shape rules are its own."""
    import torch

    parts: list = [func]

    def add(value) -> bool:
        if type(value) is torch.Tensor or type(value) is torch.nn.Parameter:
            parts.append((tuple(value.shape), value.dtype, value.device, value.layout))
            return True
        if isinstance(value, _SIGNATURE_VALUES) or isinstance(value, (torch.dtype, torch.device)):
            parts.append(value)
            return True
        if isinstance(value, (tuple, list)):
            parts.append(len(value))
            return all(add(v) for v in value)
        return False

    if not all(add(a) for a in args):
        return None
    for k in sorted(kwargs):
        parts.append(k)
        if not add(kwargs[k]):
            return None
    return tuple(parts)


def _make_mode(recorder: Recorder):
    from torch.overrides import TorchFunctionMode

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return recorder.record(func, types, args, kwargs or {})

    return _Mode()


class Instrumented:
    """Global module hooks plus the function mode, for the duration of a `with` block, with compiled
    code run eagerly (see `eager`)."""

    def __init__(self, recorder: Recorder, phase: str):
        self.recorder = recorder
        self.phase = phase
        self.handles: list[Any] = []
        self.mode = None
        self.eager = eager()

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
        self.eager.__enter__()
        return self

    def __exit__(self, *exc):
        self.eager.__exit__(*exc)
        self.mode.__exit__(*exc)
        for h in self.handles:
            h.remove()
        self.recorder.stack.clear()
        return False


@dataclass
class eager:
    """Run torch.compile'd code eagerly while tracing: the tracer sees every op, and no compile cost
    is paid for a single step. torch.compiler.set_stance exists from torch 2.6; before, compiled
    regions show up as opaque regions instead."""

    _warnings: Any = field(default=None, init=False)
    _stance: Any = field(default=None, init=False)

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
