from __future__ import annotations

import math
from typing import Optional

from nnlint.fix.kinds.bias_to_priors import BiasToPriors, BiasToPriorsParams
from nnlint.pyexpr import module_expr
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt, pct
from nnlint.rules.objective._loss import fed_as_expected, head, loss_calls, loss_name, source_op, target_fits, where
from nnlint.trace.records import LossCall, Trace

# The 99.9% quantile of a chi-square with k degrees of freedom, / 2N, is how far from uniform (in
# nats of KL divergence) the label frequencies of N balanced samples stray by chance (Wilson-Hilferty).
_Z999 = 3.09


def chance_divergence(classes: int, labels: int) -> float:
    k = max(classes - 1, 1)
    quantile = k * (1 - 2 / (9 * k) + _Z999 * math.sqrt(2 / (9 * k))) ** 3
    return quantile / (2 * max(labels, 1))


class HeadInitVsTarget(Rule):
    """## What it does
    Compares where the output layer starts with what the targets are.

    - **Classification** (`cross_entropy`, `nll_loss` after `log_softmax`, `BCEWithLogitsLoss` with one
      output): reads the class frequencies f of the batch's labels. When they are imbalanced (the most
      frequent class over the rarest is above `min_prior_ratio`, 3x, and the imbalance is beyond what
      sampling a balanced batch of this size gives: the KL divergence from uniform above the 99.9%
      chance level) and the loss at init exceeds the labels' entropy H(f) by more than `min_gap` (0.25
      nats), the head starts uniform where it could start at the priors. Measured: priors 85/5/5/5%, a
      zero bias: loss 1.31 against H(f) 0.63 (gap 0.68); the bias at log f: 0.67 (gap 0.04).
    - **Regression** (`mse_loss`, `l1_loss`, `smooth_l1_loss`, `huber_loss`): compares the output's
      mean and std on the batch with the target's. It fires when the targets are not standardized: their
      std is over `max_scale_ratio` (30x) the output's and over `min_target_std` (3), or their mean is
      off the output's by more than 1, more than their own std and more than 3 output stds. Measured:
      targets of std 1.2 against an output std 0.19 (ratio 6) are healthy; std 100 gives 640. A head
      drawn small on purpose (std 0.01) against standardized targets, or a zero-initialized one, is not
      flagged: the target's own scale decides.

    When the loss at init is over-confident (NN304's finding), this rule waits for that fix first.

    ## Why is this bad?
    A head that starts at log(num_classes) on imbalanced classes spends its first hundreds of steps
    learning the class frequencies (Karpathy's "hockey stick" loss curve) and its large early
    gradients disturb the features. Regression targets of scale 100 against outputs of scale 1 make the
    loss 10,000x larger than the head's reach: the first steps blow the weights up to catch the scale,
    and the learning rate that suits the loss does not suit the model.

    ## Options
    - `min_gap` (default 0.25): loss at init minus the labels' entropy, in nats, to report.
    - `min_prior_ratio` (default 3.0): most frequent over rarest class frequency to call them imbalanced.
    - `max_scale_ratio` (default 30.0): target std over output std to report.
    - `min_target_std` (default 3.0): the target std below which targets count as standardized.

    ## Fix safety
    Classification, safe: sets the final layer's bias to the class log-priors measured on the batch
    (`log f`; for a sigmoid output `log(r / (1 - r))`), in memory and in the source after the model is
    built. Regression: no automatic fix (the targets are the data's): standardize them, `(y - mean) /
    std` with the printed statistics, and invert that on the predictions.

    ## References
    - Karpathy, A Recipe for Training Neural Networks (2019): "init well".
    """

    code = "NN606"
    name = "head-init-vs-target"
    severity = "warning"
    summary = "the output layer starts far from the targets: class priors vs its bias, or unstandardized regression targets"
    reads = frozenset({"loss", "forward"})
    options = {"min_gap": 0.25, "min_prior_ratio": 3.0, "max_scale_ratio": 30.0, "min_target_std": 3.0}
    fixable = "safe"
    about = "model"

    OVER_CONFIDENT = 1.5     # NN304's ratio to log(num_classes): its finding and its fix come first

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
            batch = torch.randn(256, 32)
            target = torch.multinomial(torch.tensor([0.85, 0.05, 0.05, 0.05]), 256, replacement=True)
            loss_fn = nn.CrossEntropyLoss()          # the head starts uniform on 85/5/5/5% classes
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
            priors = torch.tensor([0.85, 0.05, 0.05, 0.05])
            with torch.no_grad():
                model[2].bias.copy_(priors.log())    # start at the class log-priors
            batch = torch.randn(256, 32)
            target = torch.multinomial(priors, 256, replacement=True)
            loss_fn = nn.CrossEntropyLoss()
            """),
    )

    def check(self, trace):
        reported: set[str] = set()
        for call in loss_calls(trace):
            if call.target is None or call.value is None or not fed_as_expected(call) or not target_fits(call) \
                    or call.options.get("weighted"):
                continue
            if call.family == "regression":
                finding = self._regression(trace, call)
            else:
                finding = self._priors(trace, call)
            if finding is not None and finding.module not in reported:
                reported.add(finding.module)
                yield finding

    # -- classification --
    def _priors(self, trace: Trace, call: LossCall):
        if call.options.get("label_smoothing"):
            return None
        frequencies = self._frequencies(call)
        if frequencies is None:
            return None
        f, labels = frequencies
        binary = call.family == "binary"
        classes = 2 if binary else len(f)
        entropy = -sum(p * math.log(p) for p in f if p > 0)
        if call.value > self.OVER_CONFIDENT * math.log(classes):
            return None
        if not entropy < math.log(classes) - chance_divergence(classes, labels):
            return None
        smoothed = [(p * labels + 0.5) / (labels + 0.5 * classes) for p in f]
        if max(smoothed) / min(smoothed) <= self.opts["min_prior_ratio"]:
            return None
        gap = call.value - entropy
        if gap <= self.opts["min_gap"]:
            return None
        op = head(trace, call)
        module, location = where(trace, op, call)
        values = (math.log(smoothed[1] / smoothed[0]),) if binary else tuple(math.log(p) for p in smoothed)
        fixable = op is not None and source_op(trace, call.serial) is op and f"{op.module}.bias" in trace.params
        shown = "/".join(pct(p) for p in (f[1:] if binary else f))
        what = f"positive rate {shown}" if binary else f"class frequencies {shown}"
        code = (f"with torch.no_grad(): {module_expr(module, 'bias')}.copy_(torch.tensor("
                f"[{', '.join(f'{v:.3g}' for v in values)}]))") if module else "a bias at the class log-priors"
        message = (f"{what} on the batch's {labels} labels, and the {loss_name(call)} at init, {fmt(call.value, 3)}, is "
                   f"{fmt(gap)} nats above their entropy {fmt(entropy, 3)}, the loss of a head that starts at the "
                   f"priors: the first steps will be spent learning the class frequencies; start the output bias at "
                   f"the log-priors: {code}")
        fix = BiasToPriors.make(module, f"set {module}.bias to the class log-priors measured on the batch",
                                BiasToPriorsParams(values)) if fixable else None
        return self.diagnostic(module, message, location=location, fix=fix,
                               evidence={"loss": call.value, "label_entropy": entropy, "gap": gap, "frequencies": f,
                                         "labels": labels, "log_priors": list(values)})

    @staticmethod
    def _frequencies(call: LossCall) -> Optional[tuple[list[float], int]]:
        """(label frequencies, number of labels): per class for integer labels; (1 - r, r) for 0/1 labels of
        a one-output sigmoid head."""
        t = call.target
        if call.family == "class":
            if not t.class_counts:
                return None
            labels = sum(t.class_counts)
            return ([c / labels for c in t.class_counts], labels) if labels else None
        if call.loss != "binary_cross_entropy_with_logits" or (len(call.input.shape) >= 2 and call.input.shape[-1] != 1):
            return None
        if not (t.integral and t.min >= 0 and t.max <= 1):
            return None
        labels = math.prod(t.shape)
        return [1 - t.mean, t.mean], labels

    # -- regression --
    def _regression(self, trace: Trace, call: LossCall):
        x, t = call.input, call.target
        if not t.is_float or math.prod(t.shape) != math.prod(x.shape):
            return None
        scale = t.std / x.std if x.std > 0 else None
        off_scale = scale is not None and scale > self.opts["max_scale_ratio"] and t.std > self.opts["min_target_std"]
        shift = abs(t.mean - x.mean)
        off_center = shift > 1 and shift > t.std and shift > 3 * x.std
        if not (off_scale or off_center):
            return None
        op = head(trace, call) or source_op(trace, call.serial)
        module, location = where(trace, op, call)
        found = []
        if off_scale:
            found.append(f"target std {fmt(t.std)} is {fmt(scale)}x the output's {fmt(x.std)}")
        if off_center:
            found.append(f"target mean {fmt(t.mean)} is {fmt(shift)} from the output's {fmt(x.mean)}")
        message = (f"the regression targets are not standardized ({loss_name(call)}): {' and '.join(found)}; the "
                   f"loss at init {fmt(call.value)} is all scale, and the first steps go to blowing the head up to "
                   f"reach it. Standardize the targets: target = (target - {t.mean:.4g}) / {t.std:.4g}, and invert "
                   "that on the predictions" + (f" (or start {module_expr(module, 'bias')} at the target mean)"
                                                 if module and off_center and not off_scale else ""))
        return self.diagnostic(module, message, location=location,
                               evidence={"target_mean": t.mean, "target_std": t.std, "output_mean": x.mean,
                                         "output_std": x.std, "scale_ratio": scale, "loss": call.value})
