from __future__ import annotations

import math
from typing import Optional

from nnlint.fix.kinds.scale_final_layer import ScaleFinalLayer, ScaleFinalLayerParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord, Trace
from nnlint.pyexpr import module_expr


class LossAtInit(Rule):
    """## What it does
    When a classification loss is given (`nn.CrossEntropyLoss`, `F.cross_entropy`, `nn.NLLLoss`,
    `F.binary_cross_entropy_with_logits`, or any function that calls them), reads the loss of each such
    term on the batch at init and compares it with `log(num_classes)`, the loss of a uniform guess
    (`log 2` per label for binary cross-entropy). A loss more than `max_ratio` (1.5x) above it means the
    output layer is over-confident at init: warning.

    A loss far *below* what the labels allow is reported too, as info: under the entropy of the
    batch's label frequencies divided by 1.5. No model that ignores its input can do better than that
    entropy, so an untrained model that does has seen the labels (a pretrained head, or the target leaks
    into the inputs). The lower bound is the label entropy rather than `log(num_classes)` because a
    well-initialized output bias (the class log-priors, what this rule's fix sets) legitimately brings
    the loss down to it on imbalanced classes.

    ## Why is this bad?
    At init the network knows nothing, so its predictions should be near uniform (or the class
    priors). Large logits make it confidently wrong: the first hundreds of steps go to shrinking the
    output layer instead of learning features (the "hockey stick" loss curve), large gradients flow
    back, and softmax saturation can stall classes for good.

    The message quotes the measured loss, the reference and the logits' std: with a real `loss_fn`
    this is an absolute measurement, not a heuristic (without one, the rule does not run). Terms are
    read per call, so `F.cross_entropy(logits.view(-1, V), y.view(-1))` and a main-plus-auxiliary loss
    both work; a `reduction="sum"` loss is divided by the number of labels. Label smoothing does not
    move the reference: a uniform guess still costs `log(num_classes)`.

    ## Options
    - `max_ratio` (default 1.5): report when loss / log(num_classes) exceeds this, or when
      label entropy / loss does.

    ## Fix safety
    Safe: multiplies the final layer's weight by `factor` (to bring the logits' std to about 0.5, where
    the loss is within a few percent of `log(num_classes)`) and sets its bias to the class log-priors
    measured on the batch's labels (zeros when the classes are balanced); the architecture is unchanged.

    ## References
    - Karpathy, A Recipe for Training Neural Networks (2019): "verify loss @ init", "init well".
    """

    code = "NN304"
    name = "loss-at-init"
    severity = "warning"
    summary = "the classification loss at init is far from log(num_classes): an over-confident output layer"
    reads = frozenset({"loss", "forward"})
    options = {"max_ratio": 1.5}
    fixable = "safe"

    TARGET_LOGIT_STD = 0.5

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.normal_(model[2].weight, std=1.0)           # logits with std ~8
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.CrossEntropyLoss()
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            nn.init.normal_(model[2].weight, std=0.01)          # small logits: the loss starts at log(10)
            batch = torch.randn(64, 32)
            target = torch.randint(0, 10, (64,))
            loss_fn = nn.CrossEntropyLoss()
            """),
    )

    def check(self, trace):
        terms = trace.target_info.get("classification_losses") or []
        if not terms or trace.loss_is_surrogate:
            return
        graph = Graph.of(trace)
        reported: set[str] = set()
        for term in terms:
            value, classes = term.get("value"), term.get("num_classes") or 0
            if value is None or not math.isfinite(value) or classes < 2:
                continue
            uniform = math.log(classes)
            final = _final_layer(trace, graph, term.get("input_shape") or [])
            module = final.module if final is not None else ""
            if module in reported:
                continue
            if value > self.opts["max_ratio"] * uniform:
                reported.add(module)
                yield self._over_confident(trace, term, value, uniform, final)
                continue
            prior = term.get("prior_entropy")
            if prior is not None and prior > 0 and value * self.opts["max_ratio"] < prior:
                reported.add(module)
                yield self._too_good(trace, term, value, uniform, prior, module)

    def _over_confident(self, trace: Trace, term: dict, value: float, uniform: float, final: Optional[OpRecord]):
        classes = term["num_classes"]
        binary = term["op"].startswith("binary")
        reference = "log(2), per label" if binary else f"log({classes})"
        logit_std = final.out.std if final is not None and final.out is not None else None
        std_note = f", logits std {fmt(logit_std)}" if logit_std is not None else ""
        fix, todo = None, "scale the final layer's weight down (std 0.01, or zero-init it) and set its bias to the class log-priors"
        if final is not None:
            factor = min(1.0, self.TARGET_LOGIT_STD / logit_std) if logit_std else 0.1
            factor = float(f"{factor:.2g}")
            fix = ScaleFinalLayer.make(
                final.module, f"multiply {final.module}.weight by {factor:g} and set {final.module}.bias to the "
                              "class log-priors (zeros for balanced classes)", ScaleFinalLayerParams(factor))
            todo = (f"with torch.no_grad(): {module_expr(final.module, 'weight')}.mul_({factor:g}) (or nn.init.zeros_ it), "
                    f"and set {module_expr(final.module, 'bias')} to the class log-priors")
        return self.diagnostic(
            final.module if final is not None else "",
            f"loss at init {fmt(value)} is {fmt(value / uniform)}x {reference} = {fmt(uniform)}, the loss of a uniform "
            f"guess ({term['op']}, {classes} classes{std_note}): the output layer is over-confident before "
            f"training; {todo}",
            location=trace.location_of(final.module) if final is not None else None,
            evidence={"loss": value, "uniform_loss": uniform, "ratio": value / uniform, "num_classes": classes,
                      "loss_op": term["op"], "label_entropy": term.get("prior_entropy"), "logit_std": logit_std},
            fix=fix,
        )

    def _too_good(self, trace: Trace, term: dict, value: float, uniform: float, prior: float, module: str):
        return self.diagnostic(
            module,
            f"loss at init {fmt(value)} is far below {fmt(prior)}, the entropy of the batch's labels (and "
            f"log({term['num_classes']}) = {fmt(uniform)}): an untrained model cannot beat that without "
            "seeing the labels; check that the target does not leak into the inputs, or that a pretrained "
            "head is meant to be there",
            severity="info",
            location=trace.location_of(module) if module else None,
            evidence={"loss": value, "uniform_loss": uniform, "label_entropy": prior, "num_classes": term["num_classes"],
                      "loss_op": term["op"]},
        )


def _final_layer(trace: Trace, graph: Graph, input_shape: list[int]) -> Optional[OpRecord]:
    """The weight layer that produced the logits the loss read: a model output of the same size."""
    size = math.prod(input_shape) if input_shape else None
    outputs = [graph.producer.get(s) for s in trace.output_serials]
    outputs = [o for o in outputs if o is not None]
    matching = [o for o in outputs if size is None or o.out is None or o.out.numel == size] or outputs[:1]
    for op in matching:
        if op.weight is not None and op.kind in ("linear", "conv", "matmul"):
            return op
        feeding = graph.feeding_weight_op(op)
        if feeding is not None:
            return feeding
    return None
