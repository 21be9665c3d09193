from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import describe_op, location_for
from nnlint.trace.structure import Structure


class NonFiniteOutput(Rule):
    """## What it does
    Finds NaN or Inf produced by the forward pass on the sample batch, and names the first op (in
    execution order) whose output went non-finite.

    ## Why is this bad?
    A non-finite value propagates to the loss and every gradient: the first optimizer step turns every
    weight it touches into NaN and training is over. The first module to produce it is where to look:
    an `exp` of large values, a `log` or `sqrt` of a negative, a division by zero, an overflow in
    float16.

    ## Options
    None.

    ## Fix safety
    No automatic fix: the cure depends on the formula.
    """

    code = "NN002"
    name = "non-finite-output"
    severity = "error"
    summary = "the forward pass produced NaN/Inf; names the first op that did"
    reads = frozenset({"forward", "inputs"})

    examples = (
        Faulty("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(8, 8)

                def forward(self, x):
                    return torch.exp(self.fc(x) * 100)   # overflows to inf


            model = Net()
            batch = torch.randn(32, 8)
            """, module=''),
        Healthy("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(8, 8)

                def forward(self, x):
                    return F.softplus(self.fc(x) * 100)   # grows linearly, never overflows


            model = Net()
            batch = torch.randn(32, 8)
            """, note="""
            Keep the argument in range (`torch.clamp`, `F.softplus` instead of `exp`, `log1p`, an epsilon in
            divisions), or compute in float32.
            """),
        Healthy("""
            class CausalAttention(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.qkv, self.out = nn.Linear(16, 48), nn.Linear(16, 16)

                def forward(self, x):
                    q, k, v = self.qkv(x).chunk(3, dim=-1)
                    mask = torch.log(torch.ones(x.shape[1], x.shape[1]).tril())   # -inf above the diagonal: a mask
                    scores = q @ k.transpose(-2, -1) / 4 + mask
                    return self.out(scores.softmax(-1) @ v)


            model = CausalAttention()
            batch = torch.randn(4, 8, 16)
            """),
    )

    def check(self, trace):
        bad_inputs = [i for i in trace.inputs if i.is_float and i.summary.nonfinite]
        if bad_inputs:
            yield self.diagnostic(
                "",
                f"the input {bad_inputs[0].path} already contains NaN or Inf: clean the data "
                "(torch.nan_to_num, or drop the bad samples) before the model sees it",
                evidence={"input": bad_inputs[0].path},
            )
            return
        sources = Structure.of(trace).nonfinite_sources()
        if sources:
            op = sources[0]
            yield self.diagnostic(
                op.module,
                f"{describe_op(trace, op)} produced NaN/Inf on the sample batch, and it reaches the model's output "
                f"(the first such op in execution order; its input std was {_in_std(op)}): keep its argument in range "
                "(clamp, softplus, log1p, an epsilon)",
                location=location_for(trace, op.module, op),
                evidence={"op": op.func, "op_index": op.index, "input_std": _in_std(op)},
            )


def _in_std(op) -> str:
    s = op.stats.get("in")
    if s is None:
        ops = op.stats.get("operands")
        s = ops[0] if ops else None
    return "unknown" if s is None else f"{s.std:.3g}"
