from __future__ import annotations

from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.optimizer._groups import attrs, by_module, optimizer_location


class ParamsNotInOptimizer(Rule):
    """## What it does
    Compares the trainable parameters of the model (`requires_grad=True`) with the parameters held by
    the optimizer given to the check (`optimizer(model)` in the model file, `optimizer=` in
    `nnlint.check`, the trainer's optimizer in the callbacks), by identity. Each module whose trainable
    parameters are in no parameter group is reported, with the parameters.

    ## Why is this bad?
    A parameter that no group holds gets its gradient every step and is never updated: the layer
    keeps its initial weights for the whole run, silently (nothing raises). The usual cause is an
    optimizer built before the model was final: a classification head replaced after
    `optimizer = AdamW(model.parameters())` (the optimizer still holds the old head), a layer added
    or re-created later, an optimizer built for another instance of the model (a copy, a re-loaded
    checkpoint), or a list of sub-modules' parameters that forgets one.

    ## Options
    None.

    ## Fix safety
    The message says how to build the optimizer from the final model. The fix (safe) rewrites the
    parameters argument of the optimizer call in the model file's `optimizer(model)` to
    `model.parameters()`, keeping its hyperparameters.

    ## References
    - torchtest2's `optimizer_coverage` check; PyTorch's "Optimizer" docs: "construct the optimizer after
      moving the model to its device and after it is final".
    """

    code = "NN801"
    name = "params-not-in-optimizer"
    severity = "error"
    summary = "trainable parameters of the model are in no parameter group of the optimizer"
    reads = frozenset({"optimizer"})
    cause = ("finding",)
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1000))
            built = torch.optim.AdamW(model.parameters(), lr=1e-3)
            model[2] = nn.Linear(64, 10)         # a new head, after the optimizer was built
            batch = torch.randn(16, 32)


            def optimizer(model):
                return built
            """, module='2', fixed=False),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1000))
            model[2] = nn.Linear(64, 10)
            batch = torch.randn(16, 32)


            def optimizer(model):
                return torch.optim.AdamW(model.parameters(), lr=1e-3)   # built from the final model
            """),
    )

    def check(self, trace):
        from nnlint.rules.optimizer._fixes import rebuild_fix

        opt = trace.optimizer
        if opt is None or not opt.groups:
            return
        held = opt.groups_of()
        missing = [n for n, rec in trace.params.items()
                   if rec.requires_grad and rec.tied_to is None and n not in held]
        if not missing:
            return
        total = sum(1 for rec in trace.params.values() if rec.requires_grad and rec.tied_to is None)
        foreign = sum(len(g.get("foreign", ())) for g in opt.groups)
        why = (f"; it holds {foreign} tensor(s) that are no parameter of the model: built before the model "
               "was final (a replaced layer)?" if foreign else "")
        for module, names in by_module(trace, missing).items():
            numel = sum(trace.params[n].numel for n in names)
            rec = trace.modules.get(module)
            yield self.diagnostic(
                module,
                f"{module_expr(module)}'s {attrs(names)} ({numel:,} values) are trainable but in none of the "
                f"{len(opt.groups)} parameter group(s) of {opt.type}: the layer is never updated; "
                f"{len(missing)} of {total} trainable parameters are missing{why}. Build the optimizer after "
                f"the model is final, from model.parameters()",
                location=(rec.location if rec is not None else None) or optimizer_location(trace),
                evidence={"params": names, "missing": len(missing), "trainable": total, "optimizer": opt.type,
                          "foreign": foreign, "finding": "not_in_optimizer"},
                fix=rebuild_fix(trace, f"build {opt.type} from model.parameters()"),
            )
