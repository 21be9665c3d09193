"""The causes of false alarms and crashes the real-model corpus found (benchmarks/TRIAGE.md, the
second sweep), each as a small plain-torch model that behaves as the library model does. Every one
must stay quiet (no warning or error) and leave the model exactly as it was found.
"""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn                                    # noqa: E402
import torch.nn.functional as F                         # noqa: E402

import nnlint                                           # noqa: E402


def loud(report):
    return [(d.code, d.module, d.message) for d in report.diagnostics if d.severity != "info"]


class StepSizeScan(nn.Module):
    """Mamba-2's step size: dt = softplus(x_dt + dt_bias), dt_bias the inverse softplus of a step
    drawn log-uniformly in [0.001, 0.1], so most heads start below softplus's flat edge (-2.94); dt
    scales the decay exp(dt * A) and the input of a sequential scan, it feeds no weight layer."""

    def __init__(self, d: int = 32, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(d, d + heads)
        dt = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), heads))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, heads + 1, dtype=torch.float)))
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):                                   # (batch, seq, d)
        h, dt = self.in_proj(x).split([x.shape[-1], self.heads], dim=-1)
        dt = F.softplus(dt + self.dt_bias)                  # (batch, seq, heads)
        decay = torch.exp(dt * -torch.exp(self.A_log))
        h = h.view(*h.shape[:2], self.heads, -1)
        state, outs = torch.zeros_like(h[:, 0]), []
        for t in range(x.shape[1]):
            state = decay[:, t, :, None] * state + dt[:, t, :, None] * h[:, t]
            outs.append(state.reshape(x.shape[0], -1))
        return self.out_proj(torch.stack(outs, 1))


class RescalesForInference(nn.Module):
    """Hugging Face RWKV: the first eval forward divides some weights in place by 2**k (and flips
    `layers_are_rescaled`), the next training forward multiplies them back."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(16, 32)
        self.out = nn.Linear(32, 4)
        self.layers_are_rescaled = False

    def forward(self, x):
        if self.training == self.layers_are_rescaled:
            with torch.no_grad():
                self.out.weight.mul_(2.0) if self.training else self.out.weight.div_(2.0)
            self.layers_are_rescaled = not self.training
        return self.out(torch.relu(self.inp(x)))


def small_gamma_bn_net(depth: int = 40) -> nn.Module:
    """Hugging Face MobileViT's init: BatchNorm weights ~ N(0, 0.02). In eval mode at init the running
    statistics (0, 1) do not renormalize, so 40 such layers take the signal to exactly 0; in training
    every BatchNorm renormalizes by the batch."""
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1)]
    for _ in range(depth):
        bn = nn.BatchNorm2d(8)
        nn.init.normal_(bn.weight, std=0.02)
        layers += [bn, nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(*layers)


def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: dict((k, v) for k, v in vars(m).items() if isinstance(v, (bool, int, float)))
             for n, m in model.named_modules()})


def _same(a, b):
    return a[1] == b[1] and a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])


def test_softplus_step_size_of_a_scan_is_not_dead_units():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = StepSizeScan()
        x = torch.randn(4, 8, 32)
    report = nnlint.check(model, x)
    dead = nnlint.check(model, x, select=["NN203"])
    assert loud(report) == [] and loud(dead) == []
    assert sum(1 for o in report.trace.ops if o.kind == "softplus" and o.phase == "train") == 1


def test_a_model_that_rescales_its_weights_for_inference_is_put_back():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = RescalesForInference()
        x = torch.randn(8, 16)
    for mode in (True, False):
        model.train(mode)
        before = _state(model)
        report = nnlint.check(model, x)                  # no "nnlint bug" RuntimeError
        assert _same(before, _state(model)), "weights or the rescaled flag left changed"
        assert any("writes its own parameters" in n for n in report.trace.notes)
        assert loud(report) == []


def test_eval_mode_collapse_of_small_gamma_batchnorm_is_no_ignored_input():
    model = small_gamma_bn_net()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        assert torch.count_nonzero(model(x) - model(x.flip(0))) == 0   # the eval output is input-independent
    model.train()
    report = nnlint.check(model, x, select=["NN702"])
    assert report.trace.probes["ignored_input"].outputs_constant
    assert loud(report) == []


class LayerScaledStage(nn.Module):
    """PoolFormer/MetaFormer: pre-norm blocks x + ls * mlp(norm(x)) with layer scale 1e-5, stages
    joined by a downsampling conv that feeds the next block's norm and its skip."""

    def __init__(self, channels: int, blocks: int = 2):
        super().__init__()
        self.norms = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(blocks))
        self.fc1 = nn.ModuleList(nn.Conv2d(channels, 4 * channels, 1) for _ in range(blocks))
        self.fc2 = nn.ModuleList(nn.Conv2d(4 * channels, channels, 1) for _ in range(blocks))
        self.ls = nn.ParameterList(nn.Parameter(torch.full((channels, 1, 1), 1e-5)) for _ in range(blocks))

    def forward(self, x):
        for norm, fc1, fc2, ls in zip(self.norms, self.fc1, self.fc2, self.ls):
            x = x + ls * fc2(F.gelu(fc1(norm(x))))
        return x


def layer_scaled_metaformer() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 7, stride=4, padding=2), LayerScaledStage(16),
                             nn.Conv2d(16, 32, 3, stride=2, padding=1), LayerScaledStage(32),
                             nn.Conv2d(32, 64, 3, stride=2, padding=1), LayerScaledStage(64),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(64), nn.Linear(64, 10))


def test_layer_scaled_branches_are_no_gradient_reference():
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    report = nnlint.check(layer_scaled_metaformer(), x, select=["NN404", "NN405"])
    assert loud(report) == []


class TalkingHeadAttention(nn.Module):
    """timm CaiT's attention: the heads' scores mixed by Linears before and after the softmax."""

    def __init__(self, d: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj_l, self.proj_w = nn.Linear(heads, heads), nn.Linear(heads, heads)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = q * (d // self.heads) ** -0.5 @ k.transpose(-2, -1)
        attn = self.proj_l(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).softmax(dim=-1)
        attn = self.proj_w(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


def test_talking_heads_softmax_is_attention_not_a_hidden_activation():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.LayerNorm(32), TalkingHeadAttention(), nn.LayerNorm(32), nn.Linear(32, 10))
        x = torch.randn(4, 8, 32)
    assert loud(nnlint.check(model, x, select=["NN204"])) == []


class ChannelLayerScaleBlock(nn.Module):
    """torchvision ConvNeXt's block: the branch scaled by `layer_scale`, a per-channel gain stored
    as a (C, 1, 1) tensor (3-D, so not a vector by its ndim) at 1e-6."""

    def __init__(self, c: int = 32):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.GroupNorm(1, c)
        self.pw1, self.pw2 = nn.Conv2d(c, 4 * c, 1), nn.Conv2d(4 * c, c, 1)
        self.layer_scale = nn.Parameter(torch.full((c, 1, 1), 1e-6))

    def forward(self, x):
        return x + self.layer_scale * self.pw2(F.gelu(self.pw1(self.norm(self.dwconv(x)))))


def test_a_channel_gain_stored_as_c11_is_no_weight_for_the_update_ratio():
    # AdamW's first step moves each value by lr: a gain at 1e-6 moves 1000x its norm by design
    # (ConvNeXt's recipe trains it at lr 4e-3); the ratio is a weight matrix's, not a per-channel gain's
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 32, 4, stride=4), ChannelLayerScaleBlock(), ChannelLayerScaleBlock(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        x = torch.randn(4, 3, 32, 32)
    report = nnlint.check(model, x, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), select=["NN804"])
    assert loud(report) == []
    assert report.trace.probes["update_ratio"]["params"]      # measured, and the weights judged


class TinyViT(nn.Module):
    """timm's ViT at init: a cls_token at std 1e-6, and (BEiT) a head scaled by head_init_scale 1e-3."""

    def __init__(self, d: int = 32, head_scale: float = 1e-3):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 8, stride=8)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 1e-6)
        self.block = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Linear(d, 10)
        with torch.no_grad():
            self.head.weight.mul_(head_scale)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.block(x)
        return self.head(x[:, 0])


@pytest.mark.parametrize("lr, head_scale, loud_expected", [(1e-3, 1e-3, False), (10.0, 1.0, True)])
def test_weights_that_start_at_about_zero_have_no_update_ratio_to_judge(lr, head_scale, loud_expected):
    torch.manual_seed(0)
    model = TinyViT(head_scale=head_scale)
    report = nnlint.check(model, torch.randn(4, 3, 32, 32), optimizer=torch.optim.AdamW(model.parameters(), lr=lr),
                          select=["NN804"])
    flagged = {d.evidence.get("param") for d in report.diagnostics if d.severity != "info"}
    assert "cls_token" not in flagged
    assert ("head.weight" in flagged) == loud_expected      # the near-zero head is quiet, a real one is not
    assert bool(flagged) == loud_expected                   # lr 10 still rewrites the real weights every step


def test_a_squeeze_layer_whose_expand_layer_feeds_the_sigmoid_gate_does_not_explode():
    # torchvision EfficientNet-B6's features.3.0 SE: Conv2d(240, 10) at Kaiming fan_out gains 10.4x on
    # the pooled vector's RMS; the expand layer's sigmoid bounds the gate in [0, 1] (here 240 -> 2: 18x)
    from functools import partial
    from zoo.case import images, seeded
    from zoo.convnets import (Conv2dNormActivation, InvertedResidual, MobileNet, _mbconv_se, _uniform_by_fan_out,
                              init_mobile_net)

    class SEStage(MobileNet):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(Conv2dNormActivation(3, 40, 3, stride=2, activation_layer=nn.SiLU),
                                          InvertedResidual(40, 240, 72, 5, 2, nn.SiLU, partial(_mbconv_se, squeeze=2)))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(72, 10))
            init_mobile_net(self, linear=_uniform_by_fan_out)

    with seeded(1):
        model = SEStage()
    assert loud(nnlint.check(model, images(4, 64, seed=1), select=["NN402"])) == []


class _DenseHead(torch.nn.Module):
    """RetinaNet's classification head in miniature: class logits biased to the focal-loss prior
    (p = 0.01), the sigmoid applied inside the loss the model computes in training mode. `hidden`
    puts the same offset sigmoid before another layer, where a unit held there learns nothing."""

    def __init__(self, hidden: bool):
        super().__init__()
        self.hidden = hidden
        self.trunk = torch.nn.Linear(16, 32)
        self.cls_logits = torch.nn.Linear(32, 8)
        torch.nn.init.normal_(self.cls_logits.weight, std=0.01)
        torch.nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))
        self.after = torch.nn.Linear(8, 8)

    def forward(self, x, targets):
        logits = self.cls_logits(torch.relu(self.trunk(x)))
        if self.hidden:
            logits = self.after(torch.sigmoid(logits))
            return torch.nn.functional.mse_loss(logits, targets)
        p = torch.sigmoid(logits)
        ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        return (ce * (1 - p_t) ** 2).mean()


def test_an_output_sigmoid_at_the_focal_loss_prior_is_no_saturation_but_a_hidden_one_is():
    import nnlint

    torch.manual_seed(0)
    batch = (torch.randn(32, 16), (torch.rand(32, 8) < 0.01).float())
    output = nnlint.check(_DenseHead(hidden=False), batch, select=["NN202"])
    assert not output.diagnostics, output.diagnostics
    hidden = nnlint.check(_DenseHead(hidden=True), batch, select=["NN202"])
    assert len(hidden.diagnostics) == 1 and "sigmoid" in hidden.diagnostics[0].message
    assert hidden.diagnostics[0].evidence["saturated_fraction"] > 0.99


class _LayerDropEncoder(torch.nn.Module):
    """Hugging Face's LayerDrop (WavLM, Wav2Vec2): in training each layer is skipped when a random draw
    falls under `layerdrop`; here 1.0 for the second layer, so it is always skipped in training."""

    def __init__(self, layerdrop: float):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)])
        self.layerdrop = layerdrop
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            if self.training and i == 1 and torch.rand([]) < self.layerdrop:
                continue
            x = torch.relu(layer(x))
        return self.head(x)


def test_a_layer_layerdrop_skipped_by_chance_is_not_an_unused_module():
    import nnlint

    torch.manual_seed(0)
    skipped = nnlint.check(_LayerDropEncoder(layerdrop=1.0), torch.randn(16, 8), select=["NN705"])
    assert not skipped.diagnostics, skipped.diagnostics

    class NeverCalled(_LayerDropEncoder):
        def __init__(self):
            super().__init__(layerdrop=0.0)
            self.spare = torch.nn.Linear(8, 8)       # built and forgotten: still reported
    unused = nnlint.check(NeverCalled(), torch.randn(16, 8), select=["NN705"])
    assert [d.module for d in unused.diagnostics] == ["spare"]


def test_an_expert_its_router_sent_no_token_is_not_an_unused_module():
    """Switch Transformers' top-1 routing over a few tokens left one expert without a token in a corpus
    sweep: which experts a batch reaches is data. A layer a loop forgets, beside no router, still counts."""
    import sys
    from pathlib import Path

    import nnlint
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from zoo.moe import MixtralSparseMoeBlock

    torch.manual_seed(0)
    moe = MixtralSparseMoeBlock(16, 32, experts=4, top_k=1)
    with torch.no_grad():
        moe.gate.weight[3] = 0.0
        moe.gate.weight[3, 0] = -1e3          # the router never picks expert 3 for these inputs
    x = torch.randn(2, 8, 16)
    x[..., 0] = x[..., 0].abs() + 1.0
    routed = nnlint.check(moe, x, select=["NN705", "NN406"])
    assert routed.diagnostics == [], routed.diagnostics

    class Forgotten(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(3))

        def forward(self, x):
            for layer in self.layers[:2]:        # the last layer forgotten
                x = torch.relu(layer(x))
            return x
    unused = nnlint.check(Forgotten(), torch.randn(8, 16), select=["NN705"])
    assert [d.module for d in unused.diagnostics] == ["layers.2"]


class MatchedDetector(nn.Module):
    """SSD's loss in miniature (benchmarks/TRIAGE.md, Q): two feature levels each with a head, their
    anchors concatenated, and a loss that reads only the anchors a matcher picked (`logits[mask]`).
    On this batch the matcher picks none of the coarse level's anchors: its head's gradient is exactly
    zero, and another batch picks them."""

    def __init__(self, dead_coarse: bool = False):
        super().__init__()
        self.fine, self.coarse = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=4, padding=1)
        self.fine_head, self.coarse_head = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)
        if dead_coarse:              # a real fault: every unit of the coarse level's ReLU is off
            nn.init.constant_(self.coarse.bias, -100.0)

    def forward(self, x, picked):
        f = torch.relu(self.fine(x))
        c = torch.relu(self.coarse(f))
        anchors = torch.cat([self.fine_head(f).flatten(2), self.coarse_head(c).flatten(2)], dim=2)
        scores = anchors.permute(0, 2, 1).reshape(-1, 4)
        return F.cross_entropy(scores[picked], torch.zeros(int(picked.sum()), dtype=torch.long))


def _detector_batch():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    picked = torch.zeros(2 * (256 + 16), dtype=torch.bool)
    picked[:40] = True               # fine-level anchors of the first image only
    return x, picked


def test_a_head_a_matched_loss_did_not_select_on_this_batch_is_an_info_not_a_dead_path():
    torch.manual_seed(0)
    report = nnlint.check(MatchedDetector(), _detector_batch(), select=["NN406"])
    found = [d for d in report.diagnostics if d.code == "NN406"]
    assert found and all(d.severity == "info" and "picked none of its outputs" in d.message for d in found)
    assert {d.module for d in found} >= {"coarse_head"}
    assert not loud(report)


def test_a_dead_relu_before_a_matched_loss_is_still_a_warning():
    torch.manual_seed(0)
    report = nnlint.check(MatchedDetector(dead_coarse=True), _detector_batch(), select=["NN406"])
    warned = {d.module for d in report.diagnostics if d.code == "NN406" and d.severity == "warning"}
    assert "coarse_head" in warned or "coarse" in warned


class ScaledStdConv2d(nn.Conv2d):
    """timm's ScaledStdConv2d (NF-Nets, NF-RegNet): the weight is standardized in forward with
    F.batch_norm and scaled by a per-channel gain stored as (C, 1, 1, 1), so the conv reads a computed
    tensor, never the parameter (benchmarks/TRIAGE.md, X4)."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, padding=k // 2)
        self.gain = nn.Parameter(torch.ones(cout, 1, 1, 1))
        self.scale = (cin * k * k) ** -0.5

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         weight=(self.gain * self.scale).view(-1), training=True, momentum=0.0, eps=1e-6)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, padding=self.padding)


def nf_net(fault=None):
    torch.manual_seed(0)
    model = nn.Sequential(ScaledStdConv2d(3, 16, 3), nn.SiLU(), ScaledStdConv2d(16, 16, 3), nn.SiLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    with torch.no_grad():
        if fault == "zero":
            model[0].weight.zero_()
        elif fault == "constant":
            model[0].weight.fill_(0.3)
    return model


@pytest.mark.parametrize("fault, code", [("zero", "NN101"), ("constant", "NN102")])
def test_a_standardized_weight_is_judged_on_the_parameter_it_is_computed_from(fault, code):
    report = nnlint.check(nf_net(fault), torch.randn(8, 3, 16, 16), select=["NN101", "NN102"])
    found = [(d.code, d.module, d.evidence["param"]) for d in report.diagnostics]
    assert found == [(code, "0", "0.weight")]     # not the gain, not the healthy second conv


def test_a_healthy_standardized_conv_and_its_unit_gains_are_quiet():
    report = nnlint.check(nf_net(), torch.randn(8, 3, 16, 16), select=["NN101", "NN102"])
    assert report.diagnostics == []


class MaxViTStage(nn.Module):
    """torchvision MaxViT's stem and first MBConv (benchmarks/TRIAGE.md, J): every conv at std 0.02,
    a stem conv with no norm after it, and a downsampling block whose shortcut (avgpool + 1x1 conv) is
    added to a pre-normalized branch, then a pre-normalized block with an identity skip. The normalized
    branch sets the first block's output scale."""

    def __init__(self, branch_norm: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.GELU(),
                                  nn.Conv2d(32, 32, 3, padding=1))
        self.proj = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(32, 64, 1))
        norm = nn.BatchNorm2d if branch_norm else (lambda c: nn.Identity())
        self.branch = nn.Sequential(norm(32), nn.Conv2d(32, 128, 1), nn.GELU(),
                                    nn.Conv2d(128, 128, 3, stride=2, padding=1), norm(128), nn.GELU(),
                                    nn.Conv2d(128, 64, 1))
        self.block2 = nn.Sequential(nn.BatchNorm2d(64), nn.Conv2d(64, 128, 1), nn.GELU(), nn.Conv2d(128, 64, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stem(x)
        x = self.proj(x) + self.branch(x)
        return self.head(x + self.block2(x))


def test_a_small_shortcut_beside_a_normalized_branch_does_not_shrink_the_stream():
    torch.manual_seed(0)
    model = MaxViTStage()
    report = nnlint.check(model, torch.randn(8, 3, 32, 32), select=["NN103", "NN401"])
    assert loud(report) == []


def test_a_small_shortcut_beside_an_unnormalized_branch_still_compounds_with_the_stem():
    torch.manual_seed(0)
    report = nnlint.check(MaxViTStage(branch_norm=False), torch.randn(8, 3, 32, 32), select=["NN103"])
    assert {d.module for d in report.diagnostics if d.code == "NN103"} >= {"stem.3", "proj.1"}


class RefinementLoop(nn.Module):
    """RAFT's update block in miniature (benchmarks/TRIAGE.md, R): flow starts at zero and one motion
    encoder (conv + ReLU modules) runs once per iteration. On the first call it reads the all-zero flow,
    so its output is its bias and every channel with a negative bias is silent; on the later calls the
    flow is not zero."""

    def __init__(self, bias: float = 0.0):
        super().__init__()
        self.context = nn.Conv2d(3, 2, 3, padding=1)
        self.encoder = nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.ReLU())   # reads the flow alone
        self.flow_head = nn.Conv2d(16, 2, 3, padding=1)
        with torch.no_grad():
            self.encoder[0].bias.copy_(torch.linspace(-0.3, 0.3, 16) + bias)

    def forward(self, x):
        ctx = self.context(x)
        flow = torch.zeros(x.shape[0], 2, *x.shape[2:])
        for _ in range(4):
            flow = flow + self.flow_head(self.encoder(flow)) + ctx   # the update also reads the images
        return flow


def test_units_silent_only_on_a_loop_s_first_call_are_not_dead():
    torch.manual_seed(0)
    model = RefinementLoop()
    report = nnlint.check(model, torch.randn(4, 3, 16, 16), select=["NN203"])
    assert loud(report) == []


def test_units_silent_at_every_call_of_a_loop_are_dead_once_over_all_calls():
    torch.manual_seed(0)
    model = RefinementLoop(bias=-100.0)
    report = nnlint.check(model, torch.randn(4, 3, 16, 16), select=["NN203"])
    found = [d for d in report.diagnostics if d.code == "NN203"]
    assert len(found) == 1 and found[0].module == "encoder.1" and found[0].evidence["calls"] == 4
    assert found[0].evidence["dead_fraction"] == 1.0


class ConvGRURefiner(nn.Module):
    """RAFT-small's update block in miniature (benchmarks/TRIAGE.md, T): the hidden state starts as
    tanh of an un-normalized context encoder (saturated), and a hand-written ConvGRU updates it."""

    def __init__(self, gated: bool = True):
        super().__init__()
        self.gated = gated
        self.context = nn.Conv2d(3, 8, 3, padding=1)
        nn.init.normal_(self.context.weight, std=1.0)             # its tanh saturates
        self.convz, self.convq = nn.Conv2d(16, 8, 3, padding=1), nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x):
        h = torch.tanh(self.context(x))
        inp = torch.relu(self.context(x))
        for _ in range(2):
            hx = torch.cat([h, inp], dim=1)
            q = torch.tanh(self.convq(hx))
            if self.gated:
                z = torch.sigmoid(self.convz(hx))
                h = (1 - z) * h + z * q
            else:
                h = q + self.convz(hx)
        return self.head(h)


def test_a_hand_written_gru_state_is_not_a_hidden_tanh_layer():
    torch.manual_seed(0)
    report = nnlint.check(ConvGRURefiner(), torch.randn(4, 3, 16, 16), select=["NN201", "NN202"])
    assert loud(report) == []


def test_a_saturated_tanh_no_gate_multiplies_is_still_reported():
    torch.manual_seed(0)
    report = nnlint.check(ConvGRURefiner(gated=False), torch.randn(4, 3, 16, 16), select=["NN201", "NN202"])
    assert {d.code for d in report.diagnostics if d.severity != "info"} >= {"NN202"}


class WrittenOutMLP(nn.Module):
    """GPT-2's MLP as Hugging Face writes it (benchmarks/TRIAGE.md, X3): NewGELUActivation is the
    formula `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`, whose tanh multiplies `0.5 * x`,
    computed beside it; `swish=True` writes SiLU out as `x * sigmoid(x)`."""

    def __init__(self, bias: float = 0.0, weight_std: float = 0.02, swish: bool = False):
        super().__init__()
        self.swish = swish
        self.c_fc, self.c_proj = nn.Linear(64, 256), nn.Linear(256, 64)
        nn.init.normal_(self.c_fc.weight, std=weight_std)
        nn.init.constant_(self.c_fc.bias, bias)
        nn.init.normal_(self.c_proj.weight, std=0.02)

    def forward(self, x):
        h = self.c_fc(x)
        if self.swish:
            h = h * torch.sigmoid(h)
        else:
            h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return self.c_proj(h)


def _tokens():
    return torch.randn(4, 32, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("swish", [False, True], ids=["gelu-tanh", "swish"])
def test_a_written_out_activation_shut_by_a_negative_bias_is_dead_units_not_saturation(swish):
    torch.manual_seed(0)
    report = nnlint.check(WrittenOutMLP(bias=-10.0, swish=swish), _tokens(), select=["NN201", "NN202", "NN203"])
    [d] = [d for d in report.diagnostics if d.severity != "info"]
    assert (d.code, d.module, d.severity) == ("NN203", "", "error")
    assert d.evidence["dead_fraction"] == 1.0 and d.evidence["feeding_layer"] == "c_fc"
    assert ("GELU" if not swish else "SiLU") in d.message
    assert d.fix.params.spec.family == "Kaiming" and d.fix.params.bias == 0.01


@pytest.mark.parametrize("swish", [False, True], ids=["gelu-tanh", "swish"])
def test_a_written_out_activation_at_large_inputs_is_a_relu_not_a_saturated_tanh(swish):
    """Pre-activations at std 8: the gate is flat on both sides, so the unit is ReLU-like, passing x
    above and 0 below, each unit on about half the positions: no saturation, no dead units."""
    torch.manual_seed(0)
    report = nnlint.check(WrittenOutMLP(weight_std=1.0, swish=swish), _tokens(), select=["NN201", "NN202", "NN203"])
    assert loud(report) == []
    assert loud(nnlint.check(WrittenOutMLP(swish=swish), _tokens(), select=["NN201", "NN202", "NN203"])) == []


def test_the_zero_gradient_behind_a_shut_written_out_gelu_names_it_as_the_cause():
    torch.manual_seed(0)
    report = nnlint.check(WrittenOutMLP(bias=-10.0), _tokens(), select=["NN406"])
    by_module = {d.module: d.message for d in report.diagnostics if d.code == "NN406"}
    assert "c_fc" in by_module and "so no gradient passes it back (see NN203)" in by_module["c_fc"]
