"""The pre-training hook: check the first real training batch and the first real gradients, then leave.

    guard = nnlint.guard(model, optimizer)
    for x, y in loader:              # the first step is checked; later steps pay nothing
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

Two one-shot hooks, and a watch of the loop:
- a forward pre-hook on the model sees the first call made in training mode with grad enabled (an eval
  or `no_grad` call, such as a sanity validation, is let through), runs `nnlint.check` on that batch, and
  removes itself. A loop that trains in eval mode never makes such a call: then the last grad-enabled
  eval-mode batch is checked at the first optimizer step; The check leaves the model, its buffers, its grads and the RNG exactly as it found
  them, so the real step that follows computes what it would have without the guard.
- an optimizer step pre-hook sees the first real gradients, those of the real loss, before the update,
  and runs the gradient rules (those that read "gradients") on them; then it removes itself;
- with an optimizer, nnlint.probes.loopwatch watches the loop's first two optimizer steps (gradients
  that pile up without zero_grad, a step in eval mode, float16 without a GradScaler, clipping that cuts
  every step, a step with no backward, a maximized loss), and the rules that read "loop" judge each step
  before its update; then it removes itself.
Error-severity findings raise `UnhealthyModelError` (its text is the report) before any update is made;
warnings are issued as `NNLintWarning`. With `on_error="warn"`, errors are warnings too.

Distributed training: every rank runs the same hooks at the same step, and the ranks' findings are
gathered and merged (with torch tensors only: no NumPy needed), so that all ranks decide on the same
report and raise or continue together; a rank stuck in a collective while the others have stopped
would hang the job. Only rank 0 prints.
"""
from __future__ import annotations

import dataclasses
import sys
import types
import warnings
from typing import Any, Iterable, Optional

from nnlint.config import Config, load_config
from nnlint.errors import NNLintError
from nnlint.report import Report

ON_ERROR = ("raise", "warn")


class UnhealthyModelError(RuntimeError):
    """The guard found an error-severity problem; `str(e)` is the report, `e.report` the Report."""

    def __init__(self, message: str, report: Optional[Report] = None):
        super().__init__(message)
        self.report = report


class NNLintWarning(UserWarning):
    """A finding of the guard or of a training callback that does not stop training."""


def guard(model, optimizer=None, *, on_error: str = "raise", select: Optional[Iterable[str]] = None,
          ignore: Optional[Iterable[str]] = None, config: Optional[Config] = None) -> "Guard":
    """Check `model` on its first real training batch and, with an optimizer, its first real gradients.

    Returns the Guard: `.report` holds what was found (None until the first batch), `.remove()` takes the
    hooks off early; it is also a context manager that removes them on exit. The project's
    `[tool.nnlint]` configuration applies unless `config` is given.
    """
    g = make_guard(model, optimizer, on_error=on_error, select=select, ignore=ignore, config=config)
    g.install()
    return g


def make_guard(model, optimizer=None, *, on_error: str = "raise", select: Optional[Iterable[str]] = None,
               ignore: Optional[Iterable[str]] = None, config: Optional[Config] = None) -> "Guard":
    """A Guard with no hooks installed yet (the training callbacks call its checks from their own hooks)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'warn', not {on_error!r}")
    return Guard(model, optimizer, on_error=on_error, select=list(select) if select is not None else None,
                 ignore=list(ignore or []), config=config if config is not None else load_config("."))


@dataclasses.dataclass
class Guard:
    model: Any
    optimizer: Any = None
    on_error: str = "raise"
    select: Optional[list[str]] = None
    ignore: list[str] = dataclasses.field(default_factory=list)
    config: Config = dataclasses.field(default_factory=Config)
    report: Optional[Report] = None      # everything found so far (the batch, the gradients, the loop)
    _handles: dict[str, Any] = dataclasses.field(default_factory=dict, init=False, repr=False)
    _watcher: Any = dataclasses.field(default=None, init=False, repr=False)
    _eval_batch: Any = dataclasses.field(default=None, init=False, repr=False)
    _gradients_seen: bool = dataclasses.field(default=False, init=False, repr=False)

    # -- hooks --
    def install(self, *, step: bool = True) -> None:
        """The one-shot forward pre-hook, and (with an optimizer, unless `step=False`) the step pre-hook
        and the watch of the loop."""
        # prepend: see the batch as the training loop passed it, before other pre-hooks rewrite it
        # (they run again, normally, inside the check's own forward).
        self._handles["forward"] = self.model.register_forward_pre_hook(
            self._on_forward, with_kwargs=True, prepend=True)
        if step and self.optimizer is not None:
            self._gradients_seen = False
            self._handles["step"] = self.optimizer.register_step_pre_hook(self._on_step)
            self.watch()

    def watch(self, *, pre_hook: bool = True) -> None:
        """Watch the loop's first two optimizer steps. `pre_hook=False`: the framework calls
        `loop_step()` itself, where the step's gradients are ready (Lightning's closure)."""
        from nnlint.probes.loopwatch import LoopWatcher

        if self._watcher is None and self.optimizer is not None:
            self._watcher = LoopWatcher(unwrap(self.model), self.optimizer, on_step=self._on_loop_step,
                                        pre_hook=pre_hook, on_retire=lambda: self._drop("step")).install()

    def loop_step(self, *, scaler: Optional[bool] = None, clip_threshold: Optional[float] = None) -> None:
        """A framework's hook: the watched step's gradients are final, the update comes next."""
        if self._watcher is not None:
            self._watcher.before_step(scaler=scaler, clip_threshold=clip_threshold)

    def remove(self, *, loop: bool = True) -> None:
        """Take the hooks off (`loop=False`: the batch and gradient hooks only, the loop's watch stays)."""
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
        if loop and self._watcher is not None:
            self._watcher.remove()
            self._watcher = None

    @property
    def active(self) -> bool:
        return bool(self._handles) or (self._watcher is not None and self._watcher.installed)

    def __enter__(self) -> "Guard":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _drop(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.remove()

    def _on_forward(self, module, args, kwargs):
        import torch

        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return None   # an evaluation call: wait for the first training batch
        if not module.training:
            # an evaluation call, or a loop that trains in eval mode: the first optimizer step tells
            self._eval_batch = batch_from_call(args, kwargs)
            return None
        self._drop("forward")
        batch = batch_from_call(args, kwargs)
        if batch is None:
            self._could_not_check("the model was called with both positional and keyword arguments")
            self._deliver(None)   # still take part in the ranks' agreement
        else:
            self.check_batch(batch)
        return None

    def _on_step(self, optimizer, args, kwargs) -> None:
        if self._gradients_seen:
            return None
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not any(p.grad is not None for p in params):
            return   # step(closure): the gradients are computed inside the step; look at the next one
        # Not removed here: torch iterates the optimizer's hook table lazily, and the loop's watch has its
        # hook after this one; the handle goes when the watch does (the model's next forward after its
        # last step), inert until then.
        self._gradients_seen = True
        if "forward" in self._handles and self._eval_batch is not None:
            # a training step, and no forward in training mode before it: the loop trains in eval mode
            self._drop("forward")
            self.check_batch(self._eval_batch)
        self._eval_batch = None
        self.check_gradients()

    def _on_loop_step(self, observation, index: int) -> None:
        """The rules that read the loop, on what the watch saw up to this step; delivered before its update."""
        from nnlint.api import run_rules
        from nnlint.registry import matches, rules_reading
        from nnlint.trace.records import Trace

        select = self.select if self.select is not None else self.config.select
        codes = [c for c in rules_reading("loop")
                 if (not select or matches(c, select)) and not matches(c, self.ignore + self.config.ignore)]
        if not codes:
            return
        base = self.report.trace if self.report is not None and self.report.trace is not None else Trace(
            model_type=type(unwrap(self.model)).__name__, modules={}, params={}, ops=[], inputs=[], output_serials=[])
        trace = dataclasses.replace(base, probes={**base.probes, "loop": observation.as_data()})
        found = run_rules(trace, select=codes, config=self.config)
        known = self.report.diagnostics if self.report is not None else []
        seen = {(d.code, d.module) for d in known}
        new = [d for d in found if (d.code, d.module) not in seen]
        self.report = dataclasses.replace(self.report, diagnostics=known + new, trace=trace) if self.report is not None \
            else Report(diagnostics=new, model_name=trace.model_type, trace=trace)
        self._deliver(dataclasses.replace(self.report, diagnostics=new, notes=[f"seen in the training loop, step {index}"]))

    def _deliver(self, report: Optional[Report]) -> None:
        """deliver(), and when it raises, every hook off first: the run stops, and a new run of the loop is
        not checked again. (Removing an optimizer hook while torch runs them is safe only on the way
        out: the exception ends that iteration.)"""
        try:
            deliver(report, self.on_error)
        except UnhealthyModelError:
            self.remove()
            raise

    # -- the checks; the integrations call these directly --
    def check_batch(self, batch, *, step=None, instead: str = "") -> Optional[Report]:
        """Check the model on one batch and deliver the findings (raise or warn). `step` is nnlint.check's:
        a function step(model, batch) that computes the loss. Where the check cannot run, a warning says
        why (and `instead`, what the caller does instead), and None is returned."""
        from nnlint.api import check

        from contextlib import nullcontext

        try:
            with self._watcher.paused() if self._watcher is not None else nullcontext():
                report = check(unwrap(self.model), batch, optimizer=self.optimizer, select=self.select,
                               ignore=self.ignore, config=self.config, step=step)
        except NNLintError as exc:
            self._could_not_check(str(exc), instead)
            report = None
        except Exception as exc:   # an nnlint bug must not stop a training run
            self._could_not_check(f"{type(exc).__name__}: {exc}", instead)
            report = None
        if report is not None:
            self.report = report
        self._deliver(report)
        return report

    def check_gradients(self) -> Optional[Report]:
        """Run the gradient rules on the gradients the model holds now (the real loss's, before the
        optimizer uses them) and deliver what the batch check had not already reported."""
        codes = self._gradient_codes()
        trace = None if self.report is None else self.report.trace
        if not codes:
            return None
        why_not = None
        if trace is None:
            why_not = ("no training forward of the model was seen before the first optimizer step, so its "
                       "gradients could not be placed in the model; call the guarded module itself in the "
                       "training loop")
        elif not any(p.grad is not None for p in unwrap(self.model).parameters()):
            why_not = ("no parameter holds a gradient at the optimizer step (a sharded optimizer such as ZeRO "
                       "or FSDP keeps them elsewhere), so the gradient rules were not run")
        if why_not is not None:
            self._could_not_check(why_not)
            self._deliver(None)   # still take part in the ranks' agreement
            return None
        from nnlint.api import run_rules

        real = with_real_gradients(trace, unwrap(self.model))
        self._gradient_probes(real)
        found = run_rules(real, select=codes, config=self.config)
        seen = {(d.code, d.module) for d in self.report.diagnostics}
        new = [d for d in found if (d.code, d.module) not in seen]
        self.report = dataclasses.replace(self.report, diagnostics=self.report.diagnostics + new)
        gradients = dataclasses.replace(self.report, diagnostics=new,
                                        notes=["measured on the real gradients of the first optimizer step"])
        self._deliver(gradients)
        return gradients

    def _gradient_probes(self, trace) -> None:
        """The probes that read gradients (the first update, NN804), again on the real ones: the batch
        check had only its own (a surrogate loss's, where the loop's loss is not known)."""
        from nnlint.probes.base import ProbeContext, all_probes

        model = unwrap(self.model)
        gradients = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        for name, probe in all_probes().items():
            if not probe.needs_gradients or self.optimizer is None:
                continue
            try:
                trace.probes[name] = probe.run(ProbeContext(model, None, trace, optimizer=self.optimizer,
                                                            gradients=gradients))
            except Exception as exc:   # the check goes on without it, as nnlint.check's runner does
                trace.probes.pop(name, None)
                self._could_not_check(f"the {name.replace('_', ' ')} probe raised {type(exc).__name__}: {exc}")

    def _gradient_codes(self) -> list[str]:
        from nnlint.probes.base import all_probes
        from nnlint.registry import matches, rules_reading

        select = self.select if self.select is not None else self.config.select   # as nnlint.check reads them
        ignore = self.ignore + self.config.ignore
        parts = ["gradients"] + [n for n, p in all_probes().items() if p.needs_gradients]
        codes = dict.fromkeys(c for part in parts for c in rules_reading(part))
        return [c for c in codes if (not select or matches(c, select)) and not matches(c, ignore)]

    def _could_not_check(self, why: str, instead: str = "") -> None:
        if is_reporting_rank():
            warnings.warn(f"nnlint.guard could not check the model{f' ({instead})' if instead else ''}: {why}",
                          NNLintWarning, stacklevel=2)


# ---------------------------------------------------------------------------------------------
# Pieces shared with the training-framework callbacks


def deliver(report: Optional[Report], on_error: str) -> None:
    """Raise on error-severity findings (on every rank together), warn on the rest (rank 0 only).

    Every rank must call this at the same point, even one whose check could not run (report None):
    under torch.distributed the ranks' findings are merged first (two all_gathers), so every rank
    decides on the same merged report and rank 0 prints it once."""
    from nnlint.testing import failures, report_text

    report = merged_across_ranks(report)
    if report is not None and failures(report, "error") and on_error == "raise":
        if is_reporting_rank():
            raise UnhealthyModelError(f"nnlint stopped training before the first update:\n\n{report_text(report)}",
                                      report)
        raise UnhealthyModelError("nnlint stopped training before the first update (rank 0 prints the report)",
                                  report)
    if report is not None and failures(report, "warning") and is_reporting_rank():
        warnings.warn(f"nnlint found problems in the training setup:\n\n{report_text(report)}", NNLintWarning,
                      stacklevel=2)


def merged_across_ranks(report: Optional[Report]) -> Optional[Report]:
    """Each rank measured its own shard of the batch; the union of their findings (the most severe
    where ranks disagree, with the ranks that saw each in its evidence) is the same on every rank.
    Outside torch.distributed, the report itself."""
    dist = _distributed()
    if dist is None:
        return report
    from nnlint.diagnostics import SEVERITY_RANK

    gathered = gather_objects(dist, None if report is None else report.diagnostics)
    if all(found is None for found in gathered):
        return None
    merged: dict = {}
    for rank, found in enumerate(gathered):
        for d in found or ():
            key = (d.code, d.module, d.location)
            kept = merged.get(key)
            if kept is None or SEVERITY_RANK[d.severity] < SEVERITY_RANK[kept.severity]:
                ranks = kept.evidence.get("ranks", []) if kept is not None else []
                kept = merged[key] = dataclasses.replace(d, evidence={**d.evidence, "ranks": ranks})
            kept.evidence["ranks"] = sorted(set(kept.evidence["ranks"]) | {rank})
    base = report if report is not None else Report(diagnostics=[])
    seen_by = "; ".join(f"{d.code} on {d.module or 'the input'}: rank {', '.join(map(str, d.evidence['ranks']))}"
                        for d in merged.values() if len(d.evidence["ranks"]) < len(gathered))
    note = f"merged the findings of {len(gathered)} ranks, each measured on its own shard" + (
        f" (seen only on some: {seen_by})" if seen_by else "")
    return dataclasses.replace(base, diagnostics=list(merged.values()), notes=list(base.notes) + [note])


def gather_objects(dist, obj) -> list:
    """`obj` of every rank, in rank order, on every rank: dist.all_gather_object without NumPy.

    torch's all_gather_object turns its byte tensors back into objects through NumPy, which torch does
    not require: a DDP run without NumPy would crash in nnlint. Here the pickled bytes travel as uint8
    tensors: one all_gather of their sizes, one of the payloads padded to the longest."""
    import pickle

    import torch

    # NCCL gathers CUDA tensors only; gloo (and the CPU side of a mixed backend) takes CPU tensors.
    on_cuda = str(dist.get_backend()) == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_cuda else torch.device("cpu")
    world = dist.get_world_size()
    payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(device)
    size = torch.tensor([payload.numel()], dtype=torch.long, device=device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[:payload.numel()] = payload
    payloads = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(payloads, padded)
    # Findings are a few kB: a list of ints is a cheap way back to bytes without NumPy.
    return [pickle.loads(bytes(p[:int(n)].tolist())) for p, n in zip(payloads, sizes)]


def with_real_gradients(trace, model):
    """A copy of `trace` whose parameter gradient statistics are those of the gradients the model holds
    now, measured the way the tracer measures its own (so the gradient rules read them unchanged)."""
    from nnlint.trace import stats
    from nnlint.trace.gradients import grad_stats

    params = {name: dataclasses.replace(rec, grad_norm=None, grad_all_zero=False, grad_nonfinite=False)
              for name, rec in trace.params.items()}
    pending = stats.PendingStats()
    grad_stats(model, params, pending)
    pending.resolve()
    # The loss value the check recorded was its own surrogate's; the real one is not known here.
    return dataclasses.replace(trace, params=params, backward_ran=True, loss_is_surrogate=False, loss=None,
                               probes=dict(trace.probes))


def batch_from_call(args: tuple, kwargs: dict):
    """The batch, in nnlint.check's convention, that reproduces the call `model(*args, **kwargs)`:
    a lone tensor as itself, positional arguments as a tuple, keywords as a dict. None for a mix."""
    import torch

    if args and kwargs:
        return None
    if kwargs:
        return dict(kwargs)
    if len(args) == 1 and isinstance(args[0], torch.Tensor):
        return args[0]
    return tuple(args)


def unwrap(model):
    """The module inside a DistributedDataParallel / DataParallel wrapper: the names users know."""
    while type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
        model = model.module
    return model


def _distributed():
    try:
        import torch.distributed as dist
    except ImportError:   # pragma: no cover - torch built without distributed
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def is_reporting_rank() -> bool:
    dist = _distributed()
    return dist is None or dist.get_rank() == 0


class _CallableModule(types.ModuleType):
    """`nnlint.guard` is both this module and the function users call: once anything imports the
    module (`from nnlint.guard import ...`), Python sets the package attribute `nnlint.guard` to the
    module, hiding the function that `nnlint.__getattr__` served. Calling the module calls the function."""

    def __call__(self, *args, **kwargs) -> Guard:
        return guard(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
