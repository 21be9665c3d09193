"""The Python entry points: nnlint.check (and, through nnlint.fix, the fixer)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from nnlint.config import Config
from nnlint.diagnostics import Diagnostic
from nnlint.errors import ConfigError
from nnlint.registry import select_rules, validate_codes
from nnlint.report import Report


def check(
    model,
    batch,
    *,
    target: Any = None,
    loss_fn: Optional[Callable] = None,
    optimizer: Any = None,
    select: Optional[Iterable[str]] = None,
    ignore: Optional[Iterable[str]] = None,
    config: Optional[Config] = None,
    train_transform: Any = None,
    source_origins: Optional[dict] = None,
    step: Optional[Callable] = None,
    progress: Optional[bool] = None,
    steps: Optional[int] = None,
    causal: Optional[bool] = None,
    frozen: Optional[Iterable[str]] = None,
    loop: Optional[Callable] = None,
) -> Report:
    """Run the model once on `batch` (train forward+backward, eval forward) and apply every selected rule.

    `step(model, batch)`, instead of `target` / `loss_fn`: a function that runs what one training step
    runs up to the loss and returns the loss (a Lightning `training_step`, a Trainer's `compute_loss`);
    it is called in place of `model(batch)`, every module it calls is measured, and the backward pass
    starts from the loss it returns, so the gradient rules speak of the real gradients.

    `progress`: a status line on stderr while a check runs longer than two seconds (the pass, module
    calls, elapsed); by default where someone watches (a terminal, a notebook).

    What the probes need to know (nnlint.probes): `steps=N` opts in to training copies of the model and
    optimizer N steps on the batch; `causal` says the model is autoregressive (None: recognise it);
    `frozen` names (globs) the parameters meant to be frozen; `loop(model, optimizer, batches)`, the
    training loop, is run for two steps on copies, watched as nnlint.guard watches a real run.

    The model is left exactly as it was found. Raises an NNLintError subclass when the check cannot
    run (the model raised, the batch does not fit); the message says what to change.
    """
    from nnlint.probes.base import ProbeContext, ProbeOptions, all_probes, needs_gradients, run_probes, wanted_probes
    from nnlint.progress import Progress
    from nnlint.trace.batch import materialize_batch
    from nnlint.trace.collector import old_objects_frozen
    from nnlint.trace.lossprobe import raise_unexplained
    from nnlint.trace.tracer import run_trace
    from nnlint.trace.wrappers import user_model

    model = user_model(model)   # the module inside a DDP wrapper: findings name `fc1`, not `module.fc1`
    config = config or Config()
    select = list(select) if select is not None else list(config.select or [])
    ignore = list(ignore or []) + list(config.ignore or [])
    unknown = validate_codes(select + ignore)
    if unknown:
        raise ConfigError(f"unknown rule code(s): {', '.join(unknown)}; `nnlint rules` lists them")
    rules = select_rules(select or None, ignore)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"steps must be a positive number of optimizer steps (e.g. steps=50), not {steps!r}")
    batch = materialize_batch(batch)   # once: a generator's first element is the batch, for the probes too
    options = ProbeOptions(steps=steps, causal=causal, frozen=tuple(frozen or ()), loop=loop)
    modules = sum(1 for _ in model.modules()) if hasattr(model, "modules") else 0
    probes = wanted_probes({part for cls in rules for part in cls.reads} & set(all_probes()), options)
    gradients: Optional[dict] = {} if optimizer is not None and needs_gradients(probes) else None
    with old_objects_frozen(), Progress(type(model).__name__, modules, enabled=progress) as shown:
        trace = run_trace(model, batch, target=target, loss_fn=loss_fn, optimizer=optimizer,
                          train_transform=train_transform, source_origins=source_origins, step=step, progress=shown,
                          keep_gradients=gradients)
        if probes and trace.ops:   # a model on the meta device has no values to probe
            shown.phase = "probes"
            context = ProbeContext(model, batch, trace, options, target, loss_fn, optimizer, step,
                                   gradients=gradients or {})
            trace.seconds += run_probes(probes, context)
        shown.phase = "rules"
        diagnostics = run_rules(trace, select=select or None, ignore=ignore, config=config)
    # The loss or its backward raised: a finding that explains it is the report; without one the check
    # could not run. A rule marks its explanation with the failure in its evidence ("loss_failure").
    raise_unexplained(trace, any("loss_failure" in d.evidence for d in diagnostics))
    return Report(diagnostics=diagnostics, model_name=trace.model_type, batch_description=trace.batch_description,
                  seconds=trace.seconds, notes=list(trace.notes), trace=trace, phases=dict(shown.phases))


def run_rules(trace, *, select=None, ignore=(), config: Optional[Config] = None) -> list[Diagnostic]:
    """Apply the selected rules to a trace; config supplies options, severities and per-module ignores."""
    config = config or Config()
    out: list[Diagnostic] = []
    for cls in select_rules(select, ignore):
        try:
            rule = cls(config.rule_options.get(cls.code), config.severity.get(cls.code))
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        for d in rule.check(trace):
            if not config.is_ignored(d, trace):
                out.append(d)
    return out
