from __future__ import annotations

import statistics

from nnlint.probes.update_ratio import has_scale_to_keep
from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt
from nnlint.rules.optimizer._groups import optimizer_location


class UpdateRatio(Rule):
    """## What it does
    Takes one real `step()` of the given optimizer, on a copy of its state and on the gradients of the
    check's own backward pass (the model and the optimizer are left exactly as found), and measures
    for every weight (2-D and larger parameters) the update/weight ratio `||dW|| / ||W||` over the rows
    (output units, embedding rows) that received a gradient. A layer whose ratio is below
    `low` (it will not move) or above `high` (each step rewrites it: training diverges) is reported,
    with the learning rate that puts the median layer at `target` (1e-3: the update/weight ratio of
    healthy training, Karpathy's "about 1e-3" rule of thumb).

    The update is the optimizer's own: momentum, Adam's per-parameter normalization and bias
    correction, coupled or decoupled weight decay, any custom update rule. At most 16 weights are
    measured, spread through the model and holding at most 10% of its values (the rest of the step is
    skipped), so the probe stays a small fraction of a training step on large models. With nnlint's surrogate loss
    (no `loss_fn`), the gradient's scale is not the user's: the probe also steps on 4x the gradient, and
    only an update that does not follow the gradient's scale (Adam, Adafactor, Lion: normalized) is
    judged; SGD's needs the real loss. Weights that received no gradient (NN406), are all zero (a
    zero-initialized output layer), or are in no parameter group (NN801) are not judged, nor
    per-channel vectors stored with singleton dims: torchvision ConvNeXt's `layer_scale` is (C, 1, 1)
    at 1e-6, and AdamW's first step at lr 1e-3 moves it by lr per value, 1e3x its norm, by design (the
    scale is meant to grow; ConvNeXt's recipe is AdamW lr 4e-3). Measured on the real-model corpus
    (benchmarks/TRIAGE.md, Z1): 3-4 such warnings per torchvision ConvNeXt, its weights' own ratios
    0.018-0.05.
    Nor weights that start at about zero on purpose (std under 1e-2 / sqrt(fan_in),
    `initmath.starts_near_zero`): timm ViT/DeiT's `cls_token` (std 1e-6, "1027x its norm") and BEiT's
    head (trunc_normal 0.02 x `head_init_scale` 1e-3, "50x") in the timm sweep of 2026-12-02; what
    their first steps do is replace that zero.

    ## Why is this bad?
    The learning rate is the first hyperparameter to get right, and a wrong one fails silently: at
    1e-7 the loss stays flat for thousands of steps, at 10 it explodes or turns NaN after a few. The
    ratio of the update to the weight says it at the first step, per layer, whatever the optimizer.

    ## Options
    - `low` (1e-5): below it a layer does not move. Measured first-step ratios of healthy setups (the
      gallery of benchmarks/PEERS.md, the zoo of tests/test_rules_optimizer.py): SGD lr 0.1 1.2e-2 to
      4e-2, SGD+momentum 0.05 6e-3 to 2e-2, Adam/AdamW 1e-3 3.9e-3 (ResNet-18's downsample) to 0.17,
      Adafactor 1e-2 (relative step) 9e-3 to 1.1e-2, Lion 1e-4 3.9e-4 to 1.7e-2 (the lowest healthy
      layer, 39x above `low`); the faulty SGD lr 1e-5 gives 1.2e-6 to 4e-6, lr 1e-7 8e-9 to 4e-8.
    - `high` (1.0): above it a step rewrites the layer. The catalog's 1e-1 false-alarms on healthy
      setups: Adam's first step is `lr * sign(g)` per element (bias correction), so its ratio is
      `lr / rms(W)` whatever the gradient: 0.17 on GPT-2's scaled `c_proj` at lr 1e-3, 0.49 on
      torchtest2's own healthy Linear(784, 10) at Adam lr 1e-2; healthy SGD+momentum 0.1 reaches 0.11 on
      ResNet-18's stem. The faulty SGD lr 10 gives 1.2 to 4.0.
    - `target` (1e-3): the ratio the suggested learning rate aims the median layer at.

    ## Fix safety
    No automatic fix: the message names the learning rate (a warm-up for the high side).

    ## References
    - Karpathy, "CS231n: Neural Networks Part 3" (update/weight ratio ~1e-3).
    - Kingma & Ba, "Adam" (2015), sec. 2.1: the effective step is bounded by the learning rate.
    """

    code = "NN804"
    name = "update-ratio"
    severity = "warning"
    summary = "one optimizer step moves a layer by under 1e-5 or over 1x of its weight norm"
    options = {"low": 1e-5, "high": 1.0, "target": 1e-3}
    reads = frozenset({"update_ratio"})
    cause = ("finding",)

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)
            target = torch.randint(0, 10, (16,))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=1e-7)   # nothing moves
            """, module='0'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)
            target = torch.randint(0, 10, (16,))
            loss_fn = nn.CrossEntropyLoss()


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.1)
            """),
    )

    def check(self, trace):
        data = trace.probes.get("update_ratio")
        if not data or not data.get("params"):
            return
        response = data.get("scale_response")
        if data.get("loss_is_surrogate") and (response is None or response > 2.0):
            return   # the surrogate's gradient scale set this update (SGD): not the user's step
        # lr 0 is NN803's; its update is 0 by definition
        judged = [p for p in data["params"] if p.get("ratio") is not None and p.get("group") is not None and p.get("lr")
                  and _has_scale_to_keep(trace, p["name"])]
        if not judged:
            return
        low, high, target = self.opts["low"], self.opts["high"], self.opts["target"]
        location = optimizer_location(trace)
        for p in judged:
            r = p["ratio"]
            if low <= r <= high:
                continue
            finding = "low" if r < low else "high"
            peers = [q["ratio"] for q in judged if q["group"] == p["group"]]
            median = statistics.median(peers)
            lr = p.get("lr")
            suggestion = ""
            if lr and median > 0:
                suggestion = f"; lr={_round(lr * target / median):g} puts the median layer of its group ({fmt(median)}) at {target:g}"
            where = f"group {p['group']} of " if len(data.get("lrs", ())) > 1 else ""
            if finding == "low":
                message = (f"one {data['optimizer']}(lr={lr:g}) step moves {module_expr(p['module'], p['name'].rpartition('.')[2])} "
                           f"by {fmt(r)} of its norm (healthy training: about {target:g} per step): it will barely move"
                           f"{suggestion}")
            else:
                message = (f"one {data['optimizer']}(lr={lr:g}) step moves {module_expr(p['module'], p['name'].rpartition('.')[2])} "
                           f"by {fmt(r)}x its norm (healthy training: about {target:g} per step): every step rewrites "
                           f"the layer and training diverges{suggestion}, or warm the learning rate up")
            yield self.diagnostic(
                p["module"], message.replace(f"{data['optimizer']}(lr=", f"{where}{data['optimizer']}(lr=", 1) if where else message,
                location=location,
                evidence={"param": p["name"], "ratio": r, "median_ratio": median, "lr": lr, "group": p["group"],
                          "suggested_lr": _round(lr * target / median) if lr and median > 0 else None,
                          "rows": p.get("rows"), "of_rows": p.get("of_rows"), "finding": finding,
                          "loss_is_surrogate": bool(data.get("loss_is_surrogate"))},
            )


def _has_scale_to_keep(trace, name: str) -> bool:
    record = trace.params.get(name)
    return record is None or has_scale_to_keep(record.shape, record)


def _round(x: float) -> float:
    """A learning rate as people write one: two significant digits."""
    return float(f"{x:.2g}")
