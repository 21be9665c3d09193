"""The training loop, seen by `nnlint.guard` over 2 real steps (NN807-NN810). Each bug is a
step function (the loop body as a user writes it); the model and data are the README classifier."""
from __future__ import annotations

import torch
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, classifier_setup, seeded

ISSUE = "issue 14"


def step_without_zero_grad(setup: Setup, optimizer, step: int) -> None:
    setup.loss(setup.forward()).backward()   # BUG: no optimizer.zero_grad(): gradients pile up
    optimizer.step()


def step_without_backward(setup: Setup, optimizer, step: int) -> None:
    optimizer.zero_grad()
    setup.loss(setup.forward())              # BUG: loss.backward() forgotten
    optimizer.step()


def accumulating_step(setup: Setup, optimizer, step: int, every: int = 2) -> None:
    """Intentional gradient accumulation: backward on every micro-batch, step and zero every `every`."""
    (setup.loss(setup.forward()) / every).backward()
    if (step + 1) % every == 0:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def fp16_step(setup: Setup, optimizer, step: int, scaler=None) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = setup.loss(setup.forward())
    if scaler is None:   # BUG: fp16 gradients without loss scaling underflow
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def scaled_fp16_step():
    scaler = torch.amp.GradScaler("cpu")
    return lambda setup, optimizer, step: fp16_step(setup, optimizer, step, scaler)


def clipping_step(max_norm: float):
    def step_fn(setup: Setup, optimizer, step: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        setup.loss(setup.forward()).backward()
        torch.nn.utils.clip_grad_norm_(setup.model.parameters(), max_norm)
        optimizer.step()
    return step_fn


def with_step(step_fn) -> Setup:
    setup = classifier_setup()
    setup.train_step = step_fn
    return setup


@seeded
def loop_healthy() -> Setup:
    return classifier_setup()


@seeded
def missing_zero_grad() -> Setup:
    return with_step(step_without_zero_grad)


@seeded
def gradient_accumulation() -> Setup:
    return with_step(accumulating_step)


@seeded
def missing_backward() -> Setup:
    return with_step(step_without_backward)


def dropout_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))


@seeded
def loop_in_eval_mode() -> Setup:
    """model.eval() left on from a validation pass: dropout silently off while training."""
    setup = classifier_setup(dropout_mlp())
    setup.model.eval()
    return setup


@seeded
def loop_dropout_train() -> Setup:
    return classifier_setup(dropout_mlp())


@seeded
def fp16_without_scaler() -> Setup:
    return with_step(fp16_step)


@seeded
def fp16_with_scaler() -> Setup:
    return with_step(scaled_fp16_step())


@seeded
def clipping_every_step() -> Setup:
    """max_norm 1e-3 against a gradient norm near 1: every step is cut ~1000x."""
    return with_step(clipping_step(1e-3))


@seeded
def clipping_healthy() -> Setup:
    return with_step(clipping_step(1.0))


CASES = [
    Case("loop_healthy", "loop", f"{ISSUE}: healthy twin", loop_healthy, loop=True, options=CLASSIFY),
    Case("missing_zero_grad", "loop", ISSUE, missing_zero_grad, Expect("NN807", None), twin="loop_healthy",
         loop=True, options=CLASSIFY),
    Case("gradient_accumulation", "loop", f"{ISSUE}: healthy (intentional accumulation)", gradient_accumulation,
         loop=True, options=CLASSIFY),
    Case("missing_backward", "loop", f"{ISSUE} item 4; torch-audit TA104", missing_backward, Expect("NN811", None),
         twin="loop_healthy", loop=True, options=CLASSIFY),
    Case("loop_in_eval_mode", "loop", ISSUE, loop_in_eval_mode, Expect("NN808", None), twin="loop_dropout_train",
         loop=True, options=CLASSIFY),
    Case("loop_dropout_train", "loop", f"{ISSUE}: healthy twin", loop_dropout_train, loop=True, options=CLASSIFY),
    Case("fp16_without_scaler", "loop", ISSUE, fp16_without_scaler, Expect("NN809", None),
         twin="fp16_with_scaler", loop=True, options=CLASSIFY),
    Case("fp16_with_scaler", "loop", f"{ISSUE}: healthy twin", fp16_with_scaler, loop=True, options=CLASSIFY),
    Case("clipping_every_step", "loop", ISSUE, clipping_every_step, Expect("NN810", None),
         twin="clipping_healthy", loop=True, options=CLASSIFY),
    Case("clipping_healthy", "loop", f"{ISSUE}: healthy twin", clipping_healthy, loop=True, options=CLASSIFY),
]
