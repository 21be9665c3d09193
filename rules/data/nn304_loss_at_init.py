from __future__ import annotations

import math
from typing import Optional

from nnlint.fix.kinds.scale_final_layer import ScaleFinalLayer, ScaleFinalLayerParams
from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt, pct
from nnlint.rules.objective._loss import fed_as_expected, head, loss_calls, target_fits
from nnlint.trace.records import OpRecord, Trace


class LossAtInit(Rule):
    """## What it does
    When a classification loss is given (`nn.CrossEntropyLoss`, `F.cross_entropy`, `nn.NLLLoss`,
    `F.binary_cross_entropy_with_logits`, or any function that calls them), reads the loss of each such
    term on the batch at init and compares it with `log(num_classes)`, the loss of a uniform guess
    (`log 2` per label for binary cross-entropy). A loss more than `max_ratio` (1.5x) above it means the
    output layer is over-confident at init: warning.

    Calibration at init (Karpathy's recipe, neural_net_checklist's `calibration_at_init`) is read too:
    the mean |p - q| of the predicted probabilities (softmax of the logits; sigmoid for the binary
    losses), where q is the uniform guess 1/C or the batch's label frequencies, whichever is nearer:
    both are right at init, and a head whose bias is at the class log-priors predicts the frequencies,
    not 1/C (comparing with 1/C alone is the false alarm both peer tools raise on such a head). As a
    fraction of its largest value (one-hot predictions), above `max_calibration` (0.6) it is reported
    like a high loss. Measured on Gaussian logits: the fraction is 0.5 at a logit std of about 1.45 and
    0.6 at about 1.7, for any number of classes (2 to 1000), while the loss ratio reaches 1.5 at a logit
    std of 1.5-1.6 for 4-10 classes but 3 for 1000: for large heads the calibration sees the
    over-confidence first. A Xavier-initialized head on Kaiming ReLU features (logit std 1.37, loss
    ratio 1.36 for 10 classes: the README's healthy model) measures 0.51, so the threshold is 0.6, not
    0.5.

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
    - `max_calibration` (default 0.6): report when the calibration gap, as a fraction of its largest
      value, exceeds this.

    ## Fix safety
    Safe: multiplies the final layer's weight by `factor` (to bring the logits' std to about 0.5, where
    the loss is within a few percent of `log(num_classes)`) and zeroes its bias; the architecture is
    unchanged. On imbalanced classes the re-check then reports NN606, whose fix sets the bias to the
    class log-priors.

    ## References
    - Karpathy, A Recipe for Training Neural Networks (2019): "verify loss @ init", "init well".
    """

    code = "NN304"
    name = "loss-at-init"
    severity = "warning"
    summary = "the classification loss (or calibration) at init is far from a uniform guess: an over-confident output layer"
    reads = frozenset({"loss", "forward"})
    options = {"max_ratio": 1.5, "max_calibration": 0.6}
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
        reported: set[str] = set()
        for call in loss_calls(trace):
            # a loss fed what it is not written for (NN601/NN602), or targets that do not fit (NN604), has
            # a value that means nothing here
            if call.family == "regression" or call.value is None or not math.isfinite(call.value) \
                    or not fed_as_expected(call) or not target_fits(call):
                continue
            classes = 2 if call.family == "binary" else call.num_classes or 0
            if classes < 2:
                continue
            uniform = math.log(classes)
            final = head(trace, call)
            module = final.module if final is not None else ""
            if module in reported:
                continue
            prior = call.prior_entropy
            if prior is not None and prior > 0 and call.value * self.opts["max_ratio"] < prior:
                # confident and right before training: it has seen the labels (calibration says nothing more)
                reported.add(module)
                yield self._too_good(trace, call, uniform, prior, module)
                continue
            miscalibration = self._miscalibration(call, classes)
            if call.value > self.opts["max_ratio"] * uniform or \
                    (miscalibration is not None and miscalibration > self.opts["max_calibration"]):
                reported.add(module)
                yield self._over_confident(trace, call, uniform, final, miscalibration)

    @staticmethod
    def _miscalibration(call, classes: int) -> Optional[float]:
        """Mean |p - q| over the batch's predictions, q the nearer of the uniform guess and the label
        frequencies (both are right at init), as a fraction of its largest value 2(C-1)/C^2 (one-hot
        predictions)."""
        x = call.input
        gaps = [g for g in (x.calibration, x.prior_calibration) if g is not None and math.isfinite(g)]
        return min(gaps) / (2 * (classes - 1) / classes ** 2) if gaps else None

    def _over_confident(self, trace: Trace, call, uniform: float, final: Optional[OpRecord],
                        miscalibration: Optional[float]):
        classes = 2 if call.family == "binary" else call.num_classes
        value = call.value
        binary = call.family == "binary"
        reference = "log(2), per label" if binary else f"log({classes})"
        logit_std = final.out.std if final is not None and final.out is not None else None
        std_note = f", logits std {fmt(logit_std)}" if logit_std is not None else ""
        calibration = (f"; the predicted probabilities are {pct(miscalibration)} of the way from uniform (or the label "
                       "frequencies) to one-hot" if miscalibration is not None else "")
        fix, todo = None, "scale the final layer's weight down (std 0.01, or zero-init it) and set its bias to the class log-priors"
        if final is not None:
            factor = min(1.0, self.TARGET_LOGIT_STD / logit_std) if logit_std else 0.1
            factor = float(f"{factor:.2g}")
            fix = ScaleFinalLayer.make(
                final.module, f"multiply {final.module}.weight by {factor:g} and zero {final.module}.bias",
                ScaleFinalLayerParams(factor))
            todo = (f"with torch.no_grad(): {module_expr(final.module, 'weight')}.mul_({factor:g}) (or nn.init.zeros_ it), "
                    f"and set {module_expr(final.module, 'bias')} to the class log-priors")
        return self.diagnostic(
            final.module if final is not None else "",
            f"loss at init {fmt(value)} is {fmt(value / uniform)}x {reference} = {fmt(uniform)}, the loss of a uniform "
            f"guess ({call.loss}, {classes} classes{std_note}){calibration}: the output layer is over-confident before "
            f"training; {todo}",
            location=trace.location_of(final.module) if final is not None else None,
            evidence={"loss": value, "uniform_loss": uniform, "ratio": value / uniform, "num_classes": classes,
                      "loss_op": call.loss, "label_entropy": call.prior_entropy, "logit_std": logit_std,
                      "calibration": miscalibration},
            fix=fix,
        )

    def _too_good(self, trace: Trace, call, uniform: float, prior: float, module: str):
        classes = 2 if call.family == "binary" else call.num_classes
        return self.diagnostic(
            module,
            f"loss at init {fmt(call.value)} is far below {fmt(prior)}, the entropy of the batch's labels (and "
            f"log({classes}) = {fmt(uniform)}): an untrained model cannot beat that without "
            "seeing the labels; check that the target does not leak into the inputs, or that a pretrained "
            "head is meant to be there",
            severity="info",
            location=trace.location_of(module) if module else None,
            evidence={"loss": call.value, "uniform_loss": uniform, "label_entropy": prior, "num_classes": classes,
                      "loss_op": call.loss},
        )
