from __future__ import annotations

from nnlint.registry import Chart, Faulty, Healthy, Rule
from nnlint.rules.propagation._gradients import describe, earliest_vs_last, evidence, surrogate_note


GRADIENT_CHART = Chart(
    "gradients", "Gradient through depth",
    "Gradient norm relative to the weight norm, per weight, log scale. A fall of 1000x from the last layer to the "
    "first is a vanishing gradient.",
    x_label="weight, execution order", y_label="|grad| / |weight| (log)",
    empty="gradients: no trainable weight received one (or no backward pass ran)", log_y=True)

class VanishingGradients(Rule):
    """## What it does
    After the backward pass, compares the relative gradient ‖grad‖/‖W‖ (how far one SGD step moves a
    layer, relative to its size) of the earliest weight layer in execution order with that of the
    later hidden layers, and reports when the earliest gets less than `min_ratio` (1e-3) of the
    best-fed of them.

    The reference is the best-fed later *hidden* layer (one whose output still feeds a weight layer),
    not literally the last layer, because single layers carry intentional scale choices: an output
    layer initialized small (0.02, 0.01 or zero) has a huge relative gradient by design (against it
    Hugging Face bert-tiny's encoder measures 8e-5), and the last hidden layer often sits in a residual
    branch scaled down on purpose (ConvNeXt's layer scale: 2e-7 at init). Layers that read the same
    input (an attention's query/key/value, SwiGLU's gate/up) count as one, represented by the best-fed:
    at init the query and key get ~50x less gradient than the value because the softmax is near uniform
    (BERT-base: 4e-3 vs 4.5e-2), which is not depth. Embeddings, frozen and tied weights, and all-zero
    weights (no relative size) are left out. An exactly-zero gradient is NN406's.

    ## Why is this bad?
    The early layers barely move while the late ones train: the network learns like a shallow one on
    top of fixed random features. Typical causes: saturating sigmoid/tanh stacks, weights scaled too
    small (NN103), deep chains without normalization or residual connections.

    Calibration (earliest / best-fed later hidden layer, surrogate loss, each library's own init):
    healthy models measure 5e-3 to 7: small copies of torchvision ResNet 2.8 (6.5 with
    `zero_init_residual`), VGG 0.59, DenseNet 0.51, MobileNet/SE 0.027, ConvNeXt 1.4, a pre-LN GPT 0.1,
    a post-LN BERT 5e-3 (the lowest), Llama 0.9, a Kaiming ReLU MLP 0.5; Hugging Face BERT-base 0.22,
    bert-tiny 0.03, GPT-2 0.024, ViT 1.1, T5 0.9. Faulty: sigmoid MLPs at PyTorch's default init,
    6e-4 with 5 layers and 3e-8 with 10.

    ## Options
    - `min_ratio` (default 1e-3): report when the earliest layer's relative gradient is below this
      fraction of the best-fed later hidden layer's.

    ## Fix safety
    No automatic fix: the cause (initialization, activation, missing normalization) decides the remedy,
    and the other rules (NN103, NN202, NN401) carry those fixes.
    """

    code = "NN404"
    name = "vanishing-gradients"
    severity = "warning"
    summary = "the earliest weight layer's relative gradient is under 1e-3 of the later layers'"
    reads = frozenset({"gradients"})
    chart = GRADIENT_CHART
    options = {"min_ratio": 1e-3}

    examples = (
        Faulty("""
            layers = []
            for _ in range(10):
                layers += [nn.Linear(64, 64), nn.Sigmoid()]  # each sigmoid passes at most 1/4 of the gradient back
            model = nn.Sequential(*layers, nn.Linear(64, 10))
            batch = torch.randn(64, 64)
            """, module='0'),
        Healthy("""
            layers = []
            for _ in range(10):
                layers += [nn.Linear(64, 64), nn.ReLU()]
                nn.init.kaiming_normal_(layers[-2].weight, nonlinearity="relu")
            model = nn.Sequential(*layers, nn.Linear(64, 10))
            batch = torch.randn(64, 64)
            """, note="""
            or put a `nn.BatchNorm1d`/`nn.LayerNorm` after each weight layer, or add residual connections.
            """),
    )

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
