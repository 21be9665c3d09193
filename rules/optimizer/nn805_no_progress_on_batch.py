from __future__ import annotations

from nnlint.diagnostics import Location
from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import as_location, fmt
from nnlint.rules.optimizer._groups import optimizer_location


class NoProgressOnBatch(Rule):
    """## What it does
    With the opt-in training probe (`nnlint check --steps 50`, `nnlint.check(..., steps=50)`): trains
    copies of the model and the optimizer N steps on the sample batch with the user's loss, and reports
    (one finding, the first that applies):
    - the loss, a gradient or a parameter going non-finite at step k: the step, the parameter and,
      replayed under `torch.autograd.detect_anomaly`, the backward op and the forward line;
    - an inverted objective: the user's loss falls while a reference loss of the same outputs and
      targets (cross-entropy for class-index targets, mean squared error for float targets of the
      output's shape) rises by more than `rise` (a flipped sign, `-F.cross_entropy(...)`);
    - no progress: after N steps the loss is not below `fall` of its start (0.99: it did not fall by 1%),
      or it rose.
    In a watched training loop (nnlint.guard, the training callbacks, a model file's `train`), without
    the probe: the loss's gradient on logits-shaped outputs. Cross-entropy's is `softmax - onehot`, one
    negative entry per row; when 90% of at least 4 rows have exactly one positive entry instead (each
    row summing to 0), the loss is a maximized cross-entropy (error, an inverted objective).
    With nnlint's surrogate loss (no `loss_fn`), only non-finite steps are judged: the surrogate is a
    random projection of the outputs, which falls whenever anything trains. The report says what the
    probe cost (seconds per step, next to the traced step's).

    ## Why is this bad?
    A model that cannot overfit one small batch cannot learn the dataset: the first sanity check of
    every training recipe (Karpathy's "overfit one batch"). Not falling means the learning rate, the
    optimizer, the loss or the data path is wrong; a NaN after k steps is an unstable op (a `sqrt` or
    `log` of something that reaches 0, an `exp` that overflows) that the first step alone does not show;
    an inverted loss trains the model away from its targets while every number looks fine.

    ## Options
    - `fall` (0.99): the loss after N steps must be below this fraction of its start. The catalog's 0.9
      (a 10% fall) false-alarms on healthy setups that learn slowly: over 50 steps on the gallery of
      benchmarks/PEERS.md, neural_net_checklist's own Linear(10, 10) and BatchNorm+Linear on 100 random
      labels fall 5.1% (Adam 1e-3), its per-position model 4.6%, a tiny language model 8.9%; the
      no-progress bugs move under 0.05% (SGD lr 1e-5: 2.3215 -> 2.3209; lr 1e-7, lr 0, dropout p=1,
      an output that ignores its input: 0). A 1% fall separates them. Still reported with the
      default: a one-conv net that global-pools i.i.d. noise images (its 16 pooled features barely
      differ between images, so random labels cannot be fit: 0.4% in 50 SGD steps).
    - `rise` (0.1): the reference loss rising by more than this fraction while the user's falls is an
      inverted objective.

    ## Fix safety
    No automatic fix: the message says what went wrong and where.
    """

    code = "NN805"
    name = "no-progress-on-batch"
    severity = "error"
    summary = "opt-in probe: N steps on the batch and the loss does not fall, rises, or goes non-finite"
    options = {"fall": 0.99, "rise": 0.1}
    reads = frozenset({"train_steps", "loop"})
    about = "model"
    cause = ("finding",)

    examples = (
        Faulty("""
            # nnlint check example.py --steps 50
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)
            target = torch.randint(0, 10, (16,))


            def loss_fn(output, target):
                return -F.cross_entropy(output, target)   # the sign is flipped


            def optimizer(model):
                return torch.optim.Adam(model.parameters(), lr=1e-3)
            """, module=''),
        Healthy("""
            # nnlint check example.py --steps 50
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)
            target = torch.randint(0, 10, (16,))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.Adam(model.parameters(), lr=1e-3)
            """),
    )

    def check(self, trace):
        yield from self._maximized_in_loop(trace)
        data = trace.probes.get("train_steps")
        if not data or not data.get("losses"):
            return
        losses = data["losses"]
        cost = _cost(data)
        opt = f"{data['optimizer']}{' (nnlint default: no optimizer was given)' if data.get('default_optimizer') else ''}"
        location = as_location(trace.target_info.get("loss_location")) or optimizer_location(trace)
        bad = data.get("nonfinite")
        if bad is not None:
            yield self._nonfinite(bad, data, opt, cost, location)
            return
        if data.get("loss_is_surrogate"):
            return
        start, end = losses[0], losses[-1]
        ref = data.get("reference")
        rise = self.opts["rise"]
        evidence = {"losses": [losses[0], losses[-1]], "steps": data["ran"], "optimizer": data["optimizer"],
                    "per_step_seconds": data.get("per_step"), "reference": ref}
        if ref is not None and end < start and ref["end"] > ref["start"] * (1 + rise):
            yield self.diagnostic(
                "", f"the objective is inverted: over {data['ran']} {opt} steps on the batch your loss falls "
                    f"{fmt(start)} -> {fmt(end)} while the {_ref_name(ref['kind'])} of the same outputs and targets "
                    f"rises {fmt(ref['start'])} -> {fmt(ref['end'])}: the model is trained away from its targets "
                    f"(a flipped sign, -loss, or a maximized score); minimize the {_ref_name(ref['kind'])} itself{cost}",
                location=location, evidence={**evidence, "finding": "inverted"})
            return
        if end > start + rise * abs(start):
            yield self.diagnostic(
                "", f"the loss rises over {data['ran']} {opt} steps on the batch: {fmt(start)} -> {fmt(end)}: the "
                    "learning rate is too high, or the loss is not what the optimizer should minimize (a flipped "
                    f"sign, targets that do not match the outputs){cost}",
                location=location, evidence={**evidence, "finding": "rises"})
        elif end > start - (1 - self.opts["fall"]) * abs(start):
            yield self.diagnostic(
                "", f"the loss does not fall over {data['ran']} {opt} steps on this one batch: {fmt(start)} -> "
                    f"{fmt(end)} (a model that trains overfits one batch: below {self.opts['fall']:g}x its start); "
                    "check the learning rate (NN804), the parameters that do not change (NN806) and that the loss "
                    f"reads the outputs and targets it should{cost}",
                location=location, evidence={**evidence, "finding": "no_progress"})

    def _maximized_in_loop(self, trace):
        """In a watched loop (nnlint.guard, the callbacks): the gradient the loss sends into the logits.
        Cross-entropy's is softmax - onehot, one negative entry per row (the target); when nearly every
        row has one positive entry instead, summing to 0, the loss is a maximized cross-entropy."""
        from nnlint.rules.optimizer._loop import step_location, watched_steps, where

        for step in watched_steps(trace):
            rows, inverted = step.get("logits_rows", 0), step.get("one_positive", 0)
            if rows >= 4 and inverted >= 0.9 * rows:
                yield self.diagnostic(
                    "", f"the objective is inverted: at optimizer step {step['index']} ({where(step)}) the loss's "
                        f"gradient on the logits has exactly one positive entry in {inverted} of {rows} rows, each row "
                        "summing to 0: descent pushes one class per row (the target) down and all the others up, the "
                        "opposite of cross-entropy's softmax - onehot; the loss is a maximized cross-entropy (a "
                        "flipped sign, -F.cross_entropy): minimize the cross-entropy itself",
                    location=step_location(step),
                    evidence={"step": step["index"], "rows": rows, "one_positive": inverted, "finding": "inverted"})
                return

    def _nonfinite(self, bad, data, opt, cost, location):
        param = bad.get("param")
        module, _, attr = (param or "").rpartition(".")
        what = {"loss": "the loss", "gradient": f"the gradient of {module_expr(module, attr)}" if param else "a gradient",
                "parameter": f"{module_expr(module, attr)}" if param else "a parameter"}[bad["what"]]
        op = f"; the first NaN comes from {bad['op']}" if bad.get("op") else ""
        where = bad.get("location")
        if where:
            op += f" (forward line {where[0].rsplit('/', 1)[-1]}:{where[1]})"
            location = Location(str(where[0]), int(where[1]))
        losses = data["losses"]
        return self.diagnostic(
            module if bad["what"] != "loss" else "",
            f"{what} goes non-finite at step {bad['step']} of {data['steps']} {opt} steps on the batch (loss "
            f"{fmt(losses[0])} at the start{f', {fmt(losses[-2])} the step before' if len(losses) > 1 else ''}){op}: "
            f"an op that reaches 0 under sqrt/log or overflows under exp; add an eps, clamp, or compute it in log "
            f"space{cost}",
            location=location,
            evidence={"step": bad["step"], "what": bad["what"], "param": param, "op": bad.get("op"),
                      "steps": data["steps"], "finding": "nonfinite"})


def _ref_name(kind: str) -> str:
    return {"cross_entropy": "cross-entropy", "mse": "mean squared error", "nll_loss": "negative log-likelihood",
            "binary_cross_entropy_with_logits": "binary cross-entropy", "binary_cross_entropy": "binary cross-entropy",
            }.get(kind, kind)


def _cost(data) -> str:
    per, traced = data.get("per_step"), data.get("traced_step")
    if not per:
        return ""
    return f" (the probe: {data['ran']} step{'s' if data['ran'] != 1 else ''}, {per * 1000:.0f} ms each" + (
        f", {per / traced:.1f}x the traced step)" if traced else ")")
