"""The tracer: one training-mode forward + backward and one eval-mode forward, observed.

It orchestrates the pieces, each in its own module: the batch as a structure of tensors (batch), the
records of the model, parameters, inputs and optimizer (inventory), the hooks and function mode that
record every op with its statistics (recorder, opstats), the loss (lossprobe), the gradients
(gradients), the explanation of a forward that raised (failures), and the model's state, put back
exactly as it was found (state). With `step=`, a training step (step) runs where the model's call and
the loss would.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any, Callable, Optional

from nnlint.diagnostics import Location
from nnlint.errors import ModelRaised, NNLintError
from nnlint.progress import Progress
from nnlint.trace import inventory, stats
from nnlint.trace import ops as opnames
from nnlint.trace.batch import call_model, describe_batch, iter_tensors, materialize_batch, slice_batch, validate_batch
from nnlint.trace.failures import explain_forward_failure
from nnlint.trace.gradients import grad_stats
from nnlint.trace.lossprobe import LossWouldFail, backward_failure, loss_calls, loss_of_pass, predicted_failure
from nnlint.trace.recorder import Instrumented, Recorder
from nnlint.trace.records import Objective, Trace
from nnlint.trace.state import ModelState, rng_changed, rng_snapshot
from nnlint.trace.step import check_step_arguments, keep_model_inputs, loss_of_step, model_calls, step_name, step_outputs
from nnlint.trace.wrappers import user_class

EVAL_SLICE = 1   # samples in the eval-mode pass: it looks for RNG use, not statistics


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
    step: Optional[Callable] = None,
    progress: Optional[Progress] = None,
    keep_gradients: Optional[dict] = None,
) -> Trace:
    """Run the model once in training mode (forward + backward) and once in eval mode; return the Trace.

    `step(model, batch)`, when given, runs instead of `model(batch)` and returns the loss (nnlint.trace.step).
    `progress` (nnlint.progress) is told which pass runs. `keep_gradients`, a dict, receives the
    gradients of the backward (parameter name -> tensor) for the probes that read them, before the
    model's own grads are put back."""
    progress = progress or Progress("", 0, enabled=False)
    from nnlint._torch import import_torch

    torch = import_torch()
    if not isinstance(model, torch.nn.Module):
        raise NNLintError(f"expected a torch.nn.Module to check, got {type(model).__name__}")
    check_step_arguments(step, target, loss_fn)
    started = time.perf_counter()
    progress.phase = "setup"
    batch = materialize_batch(batch)
    validate_batch(batch)
    pending = stats.PendingStats()
    if _on_meta_device(model, batch):
        return _static_trace(model, batch, source_origins, optimizer, train_transform, pending, started)
    state = ModelState.capture(model)
    recorder = Recorder(model, pending)
    progress.calls = lambda: len(recorder.calls)

    modules = inventory.module_records(model, source_origins)
    params = inventory.param_records(model, pending)
    inputs, channels = inventory.input_records(batch, recorder.serial, pending)

    trace = Trace(
        model_type=user_class(model).__name__, modules=modules, params=params, ops=recorder.ops, inputs=inputs,
        output_serials=[], calls=recorder.calls, root_training=model.training,
        batch_description=describe_batch(batch), param_serials=recorder.param_serials,
        input_serials=[i.serial for i in inputs],
        device=str(next((t.device for t in iter_tensors(batch)), "cpu")),
    )
    _setup(trace, model, batch, optimizer, train_transform, source_origins, loss_fn)
    try:
        model.train()
        state.detach_grads()
        with torch.enable_grad():
            rng_before = rng_snapshot()
            # The loss calls a step or a model's forward makes (a Hugging Face model given labels computes
            # its own loss) are measured by a probe under the recorder, so that the probe's own arithmetic
            # is not recorded as the model's.
            progress.phase = "train forward"
            probe = loss_calls(recorder.serials.get) if step is not None or loss_fn is None else nullcontext([])
            with probe as seen, Instrumented(recorder, "train"):
                output, failed = _forward(model, batch, recorder, step)
            train_used_rng = rng_changed(rng_before, rng_snapshot())
            if failed is not None:
                # A loss call in the forward (or the step) would have raised, so the pass stopped there:
                # no output, no backward, and no eval pass (it would make the same call unprobed).
                stage = step_name(step) if step is not None else f"{type(model).__name__}.forward"
                trace.objective = Objective("step" if step is not None else "outputs.loss", stage, calls=list(seen),
                                            failure=predicted_failure(stage, failed.call))
                trace.notes.append(f"{trace.objective.failure.error}; the check stopped there, so no backward or "
                                   "eval pass ran")
                loss, eval_pass = None, False
            elif step is None:
                out_tensors = [t for t in iter_tensors(output) if t.is_floating_point()]
                trace.output_serials = [recorder.serial(t) for t in iter_tensors(output)]
                loss = loss_of_pass(output, out_tensors, target, loss_fn, trace, seen, recorder.serials.get)
                if trace.objective is not None and loss_fn is not None:
                    trace.objective.location = (source_origins or {}).get(id(loss_fn))
            else:
                trace.output_serials = step_outputs(model_calls(model, recorder.calls), output, recorder.serial)
                loss = loss_of_step(step, output, seen, trace)
            if loss is not None and loss.requires_grad:
                progress.phase = "backward"
                try:
                    loss.backward()
                except Exception as exc:  # the user's loss or a custom backward
                    if trace.loss_is_surrogate or trace.objective is None:
                        raise ModelRaised("the backward pass", exc) from exc
                    trace.objective.failure = backward_failure(exc)   # the objective rules may explain it
                else:
                    trace.backward_ran = True
            if loss is not None:
                stats.summarize(loss.reshape(1), pending, lambda s: setattr(trace, "loss", s.mean))
        progress.phase = "gradient statistics"
        grad_stats(model, params, pending)
        if keep_gradients is not None:
            keep_gradients.update((n, p.grad) for n, p in model.named_parameters() if p.grad is not None)
        if eval_pass and (train_used_rng or any(o.kind in opnames.RANDOM_OPS for o in recorder.ops)):
            progress.phase = "eval forward"
            _eval_pass(model, batch, recorder, trace, step or call_model)
        elif eval_pass:
            # Nothing random ran in training mode, so nothing can in eval mode: the eval pass (which
            # looks only for RNG use) would find nothing, and skipping it saves ~10% of the check.
            trace.eval_ran = True
    finally:
        mutated = state.mutated_parameters()
        trace.updated_buffers = state.changed_buffers(model)
        state.restore()
    progress.phase = "reading the statistics back"
    pending.resolve()
    if mutated:
        trace.notes.append("the model's forward wrote to parameters in place: " + ", ".join(mutated[:5]))
    inventory.choose_channel_dims(trace, channels)
    if step is not None:
        keep_model_inputs(trace, model_calls(model, trace.calls))
    trace.incomplete = recorder.opaque
    trace.seconds = time.perf_counter() - started
    return trace


def _eval_pass(model, batch, recorder: Recorder, trace: Trace, run: Callable) -> None:
    """Eval-mode forward (or step) without grad on a small slice: does anything still consume the RNG?

    Only that is asked of it, not the values, so it first runs as a skeleton: the compute ops
    (matmuls, convs, attention) return zeros of their shape instead of computing, and the pass costs a
    fraction of a forward. Where that breaks the forward (a value it branches on), it runs for real."""
    import torch

    model.eval()
    small = slice_batch(batch, EVAL_SLICE)
    candidates = [small, batch] if small is not None and small is not batch else [batch]
    for skeleton, candidate in [(True, candidates[0])] + [(False, c) for c in candidates]:
        rng_before = rng_snapshot()
        recorder.skeleton = skeleton
        try:
            with torch.no_grad(), Instrumented(recorder, "eval"):
                run(model, candidate)
        except Exception:
            # A model that cannot run on a slice (a fixed batch size) gets the full batch; one that
            # fails in eval mode altogether has already run in training mode, so skip the pass.
            recorder.forget_phase("eval")
            continue
        finally:
            recorder.skeleton = False
        trace.eval_rng_consumed = rng_changed(rng_before, rng_snapshot())
        trace.eval_ran = True
        return
    trace.notes.append("the eval-mode pass raised, so the rules about eval mode did not run")


def _on_meta_device(model, batch) -> bool:
    return any(p.device.type == "meta" for p in model.parameters()) or any(
        t.device.type == "meta" for t in iter_tensors(batch))


def _static_trace(model, batch, origins, optimizer, train_transform, pending, started) -> Trace:
    """A model on the meta device has shapes but no values: record its structure (modes, options,
    optimizer), which the structural rules read, and say that nothing was measured."""
    trace = Trace(model_type=user_class(model).__name__, modules=inventory.module_records(model, origins),
                  params=inventory.param_records(model, pending), ops=[], inputs=[], output_serials=[],
                  root_training=model.training, batch_description=describe_batch(batch), device="meta")
    _setup(trace, model, batch, optimizer, train_transform, origins)
    trace.notes.append("the model is on the meta device (no values): only the structural rules ran "
                       "(modes, BatchNorm options, optimizer); move it to a real device to measure it")
    pending.resolve()
    trace.seconds = time.perf_counter() - started
    return trace


def _setup(trace: Trace, model, batch, optimizer, train_transform, origins, loss_fn=None) -> None:
    """What the trace records of the training setup around the model: optimizer, transform, and where
    the loader saw them built."""
    trace.optimizer = inventory.optimizer_record(optimizer, model)
    trace.train_transform = inventory.describe_transform(train_transform)
    inventory.setup_locations(trace, batch, optimizer, train_transform, origins, loss_fn)


def _forward(model, batch, recorder: Recorder, step: Optional[Callable]):
    """The model's output (or the step's result), and the loss call that would have raised, if one did."""
    try:
        return (call_model(model, batch) if step is None else step(model, batch)), None
    except LossWouldFail as failed:
        return None, failed
    except NNLintError:
        raise
    except Exception as exc:
        explained = explain_forward_failure(model, batch, recorder.failure, exc)
        if step is not None and isinstance(explained, ModelRaised):
            explained = ModelRaised(step_name(step), exc)   # the step raised, not a forward the user never called
        raise explained from exc
