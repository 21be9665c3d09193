from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.trace.vocab import is_norm_type
from nnlint.rulekit import as_location
from nnlint.rules.optimizer._fixes import rebuild_fix

# Adam-family optimizers whose weight_decay is an L2 term added to the gradient (then divided by the
# adaptive denominator), and what decouples it.
COUPLED_L2 = {
    "Adam": "torch.optim.AdamW (or Adam(..., decoupled_weight_decay=True))",
    "Adamax": "torch.optim.AdamW",
    "NAdam": "NAdam(..., decoupled_weight_decay=True) or torch.optim.AdamW",
    "RAdam": "RAdam(..., decoupled_weight_decay=True) or torch.optim.AdamW",
}
EXAMPLES = 6


def param_groups_code(optimizer: str, weight_decay: str) -> str:
    """The standard split: decay the matrices and kernels, not the 1-D norm weights and biases."""
    return ("decay = [p for n, p in model.named_parameters() if p.ndim >= 2]; "
            "no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]; "
            f"optimizer = torch.optim.{optimizer}([{{'params': decay, 'weight_decay': {weight_decay}}}, "
            "{'params': no_decay, 'weight_decay': 0.0}], lr=...)")


class WeightDecaySetup(Rule):
    """## What it does
    Reads the optimizer given to the check (`optimizer(model)` in the model file, or `optimizer=` in
    `nnlint.check`): its type and, per parameter group, `weight_decay` and the parameters. It reports,
    one diagnostic per finding:
    - no parameter group has weight decay;
    - weight decay applied to norm parameters (the weight and bias of BatchNorm/LayerNorm/GroupNorm/
      RMSNorm) and to biases and other 1-D parameters; the message counts them;
    - `Adam` (or `Adamax`, `NAdam`, `RAdam` without `decoupled_weight_decay=True`) with
      `weight_decay > 0`.
    Optimizers without weight decay (LBFGS, Rprop, SparseAdam) and frozen parameters are skipped.

    ## Why is this bad?
    Weight decay is the standard regularizer of almost every training recipe, and in networks with
    normalization it also keeps the effective learning rate of the scale-invariant weights from
    decaying (van Laarhoven 2017; Zhang et al. 2019). But norm weights and biases have no such role:
    decaying a norm's scale pulls it toward zero and fights the normalization, and biases are too few to
    overfit. "No bias decay" (Jia et al. 2018) is part of the standard large-batch ImageNet recipe
    (He et al. 2019, "Bag of Tricks", sec. 3.1) and the default of timm and of GPT-style training code
    (nanoGPT decays only parameters with `ndim >= 2`). In Adam, `weight_decay` adds an L2 term to
    the gradient that is then divided by the adaptive denominator, so parameters with large gradients
    are barely regularized; AdamW decouples the decay from the adaptive step and generalizes better
    (Loshchilov & Hutter 2019).

    ## Options
    None.

    ## Fix safety
    Safe, in the source, for the first two findings: the model file's `optimizer(model)` is rebuilt
    from two groups, decay on the weight matrices and kernels (`p.ndim >= 2`), none on the rest
    (nnlint.fix.kinds.optimizer_params; an optimizer built elsewhere is left to you, and nothing changes
    in memory). Adam's coupled L2 has no fix: switching to AdamW means retuning the decay.

    ## References
    - Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).
    - Jia et al., "Highly Scalable Deep Learning Training System with Mixed-Precision" (2018).
    - He, Zhang, Zhang, Zhang, Xie, Li, "Bag of Tricks for Image Classification with Convolutional
      Neural Networks" (CVPR 2019).
    """

    code = "NN506"
    name = "weight-decay-setup"
    severity = "info"
    summary = "optimizer weight decay: none at all, on norm/bias parameters, or Adam's coupled L2"
    reads = frozenset({"optimizer"})
    about = "model"
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(64, 32)


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)   # decays norms and biases
            """, module='', fixed=False),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(64, 32)


            def optimizer(model):
                decay = [p for p in model.parameters() if p.ndim >= 2]
                no_decay = [p for p in model.parameters() if p.ndim < 2]
                return torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
                                       lr=0.1, momentum=0.9)
            """, note="""
            and `torch.optim.AdamW` instead of `Adam(weight_decay=...)` (AdamW's decay is multiplied by the
            learning rate: retune it, 0.01-0.1 is typical).
            """),
    )

    def check(self, trace):
        opt = trace.optimizer
        if opt is None or not opt.groups:
            return
        groups = [g for g in opt.groups if g.get("supports_weight_decay", True)]
        if not groups:
            return
        location = as_location(trace.target_info.get("optimizer_location"))
        decayed = [g for g in groups if (g.get("weight_decay") or 0.0) > 0]
        if not decayed:
            trainable = sum(1 for g in groups for n in g.get("params", ()) if self._trainable(trace, n))
            yield self.diagnostic(
                "",
                f"{opt.type} has weight_decay=0 in all {len(groups)} parameter group(s) ({trainable} trainable "
                f"parameters): nothing is regularized; decay the weight matrices and kernels only: "
                f"{param_groups_code(opt.type, '1e-4' if opt.type == 'SGD' else '0.05')}",
                location=location,
                evidence={"optimizer": opt.type, "groups": len(groups), "weight_decay": 0.0, "finding": "no_decay"},
                fix=rebuild_fix(trace, "decay the weight matrices and kernels only", decay_groups=True,
                                weight_decay=1e-4 if opt.type == "SGD" else 0.05),
            )
            return
        yield from self._decayed_norms_and_biases(trace, opt, decayed, location)
        yield from self._coupled_l2(opt, decayed, location)

    @staticmethod
    def _trainable(trace, name: str) -> bool:
        rec = trace.params.get(name)
        return rec is not None and rec.requires_grad

    def _decayed_norms_and_biases(self, trace, opt, decayed, location):
        norm, bias, other = [], [], []
        for g in decayed:
            for name in g.get("params", ()):
                if not self._trainable(trace, name):
                    continue
                rec = trace.params[name]
                module = trace.modules.get(rec.module)
                if module is not None and is_norm_type(module.type):
                    norm.append(name)
                elif len(rec.shape) < 2:
                    (bias if rec.attr == "bias" else other).append(name)
        names = norm + bias + other
        if not names:
            return
        wd = sorted({g["weight_decay"] for g in decayed})
        parts = [f"{len(norm)} norm weights/biases" if norm else "",
                 f"{len(bias)} bias{'es' if len(bias) > 1 else ''}" if bias else "",
                 f"{len(other)} other 1-D parameter{'s' if len(other) > 1 else ''}" if other else ""]
        examples = ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")
        yield self.diagnostic(
            "",
            f"{opt.type} applies weight_decay={'/'.join(f'{w:g}' for w in wd)} to {len(names)} norm/bias parameters "
            f"({', '.join(p for p in parts if p)}: {examples}); decaying them pulls norm scales toward 0 and "
            f"regularizes little; use two parameter groups: {param_groups_code(opt.type, f'{wd[-1]:g}')}",
            location=location,
            evidence={"optimizer": opt.type, "weight_decay": wd, "decayed_norm_bias": len(names),
                      "norm": len(norm), "bias": len(bias), "other_1d": len(other), "examples": names[:EXAMPLES],
                      "finding": "decayed_norm_bias"},
            fix=rebuild_fix(trace, "no weight decay on norms and biases", decay_groups=True, weight_decay=wd[-1]),
        )

    def _coupled_l2(self, opt, decayed, location):
        if opt.type not in COUPLED_L2 or all(g.get("decoupled_weight_decay") for g in decayed):
            return
        wd = max(g["weight_decay"] for g in decayed)
        yield self.diagnostic(
            "",
            f"{opt.type} with weight_decay={wd:g} adds an L2 term to the gradient, which the adaptive step "
            f"then divides away for parameters with large gradients; use {COUPLED_L2[opt.type]}, whose decay "
            f"is decoupled (it is multiplied by the lr: retune it, 0.01-0.1 is typical)",
            location=location,
            evidence={"optimizer": opt.type, "weight_decay": wd, "finding": "coupled_l2"},
        )
