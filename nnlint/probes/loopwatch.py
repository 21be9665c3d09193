"""The training loop, watched for its first optimizer steps: what nnlint.guard (and the Lightning and HF
Trainer callbacks, and the loop probe on a model file's `train`) sees of the loop itself.

Hooks only, all removed after the last watched step, none of which changes a value (the run's first
steps compute exactly what they would without them):
- each trainable parameter's `register_post_accumulate_grad_hook` says a backward reached it, and
  keeps the norm of its gradient right after backward (before any clipping or unscaling);
- its `register_hook` (which runs before the new gradient is accumulated into `.grad`) looks, at the
  first backward after a step, whether `.grad` is still the very tensor the last step read, unchanged
  (same object, same version): no `zero_grad()` ran in between, and the new gradient is added to the
  old one;
- a forward pre-hook on the model keeps whether the last grad-enabled forward ran under float16
  autocast, and a forward hook puts a tensor hook on its logits-shaped outputs that counts the rows
  whose loss gradient has exactly one positive entry and sums to 0 (a maximized cross-entropy) or one
  negative entry (cross-entropy's `softmax - onehot`);
- at each step, before the update (the optimizer's step pre-hook, or the framework's own hook): the
  model's and its modules' modes, whether the step runs inside a `GradScaler.step` (a GradScaler as
  `self` in a calling frame), the gradient norm it steps on next to the one backward produced, and the
  user's frame that called `step()` (file, line, the model's name there) for the source fixes.
Each step's record goes to `on_step(observation, k)` before the update; the rules (nnlint.rules.optimizer,
reading "loop") judge the observation.
"""
from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Optional

# Frames of these packages are the machinery around the user's `optimizer.step()`, not the user's loop.
MACHINERY = ("torch", "nnlint", "lightning", "pytorch_lightning", "lightning_fabric", "transformers", "accelerate")


@dataclass
class StepRecord:
    """What one watched optimizer step looked like, just before its update."""

    index: int                                  # 1 for the first watched step
    closure: bool = False                       # step(closure): its backward runs inside the step
    reached: int = 0                            # trainable parameters a backward reached since the last step
    trainable: int = 0
    carried: int = 0                            # ... whose .grad still held the last step's gradient (not zeroed)
    carried_of: int = 0                         # parameters that had a gradient at the last step
    model_training: bool = True
    eval_modules: list[dict] = field(default_factory=list)     # {"name", "type", "params", "trainable"} in eval mode
    fp16_autocast: bool = False                 # the last grad-enabled forward ran under float16 autocast
    fp16_params: bool = False
    scaler: Optional[bool] = None               # the step runs inside GradScaler.step (None: unknown)
    scale: Optional[float] = None               # the scaler's loss scale
    norm_after_backward: Optional[float] = None
    norm_at_step: Optional[float] = None
    clip_threshold: Optional[float] = None      # told by a framework (Lightning's gradient_clip_val)
    zero_grad_fraction: Optional[float] = None  # exactly-zero gradient elements, of all
    file: Optional[str] = None                  # the user's line that called step()
    line: Optional[int] = None
    function: Optional[str] = None
    model_name: Optional[str] = None            # the model's name in that frame ("model", "net")
    optimizer_name: Optional[str] = None
    logits_rows: int = 0                        # rows of logits-shaped outputs the loss's gradient reached
    one_positive: int = 0                       # ... whose gradient has one positive entry (a maximized CE)
    one_negative: int = 0                       # ... one negative entry (cross-entropy's own shape)


@dataclass
class LoopObservation:
    steps: list[StepRecord] = field(default_factory=list)
    source: str = "guard"                       # "guard": a real run; "probe": the model file's train()

    def as_data(self) -> dict[str, Any]:
        """Plain data for the trace (trace.probes["loop"])."""
        return {"source": self.source, "steps": [asdict(s) for s in self.steps]}


class LoopWatcher:
    """Watch the first `steps` optimizer steps of `model` and `optimizer` (see the module docstring).

    `pre_hook=False`: the framework calls `before_step` itself (Lightning's `on_before_optimizer_step`,
    where the closure's backward has run); otherwise the optimizer's step pre-hook does, except for a
    `step(closure)`, whose gradients do not exist yet."""

    def __init__(self, model, optimizer, *, steps: int = 2, on_step: Optional[Callable[[LoopObservation, int], None]] = None,
                 pre_hook: bool = True, source: str = "guard", on_retire: Optional[Callable[[], None]] = None):
        from nnlint.trace.inventory import unwrap_optimizer

        self.model, self.optimizer = model, unwrap_optimizer(optimizer)
        self.steps, self.on_step, self.pre_hook, self.on_retire = steps, on_step, pre_hook, on_retire
        self.observation = LoopObservation(source=source)
        self._handles: list[Any] = []
        self._reached: set[int] = set()
        self._checked: set[int] = set()
        self._carried = 0
        self._norms: dict[int, Any] = {}
        self._last: dict[int, tuple[int, int]] = {}      # id(param) -> (id(grad), grad._version) after the last step
        self._fp16_autocast = False
        self._pending: Optional[StepRecord] = None
        self._paused = 0
        self._retired = False
        self._depth = 0
        self._output_grads: list[Any] = []

    # -- hooks --
    def install(self) -> "LoopWatcher":
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        for p in self._params:
            self._handles.append(p.register_post_accumulate_grad_hook(self._accumulated))
            self._handles.append(p.register_hook(self._incoming(p)))
        # The model and its direct children: a Lightning training_step may call self.net(x), never self(x).
        # Only the outermost call's outputs are the model's (a child called inside the model is not).
        for module in (self.model, *self.model.children()):
            self._handles.append(module.register_forward_pre_hook(self._forward))
            self._handles.append(module.register_forward_hook(self._output))
        if self.pre_hook:
            self._handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
        self._handles.append(self.optimizer.register_step_post_hook(self._post_step))
        return self

    def remove(self) -> None:
        self._retired = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """nnlint's own check runs the model forward and backward: not a step of the user's loop."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    @property
    def done(self) -> bool:
        return len(self.observation.steps) >= self.steps and self._pending is None

    def _accumulated(self, p) -> None:
        import torch

        if self._paused or self._retired:
            return
        self._reached.add(id(p))
        if p.grad is not None and p.grad.is_floating_point():
            self._norms[id(p)] = torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32)

    def _incoming(self, p):
        def hook(grad):
            if self._paused or id(p) in self._checked:
                return None
            self._checked.add(id(p))
            last = self._last.get(id(p))
            if last is not None and p.grad is not None and (id(p.grad), p.grad._version) == last:
                self._carried += 1
            return None
        return hook

    def _forward(self, module, args) -> None:
        import torch

        if self._retired:
            self.remove()   # safe here: a module iterates a copy of its hook table, an optimizer does not
            if self.on_retire is not None:
                self.on_retire()
            return None
        self._depth += 1
        if self._depth == 1 and torch.is_grad_enabled() and not self._paused:
            device = next((p.device.type for p in self._params), "cpu")
            try:
                self._fp16_autocast = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
            except (TypeError, RuntimeError):   # a device type autocast does not know
                self._fp16_autocast = False
        return None

    def _output(self, module, args, output) -> None:
        """The gradient the loss sends into each logits-shaped output (float, last dim >= 2), kept as the
        count of rows whose gradient sums to 0 with exactly one positive or exactly one negative entry:
        cross-entropy's is `softmax - onehot` (one negative entry, the target); a maximized
        cross-entropy's is the opposite (one positive)."""
        import torch

        self._depth = max(self._depth - 1, 0)
        if self._depth or self._retired or self._paused or not torch.is_grad_enabled() or len(self._output_grads) >= 4:
            return None
        from nnlint.trace.batch import iter_tensors

        for t in iter_tensors(output):
            if t.requires_grad and t.is_floating_point() and t.dim() >= 2 and t.shape[-1] >= 2:
                t.register_hook(self._logits_gradient)
        return None

    def _logits_gradient(self, grad) -> None:
        import torch

        if self._paused:
            return None
        with torch.no_grad():
            g = grad.detach().reshape(-1, grad.shape[-1]).float()
            balanced = g.sum(1).abs() <= 1e-3 * g.abs().sum(1).clamp_min(1e-30)
            rows = (g.abs().sum(1) > 0)
            self._output_grads.append(torch.stack([rows.sum(), ((g > 0).sum(1) == 1).logical_and(balanced).sum(),
                                                   ((g < 0).sum(1) == 1).logical_and(balanced).sum()]))
        return None

    def _pre_step(self, optimizer, args, kwargs) -> None:
        if self._retired:
            return None
        # args[0] is the optimizer itself; accelerate passes closure=None positionally
        closure = (len(args) > 1 and args[1] is not None) or kwargs.get("closure") is not None
        if closure:
            return None   # its backward runs inside the step: judged after it (below), or by the framework
        self.before_step()
        return None

    def _post_step(self, optimizer, args, kwargs) -> None:
        if self._retired:
            return None
        closure = (len(args) > 1 and args[1] is not None) or kwargs.get("closure") is not None
        if closure and self.pre_hook and self._pending is None:
            # step(closure) (LBFGS): its gradients existed only inside the step; judged now, after the update
            self.before_step(closure=True)
        self.after_step()
        return None

    # -- the steps --
    def before_step(self, *, scaler: Optional[bool] = None, clip_threshold: Optional[float] = None,
                    closure: bool = False) -> None:
        """The update is about to be made with the gradients the parameters hold now."""
        import torch

        if self._paused:
            return
        if len(self.observation.steps) >= self.steps or self._pending is not None:
            return
        rec = StepRecord(index=len(self.observation.steps) + 1, reached=len(self._reached),
                         trainable=len(self._params), carried=self._carried, carried_of=len(self._last),
                         fp16_autocast=self._fp16_autocast, clip_threshold=clip_threshold, closure=closure)
        self._modes(rec)
        self._norms_of(rec)
        found = self._scaler_in_frames()
        rec.scaler = scaler if scaler is not None else found is not None
        rec.scale = _scale_of(found)
        self._caller(rec)
        self._depth = 0   # a forward that raised never left
        if self._output_grads:
            # per output tensor; the one most like a maximized cross-entropy speaks (hidden states that
            # reach the loss too, an encoder's, have no such structure)
            counts = [tuple(int(v) for v in c) for c in torch.stack(self._output_grads).tolist()]
            rows, one_positive, one_negative = max(counts, key=lambda c: (c[1] / c[0] if c[0] else 0.0, c[0]))
            rec.logits_rows, rec.one_positive, rec.one_negative = rows, one_positive, one_negative
        self._pending = rec
        self.observation.steps.append(rec)
        if self.on_step is not None:
            self.on_step(self.observation, rec.index)

    def after_step(self) -> None:
        """The update was made: what the next step's backward should find zeroed."""
        if self._pending is None or self._paused:
            return
        self._pending = None
        self._last = {id(p): (id(p.grad), p.grad._version) for p in self._params if p.grad is not None}
        self._reached.clear()
        self._checked.clear()
        self._norms.clear()
        self._output_grads.clear()
        self._carried = 0
        if len(self.observation.steps) >= self.steps:
            # Inside the optimizer's post-hooks, which torch iterates lazily: the hooks go at the model's
            # next forward (or remove()); until then they return at once.
            self._retired = True

    def _modes(self, rec: StepRecord) -> None:
        import torch

        rec.model_training = self.model.training
        for name, m in self.model.named_modules():
            if not m.training:
                own = list(m.parameters(recurse=False))
                rec.eval_modules.append({"name": name, "type": type(m).__name__, "params": len(own),
                                         "trainable": any(p.requires_grad for p in own)})
        rec.fp16_params = any(p.dtype == torch.float16 for p in self._params)

    def _norms_of(self, rec: StepRecord) -> None:
        import torch

        grads = [p.grad.detach() for p in self._params if p.grad is not None and p.grad.is_floating_point()]
        if not grads:
            return
        after = list(self._norms.values())
        now = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads])
        zeros = sum(int((g == 0).sum()) for g in grads)
        rec.norm_at_step = float(torch.linalg.vector_norm(now))
        rec.norm_after_backward = float(torch.linalg.vector_norm(torch.stack(after))) if after else None
        rec.zero_grad_fraction = zeros / max(sum(g.numel() for g in grads), 1)

    @staticmethod
    def _scaler_in_frames(depth: int = 30):
        frame = sys._getframe(1)
        for _ in range(depth):
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if owner is not None and any(c.__name__ == "GradScaler" for c in type(owner).__mro__):
                return owner
            frame = frame.f_back
        return None

    def _caller(self, rec: StepRecord) -> None:
        """The user's frame that called step(): the first one outside the training machinery."""
        frame = sys._getframe(1)
        while frame is not None and _is_machinery(frame):
            frame = frame.f_back
        if frame is None:
            return
        rec.file, rec.line, rec.function = frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
        for name, value in frame.f_locals.items():
            if value is self.model and rec.model_name is None:
                rec.model_name = name
            elif value is self.optimizer or getattr(value, "optimizer", None) is self.optimizer:
                rec.optimizer_name = rec.optimizer_name or name


def _is_machinery(frame) -> bool:
    module = frame.f_globals.get("__name__", "") or ""
    if module.split(".")[0] in MACHINERY and not module.startswith("nnlint_model_"):
        return True
    return os.sep + "torch" + os.sep in frame.f_code.co_filename


def _scale_of(scaler) -> Optional[float]:
    if scaler is None:
        return None
    try:
        scale = float(scaler.get_scale())
    except Exception:   # a scaler of another library, or one not used yet
        return None
    return scale if math.isfinite(scale) and scale > 0 else None
