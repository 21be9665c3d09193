"""Probes: measurements beyond the one instrumented training step, each a small registered unit.

    @probe
    class BatchMixing(Probe):
        name = "batch_mixing"            # the trace part it provides; rules read it: reads = {"batch_mixing"}
        def run(self, ctx): ...          # returns plain data, stored as trace.probes["batch_mixing"]

A probe runs after the traced step, only when a selected rule reads it (and, for an opt-in probe such as
the training steps, only when its option is given), on a few samples, without recording statistics. It
must leave the user's model, optimizer, tensors and RNG as it found them: it works on copies, and the
runner captures the model's state around it and puts it back whatever the probe did (buffers, modes,
grads, requires_grad, RNG); a probe that wrote to the model's parameters is a bug the runner reports. A
probe that cannot run on this model (a fixed batch size, an input it cannot vary) adds a note saying
so; the check goes on. Nothing here imports torch at module level.
"""
from __future__ import annotations

import importlib
import pkgutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Optional

from nnlint.trace.records import Trace


@dataclass(frozen=True)
class ProbeOptions:
    """What the user tells the check beyond the model and batch, for the probes that need it."""

    steps: Optional[int] = None            # the opt-in training probe: this many optimizer steps on the batch
    causal: Optional[bool] = None          # the model is autoregressive (None: recognised if it can be)
    frozen: tuple[str, ...] = ()           # parameter name globs meant to be frozen
    loop: Optional[Callable] = None        # the training loop, loop(model, optimizer, batches): watched 2 steps


@dataclass
class ProbeContext:
    """Everything a probe may use. The trace is the traced step's; the rest is the user's, to be left as
    found."""

    model: Any
    batch: Any
    trace: Trace
    options: ProbeOptions = field(default_factory=ProbeOptions)
    target: Any = None
    loss_fn: Optional[Callable] = None
    optimizer: Any = None
    step: Optional[Callable] = None
    # What one probe measured that another reuses (the dependence probes share their passes), for
    # this check only.
    shared: dict[str, Any] = field(default_factory=dict)
    # The gradients of the traced step (parameter name -> tensor), kept for the probes that read them
    # (needs_gradients): the model itself holds its own grads again once the trace is done.
    gradients: dict[str, Any] = field(default_factory=dict)


class Probe:
    name: ClassVar[str]
    summary: ClassVar[str] = ""            # what it measures, for notes and docs
    needs_gradients: ClassVar[bool] = False   # it reads the traced step's gradients (ProbeContext.gradients)

    def wanted(self, options: ProbeOptions) -> bool:
        """An opt-in probe says False until its option is given."""
        return True

    def run(self, ctx: ProbeContext) -> Any:          # pragma: no cover - every probe overrides it
        raise NotImplementedError


PROBES: dict[str, Probe] = {}


def probe(cls: type) -> type:
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no name")
    if name in PROBES:
        raise ValueError(f"probe {name!r} is registered twice")
    if cls.run is Probe.run:
        raise TypeError(f"probe {name!r} has no run()")
    PROBES[name] = cls()
    return cls


_IMPORTED: list[bool] = []   # the probe modules are imported once (a directory scan costs ~1 ms a check)


def all_probes() -> dict[str, Probe]:
    if not _IMPORTED:
        package = importlib.import_module("nnlint.probes")
        for info in pkgutil.iter_modules(package.__path__, prefix="nnlint.probes."):
            if info.name != __name__:
                importlib.import_module(info.name)
        _IMPORTED.append(True)
    return PROBES


def wanted_probes(names: Iterable[str], options: ProbeOptions) -> list[str]:
    """The probes among `names` that run with these options."""
    probes = all_probes()
    return [n for n in sorted(set(names)) if n in probes and probes[n].wanted(options)]


def needs_gradients(names: Iterable[str]) -> bool:
    probes = all_probes()
    return any(probes[n].needs_gradients for n in names if n in probes)


def run_probes(names: Iterable[str], ctx: ProbeContext) -> float:
    """Run the named probes (those wanted with these options), storing each result in
    ctx.trace.probes[name]; returns the seconds they took."""
    from nnlint.trace.state import ModelState, ParameterWrites

    started = time.perf_counter()
    probes = all_probes()
    writes = ParameterWrites(ctx.model)   # empty again after each restore()
    # One capture for every probe: each is put back to it, so the next starts from the same state (a
    # capture per probe was 10-20 ms of a check: every module's attributes, every buffer copied).
    state = None
    for name in sorted(set(names)):
        p = probes.get(name)
        if p is None or not p.wanted(ctx.options):
            continue
        state = state or ModelState.capture(ctx.model)
        try:
            with writes:
                ctx.trace.probes[name] = p.run(ctx)
        except Exception as exc:   # a probe that cannot run on this model must not cost the check
            ctx.trace.notes.append(f"the {name.replace('_', ' ')} probe could not run on this model "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                   "the rules that read it did not run")
        finally:
            written = writes.restore()
            lost = [n for n in state.mutated_parameters() if n not in written]
            state.restore()
            if written:
                state.take_parameter_versions()   # putting the copies back counted as writes
        # The probes write to copies only, so a write here is the model's own eval forward (RWKV
        # rescales its weights for inference): put back, and said. One nnlint did not see coming (a
        # write out of the function mode's sight) could not be copied first: a bug.
        if lost:
            raise RuntimeError(f"nnlint bug: the {name} probe wrote to the model's parameters ({', '.join(lost[:3])})")
        if written:
            note = ("the model's eval forward writes its own parameters in place (" + ", ".join(written[:3])
                    + (", ..." if len(written) > 3 else "") + "); nnlint put them back")
            if note not in ctx.trace.notes:
                ctx.trace.notes.append(note)
    return time.perf_counter() - started
