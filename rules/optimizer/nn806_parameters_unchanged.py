from __future__ import annotations

from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.optimizer._groups import attrs, by_module, optimizer_location


class ParametersUnchanged(Rule):
    """## What it does
    With the opt-in training probe (`--steps N`): trainable parameters (`requires_grad=True`) that are
    bit-identical after N optimizer steps on the batch, with the reason where it is known (in no
    parameter group, no gradient reached them, a learning rate of 0); and parameters declared frozen
    (`frozen=["backbone"]`, `--frozen backbone`, a model file's `frozen = [...]`) that changed.
    Without the probe, a declaration alone is compared with the setup: declared-frozen parameters that
    still have `requires_grad=True` and are in a parameter group will change.

    ## Why is this bad?
    A parameter that never changes is a layer that does not learn, whatever its cause. A "frozen"
    backbone that trains is the other way round: a fine-tuning run that destroys the pretrained
    features (torchtest2's README: `for p in model.parameters(): p.requires_grad = True` where
    `model.head.parameters()` was meant).

    ## Options
    None.

    ## Fix safety
    No automatic fix: freeze with `model.backbone.requires_grad_(False)` and build the optimizer from the
    trainable parameters only.
    """

    code = "NN806"
    name = "parameters-unchanged"
    severity = "error"
    summary = "opt-in probe: trainable parameters unchanged after N steps, or declared-frozen ones that changed"
    reads = frozenset({"train_steps", "frozen", "optimizer"})
    cause = ("finding",)

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Sequential(nn.Linear(32, 64), nn.ReLU()), nn.Linear(64, 10))
            for p in model.parameters():   # meant: freeze model[0], train the head
                p.requires_grad = True
            batch = torch.randn(16, 32)
            frozen = ["0"]


            def optimizer(model):
                return torch.optim.Adam(model.parameters(), lr=1e-3)
            """, module='0'),
        Healthy("""
            model = nn.Sequential(nn.Sequential(nn.Linear(32, 64), nn.ReLU()), nn.Linear(64, 10))
            model[0].requires_grad_(False)
            batch = torch.randn(16, 32)
            frozen = ["0"]


            def optimizer(model):
                return torch.optim.Adam(model[1].parameters(), lr=1e-3)
            """),
    )

    def check(self, trace):
        data = trace.probes.get("train_steps")
        location = optimizer_location(trace)
        if data:
            yield from self._measured(trace, data, location)
        else:
            yield from self._declared(trace, location)

    def _measured(self, trace, data, location):
        steps = data["ran"]
        for module, names in _by_declaration(trace, data.get("frozen_changed", ()), data["frozen"]).items():
            yield self.diagnostic(
                module, f"{module_expr(module)}'s {attrs(names)} are declared frozen ({', '.join(data['frozen'])}) but "
                        f"changed over {steps} {data['optimizer']} steps: they have requires_grad=True and are in the "
                        f"optimizer; call {module_expr(module)}.requires_grad_(False) and build the optimizer from "
                        "[p for p in model.parameters() if p.requires_grad]",
                location=_module_location(trace, module, location),
                evidence={"params": names, "steps": steps, "finding": "frozen_changed"})
        # a probe stopped by a non-finite step (NN805's) did not give every parameter its N steps
        unchanged = {u["name"]: u for u in data.get("unchanged", ())} if data.get("nonfinite") is None else {}
        for module, names in by_module(trace, unchanged).items():
            why = _why(unchanged[names[0]])
            yield self.diagnostic(
                module, f"{module_expr(module)}'s {attrs(names)} are trainable but bit-identical after {steps} "
                        f"{data['optimizer']} steps on the batch ({why}): the layer does not learn",
                location=_module_location(trace, module, location),
                evidence={"params": names, "steps": steps, "reason": why, "finding": "unchanged"})

    def _declared(self, trace, location):
        declared = trace.probes.get("frozen")
        if not declared or trace.optimizer is None:
            return
        held = trace.optimizer.groups_of()
        training = [n for n in declared["params"] if n in trace.params and trace.params[n].requires_grad and n in held]
        for module, names in _by_declaration(trace, training, declared["patterns"]).items():
            yield self.diagnostic(
                module, f"{module_expr(module)}'s {attrs(names)} are declared frozen ({', '.join(declared['patterns'])}) "
                        f"but have requires_grad=True and are in {trace.optimizer.type}'s parameter group(s) "
                        f"{', '.join(str(g) for g in sorted({g for n in names for g in held[n]}))}: they will train; "
                        f"call {module_expr(module)}.requires_grad_(False)",
                location=_module_location(trace, module, location),
                evidence={"params": names, "finding": "frozen_trainable"})


def _by_declaration(trace, names, patterns) -> dict[str, list[str]]:
    """Frozen parameters grouped by the module the user named (`frozen=["backbone"]`: one finding on
    `backbone`), else by their own module."""
    from nnlint.probes.frozen import declared_frozen

    out: dict[str, list[str]] = {}
    left = list(names)
    for pattern in patterns:
        if pattern in trace.modules:
            covered = declared_frozen(left, [pattern])
            if covered:
                out[pattern] = covered
                left = [n for n in left if n not in covered]
    out.update(by_module(trace, left))
    return out


def _why(u) -> str:
    if not u.get("in_optimizer"):
        return "they are in no parameter group of the optimizer (NN801)"
    if not u.get("got_gradient"):
        return "no gradient reaches them (NN406)"
    if u.get("lr") == 0:
        return "their group's lr is 0 (NN803)"
    return "their gradient is zero at every step, or their update rounds away"


def _module_location(trace, module, fallback):
    rec = trace.modules.get(module)
    return (rec.location if rec is not None else None) or fallback
