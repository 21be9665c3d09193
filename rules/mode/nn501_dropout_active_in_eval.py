from __future__ import annotations

from nnlint.fix.kinds.dropout_training import DropoutTraining, DropoutTrainingParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import call_site, location_for


class DropoutActiveInEval(Rule):
    """## What it does
    Runs the model in eval mode (`model.eval()`, no grad) and reports every stochastic op that still
    runs: `F.dropout(x, p)` called without `training=self.training`, a dropout module created inside
    `forward`, or any other random op (`torch.rand`, `bernoulli`, `randn_like`) that consumes the RNG
    during an eval forward.

    ## Why is this bad?
    `F.dropout`'s `training` argument defaults to True: unlike `nn.Dropout`, it does not follow
    `model.eval()`. Validation and test predictions are then random and systematically worse, and
    early stopping, checkpoint selection and reported metrics are all measured on a noisy model.

    ## Options
    None.

    ## Fix safety
    Safe: adds `training=self.training` to the call; in training mode nothing changes.
    """

    code = "NN501"
    name = "dropout-active-in-eval"
    severity = "error"
    summary = "a stochastic op (dropout, rand) still runs in eval mode"
    reads = frozenset({"eval"})
    cause = ("op", "p")
    fixable = "safe"

    examples = (
        Faulty("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 10)

                def forward(self, x):
                    return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5))   # training=True even under model.eval()


            model = Net()
            batch = torch.randn(64, 32)
            """, module=''),
        Healthy("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 10)

                def forward(self, x):
                    return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5, training=self.training))


            model = Net()
            batch = torch.randn(64, 32)
            """, note="""
            or an `nn.Dropout(0.5)` module built in `__init__`.
            """),
    )

    def check(self, trace):
        if not trace.eval_ran:
            return
        found = False
        seen: set[tuple] = set()
        for op in trace.ops_in("eval"):
            if op.kind == "dropout" and (not op.args.get("training", True) or op.args.get("p", 0.0) == 0.0):
                continue
            if op.kind not in ("dropout", "random"):
                continue
            key = (op.module, op.func, op.location.line if op.location else None)
            if key in seen:
                continue
            seen.add(key)
            found = True
            if op.kind == "dropout":
                message = (f"{op.func}(p={op.args.get('p')}) still drops activations in eval mode: "
                           "pass training=self.training (F.dropout defaults to training=True)")
                fix = DropoutTraining.make(op.module, "add training=self.training to the dropout call",
                                           DropoutTrainingParams(call_site(trace, op)))
            else:
                message = (f"torch.{op.func} consumes the RNG in eval mode: predictions are random; "
                           "guard it with `if self.training:`")
                fix = None
            yield self.diagnostic(op.module, message, location=location_for(trace, op.module, op),
                                  evidence={"op": op.func, "p": op.args.get("p")}, fix=fix)
        if not found and trace.eval_rng_consumed:
            yield self.diagnostic(
                "", "the eval-mode forward consumed the random number generator (an op nnlint could not "
                "attribute, e.g. inside a C++ extension): eval predictions are random",
                evidence={"rng_consumed": True})
