from __future__ import annotations

from nnlint.registry import Rule
from nnlint.rules.propagation._gradients import describe, earliest_vs_last, evidence, surrogate_note


class VanishingGradients(Rule):
    """## What it does
    After the backward pass, compares the relative gradient ‖grad‖/‖W‖ (how far one SGD step moves a
    layer, relative to its size) of the earliest weight layer in execution order with the last one's,
    and reports when the earliest gets less than `min_ratio` (1e-3) of the last's.

    Layers that read the same input (an attention's query/key/value, SwiGLU's gate/up) count as one,
    represented by the best-fed of them: at init the query and key get ~50x less gradient than the value
    because the softmax is near uniform (Hugging Face BERT-base: 4e-3 vs 4.5e-2), which is not depth.
    Embeddings, frozen and tied weights, and all-zero weights (no relative size) are left out. An
    exactly-zero gradient is NN406's.

    ## Why is this bad?
    The early layers barely move while the late ones train: the network learns like a shallow one on
    top of fixed random features, and by the time the late layers settle, the early ones see gradients
    that are still vanishing. Typical causes: saturating sigmoid/tanh stacks, weights scaled too small
    (NN103), deep chains without normalization or residual connections.

    Calibration, with the surrogate loss at each library's own init (earliest/last): torchvision-style
    ResNet with BatchNorm 0.33, VGG (Kaiming) 7e-3, Kaiming ReLU MLP of 6 layers 3e-2, pre-LN GPT 0.13,
    Llama (RMSNorm) 1e-2, Hugging Face BERT-base for sequence classification 1.4e-2 and bert-tiny 4.7e-3
    (with the parallel-projection grouping; 1.2e-3 and 8e-5 without it). A 10-layer sigmoid MLP at
    PyTorch's default init: about 1e-5.

    ## Example
    ```python
    layers = []
    for _ in range(10):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    ```

    ## Use instead
    ```python
    for _ in range(10):
        layers += [nn.Linear(64, 64), nn.ReLU()]   # and nn.init.kaiming_normal_(..., nonlinearity="relu")
    ```
    or put a `nn.BatchNorm1d`/`nn.LayerNorm` after each weight layer, or add residual connections.

    ## Options
    - `min_ratio` (default 1e-3): report when earliest/last relative gradient is below this.

    ## Fix safety
    No automatic fix: the cause (initialization, activation, missing normalization) decides the remedy,
    and the other rules (NN103, NN202, NN401) carry those fixes.
    """

    code = "NN404"
    name = "vanishing-gradients"
    severity = "warning"
    summary = "the earliest weight layer's relative gradient is under 1e-3 of the last layer's"
    options = {"min_ratio": 1e-3}

    def check(self, trace):
        r = earliest_vs_last(trace)
        if r is None or not r.ratio < self.opts["min_ratio"]:
            return
        yield self.diagnostic(
            r.first.module,
            f"gradients vanish: {describe(r)}, under the {self.opts['min_ratio']:g} limit{surrogate_note(trace)}; "
            "the early layers barely learn. Re-init with the gain-correct initializer "
            "(nn.init.kaiming_normal_ before ReLU), swap saturating sigmoid/tanh for ReLU, or add "
            "nn.BatchNorm/nn.LayerNorm or residual connections",
            location=trace.location_of(r.first.module),
            evidence=evidence(r),
        )
