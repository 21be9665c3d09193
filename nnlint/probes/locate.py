"""Where a dependence starts: the first op whose output differs where it must not, while none of its
inputs does.

Run only once a probe has found a dependence at the model's outputs: the clean probe batch and the
changed one are run again, recording every torch call (a TorchFunctionMode) and every module's
output (global module hooks) in execution order, with the innermost module running and the user's
source line. The first pass keeps copies of the values; the second compares each call's outputs with
the first pass's as it goes, and follows lineage by tensor identity: an op whose output differs
while its inputs do not is where the dependence enters (a `view` where a `transpose` was meant, a
softmax over dim 0, a recurrent layer reading the batch as time, attention without its mask).
Nothing here imports torch at module level.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from nnlint.diagnostics import Location
from nnlint.probes.compare import largest, delta
from nnlint.trace import ops as opnames
from nnlint.trace.batch import iter_tensors

# Relative to the largest magnitude of the op's output: a difference below it is rounding. Healthy
# models measure exactly 0 here (PEERS.md: rows of other samples are bit-identical on CPU).
TOLERANCE = 1e-6

Differs = Callable[[Any, Any], bool]


@dataclass(frozen=True)
class Origin:
    """The op (or module, for a module whose inside the mode cannot see) where the dependence starts."""

    module: str                      # innermost module running ("" = the model's own forward)
    func: str                        # the torch function ("view", "softmax", "lstm") or "<GRU>" for a module
    location: Optional[Location]     # the user's line that made the call
    module_type: str = ""
    is_module: bool = False
    dim: Optional[int] = None        # the call's `dim` argument, where it has one (softmax(x, dim=0))


@dataclass
class _Call:
    func: str
    module: str
    module_type: str
    location: Optional[Location]
    inputs: list[int]
    outputs: list[int]
    values: list[Any] = field(default_factory=list)   # the reference pass's copies
    differs: list[bool] = field(default_factory=list)  # the compared pass's verdicts
    is_module: bool = False
    dim: Optional[int] = None


class Recording:
    """One recorded eval pass. With a `reference` (the clean pass) and a `differs` predicate, each
    call's outputs are compared with the reference's on the fly instead of being kept."""

    def __init__(self, model, reference: Optional["Recording"] = None, differs: Optional[Differs] = None):
        self.model = model
        self.reference, self.differs = reference, differs
        self.calls: list[_Call] = []
        self.names = {id(m): n for n, m in model.named_modules()}
        self.types = {id(m): type(m).__name__ for m in model.modules()}
        self.stack: list[tuple[str, str]] = []
        self.alive: list[Any] = []     # the pass's tensors, kept so that no id is reused while it runs
        self.diverged = False
        self.busy = False              # True while the recording itself computes: those calls are not the model's

    def _add(self, func, module, module_type, location, inputs, outputs, is_module=False, dim=None) -> None:
        self.alive.extend(inputs)
        self.alive.extend(outputs)
        call = _Call(func, module, module_type, location, [id(t) for t in inputs], [id(t) for t in outputs],
                     is_module=is_module, dim=dim)
        self.busy = True
        try:
            if self.reference is None:
                call.values = [t.detach().clone() for t in outputs]
            else:
                ref = self.reference.calls[len(self.calls)] if len(self.calls) < len(self.reference.calls) else None
                if ref is None or ref.func != func or len(ref.values) != len(outputs):
                    self.diverged = True   # data-dependent control flow: the passes no longer align
                else:
                    call.differs = [_safe(self.differs, a, b.detach()) for a, b in zip(ref.values, outputs)]
        finally:
            self.busy = False
        self.calls.append(call)

    def record(self, func, args, kwargs):
        from nnlint.trace.source import user_location

        out = func(*args, **kwargs)
        if self.busy or self.diverged:
            return out
        name = opnames.func_name(func)
        if name in opnames.IGNORED:
            return out
        outputs = list(iter_tensors(out))
        if outputs:
            module, module_type = self.stack[-1] if self.stack else ("", type(self.model).__name__)
            self._add(name, module, module_type, user_location(),
                      list(iter_tensors(args)) + list(iter_tensors(kwargs)), outputs, dim=_dim_argument(args, kwargs))
        return out

    def run(self, call: Callable[[], Any]) -> "Recording":
        from torch.nn.modules import module as module_mod
        from torch.overrides import TorchFunctionMode

        recording = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                return recording.record(func, args, kwargs or {})

        def enter(m, args):
            self.stack.append((self.names.get(id(m), f"<{type(m).__name__}>"), type(m).__name__))

        def leave(m, args, output):
            frame = self.stack.pop() if self.stack else ("", type(m).__name__)
            outputs = list(iter_tensors(output))
            if outputs and not self.diverged:
                self._add(f"<{frame[1]}>", frame[0], frame[1], None, list(iter_tensors(args)), outputs, is_module=True)

        handles = [module_mod.register_module_forward_pre_hook(enter),
                   module_mod.register_module_forward_hook(leave, always_call=True)]
        try:
            with _Mode():
                call()
        finally:
            for h in handles:
                h.remove()
            self.alive.clear()
        return self


def _dim_argument(args, kwargs) -> Optional[int]:
    """`dim=` or the first int after the tensor (softmax(x, 0), normalize(x, 2.0, 0), x.sum(0))."""
    dim = kwargs.get("dim")
    if dim is None:
        dim = next((a for a in args[1:] if isinstance(a, int) and not isinstance(a, bool)), None)
    return dim if isinstance(dim, int) and not isinstance(dim, bool) else None


def _safe(differs: Differs, a, b) -> bool:
    try:
        return a.shape == b.shape and differs(a, b)
    except Exception:   # an output the predicate cannot read (a sparse or nested tensor)
        return False


def origin(changed: Recording) -> Optional[Origin]:
    """The first call of the compared pass whose output differs while none of its inputs does."""
    state: dict[int, bool] = {}
    for call in changed.calls:
        if not call.differs:
            continue
        inputs_differ = any(state.get(i, False) for i in call.inputs)
        for serial, flag in zip(call.outputs, call.differs):
            state[serial] = flag
        if any(call.differs) and not inputs_differ:
            return Origin(call.module, call.func, call.location, call.module_type, call.is_module, call.dim)
    return None


def locate(model, run_clean: Callable[[], Any], run_changed: Callable[[], Any], differs: Differs) -> Optional[Origin]:
    """Record both passes and return where the dependence starts (None: not found in what was seen)."""
    reference = Recording(model).run(run_clean)
    return origin(Recording(model, reference, differs).run(run_changed))


# -- what "differs" means for each probe --

def _beyond(change: float, scale: float) -> bool:
    return change > TOLERANCE * scale




def differs_across_samples(k: int) -> Differs:
    """Batch mixing: along every dim of the batch's size, the rows of samples 1 .. k-1 changed (a
    healthy op changes only sample 0's row along the true batch dim); a tensor without such a dim
    that changed has reduced over the batch (`x.sum(0)`)."""
    def differs(a, b) -> bool:
        a, b = _comparable(a, b)
        scale = largest(a)
        dims = [d for d in range(a.dim()) if a.shape[d] == k]
        if not dims:
            return _beyond(delta(a, b), scale)
        return all(_beyond(delta(a.narrow(d, 1, k - 1), b.narrow(d, 1, k - 1)), scale) for d in dims)

    return differs


def differs_before(seq_len: int, start: int, k: int) -> Differs:
    """Causal leakage: sample 0's positions before `start` changed, along every dim of the sequence's
    length; a tensor without one that changed has reduced over the sequence (`x.sum(dim=1)`)."""
    def differs(a, b) -> bool:
        a, b = _comparable(a, b)
        if a.dim() >= 1 and a.shape[0] == k:
            a, b = a[0], b[0]
        scale = largest(a)
        dims = [d for d in range(a.dim()) if a.shape[d] == seq_len]
        if not dims:
            return _beyond(delta(a, b), scale)
        return all(_beyond(delta(a.narrow(d, 0, start), b.narrow(d, 0, start)), scale) for d in dims)

    return differs


def _comparable(a, b):
    import torch

    if a.is_floating_point() or a.is_complex():
        return a.double(), b.double()
    return a.to(torch.float64), b.to(torch.float64)
