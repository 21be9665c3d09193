from __future__ import annotations

from typing import Optional

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import call_site, describe_op, fmt, location_for, swap_ladder
from nnlint.trace import vocab
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace


def improper(op: OpRecord) -> Optional[str]:
    """What makes the op an improper activation: "exp", "x**2", "x**3", "softmax", or None."""
    if op.kind == "exp":
        return "exp"
    if op.kind == "square" or op.kind == "pow" and op.args.get("exponent") in (2.0, 3.0):
        return "x**3" if op.args.get("exponent") == 3.0 else "x**2"
    if op.kind in ("softmax", "log_softmax") and op.args.get("dim", -1) != 0:
        return op.kind          # over dim 0 it normalizes the batch: NN701's
    return None


class ImproperHiddenActivation(Rule):
    """## What it does
    Finds a hidden nonlinearity that does not belong there: an unbounded, super-linear function
    (`exp`, `x**2`, `x**3`) or a normalizing op (`softmax`/`log_softmax` over the features) between two
    weight layers: fed by one, feeding another without a product or a division in between. The
    message quotes the signal measured on the batch: its std before and after.

    Not reported: attention's softmax (its output weights a value tensor through a matmul of two
    activations; with talking heads, CaiT's, a Linear mixes the heads' scores before and after it), gates (`x * f(y)`), anything inside an activation formula whose result multiplies
    the input (GPT-2's tanh GELU has an `x**3` in it), squares inside a norm (RMSNorm's `x.pow(2)`),
    a learned temperature (`logit_scale.exp()` of a parameter), and outputs (a Poisson rate `exp(x)`,
    the final softmax).

    ## Why is this bad?
    `exp` and powers grow faster than linearly: the signal's scale multiplies through them (exp
    overflows float32 above 88), gradients explode with it, and the network cannot represent
    negative evidence. A softmax over the hidden features squeezes them onto a simplex: every value
    is about 1/width, the next layer sees an almost constant input, and the gradient through the
    softmax is divided by the width.

    Error when the measured signal overflows (non-finite), else warning.

    ## Options
    None.

    ## Fix safety
    Unsafe: the activation is swapped for ReLU (the message suggests LeakyReLU or GELU for a layer of
    16 units or fewer, where whole ReLU layers can die) and the layer feeding it is re-initialized
    with Kaiming.
    """

    code = "NN204"
    name = "improper-hidden-activation"
    severity = "warning"
    summary = "exp, x**2/x**3 or a softmax over features used as a hidden nonlinearity"
    reads = frozenset({"forward"})
    fixable = "unsafe"

    examples = (
        Faulty("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(32, 64)
                    self.fc2 = nn.Linear(64, 10)

                def forward(self, x):
                    return self.fc2(torch.exp(self.fc1(x)))     # exp as the hidden activation


            model = Net()
            batch = torch.randn(64, 32)
            """, module=""),
        Healthy("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(32, 64)
                    self.fc2 = nn.Linear(64, 10)
                    nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")

                def forward(self, x):
                    return self.fc2(torch.relu(self.fc1(x)))


            model = Net()
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace: Trace):
        graph = Graph.of(trace)
        reported: set[tuple] = set()
        for op in graph.ops:
            what = improper(op)
            if what is None:
                continue
            consumer = graph.feeds_weight_layer(op)
            feeding = graph.feeding_weight_op(op)
            if consumer is None or feeding is None or graph.is_formula_gate(op):
                continue
            if what in ("softmax", "log_softmax") and _talking_heads(graph, feeding):
                continue
            site = call_site(trace, op)
            key = (op.module, op.location.line if op.location else -1) if site.functional else (op.module, -1)
            if key in reported:
                continue
            reported.add(key)
            out, fed = op.out, feeding.out
            overflow = (out is not None and out.nonfinite) or (consumer.out is not None and consumer.out.nonfinite)
            width = out.shape[-1] if out is not None and out.shape else 0
            measured = ""
            if out is not None and fed is not None and not fed.nonfinite:
                measured = (f" (measured: input std {fmt(fed.std)}, output "
                            + ("non-finite" if out.nonfinite else f"std {fmt(out.std)}, mean {fmt(out.mean)}") + ")")
            ladder = swap_ladder(trace, graph, op)   # ReLU (LeakyReLU where a feeding layer is narrow), then LeakyReLU
            swap = "nn.LeakyReLU" if ladder[0].params.to == "leaky_relu" else "nn.ReLU (or GELU)"
            yield self.diagnostic(
                op.module,
                f"{_describe(trace, op)} is a hidden nonlinearity ({_name(feeding)} -> {what} -> {_name(consumer)})"
                f"{measured}: {_why(what, width)}; use {swap} with Kaiming init",
                severity="error" if overflow else None,
                location=location_for(trace, op.module, op),
                evidence={"activation": what, "fed_by": feeding.module, "feeds": consumer.module,
                          "overflow": overflow, "out_std": out.std if out is not None else None},
                fix=ladder[0],
                escalation=ladder[1:],
            )


def _talking_heads(graph: Graph, feeding: OpRecord) -> bool:
    """Talking-heads attention (timm's CaiT): the scores `q @ k^T` mixed across heads by a Linear,
    softmaxed, mixed again, then weighting the values: the layer before the softmax reads the scores
    directly (through views and a scale), so the softmax is attention's, not a hidden activation."""
    def direct(o: OpRecord) -> bool:
        return vocab.is_passthrough(o) or (o.kind in ("mul", "div") and len(graph.tensor_inputs(o)) == 1)

    return graph.first(feeding, lambda o: o.kind == "matmul" and o.weight is None and len(graph.tensor_inputs(o)) == 2,
                       up=True, through=direct) is not None


def _why(what: str, width: int) -> str:
    if what in ("softmax", "log_softmax"):
        share = f" (1/{width} = {fmt(1 / width)})" if width else ""
        return (f"{what} squeezes the hidden features onto a simplex, every value about 1/width{share}, so the next "
                "layer sees a nearly constant input and gradients through it are divided by the width")
    return (f"{what} is unbounded and grows faster than linearly: the signal's scale multiplies through it"
            + (" (exp overflows float32 above 88)" if what == "exp" else "") + " and gradients explode with it")


def _describe(trace: Trace, op: OpRecord) -> str:
    """`exp() in forward` for a call, `1 (Softmax)` for a module."""
    return describe_op(trace, op) if call_site(trace, op).functional else f"{op.module} ({op.module_type})"


def _name(op: OpRecord) -> str:
    return op.module or f"{op.func}()"
