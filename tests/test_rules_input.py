"""NN301/NN302 against the normalization that follows the first layer: which of an input's statistics
the model divides out itself (an InstanceNorm: offset and scale; a LayerNorm/GroupNorm: the overall
scale only; a BatchNorm: neither, its running statistics at eval do not absorb it)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import nnlint


class ChannelsLastLayerNorm(nn.Module):
    """ConvNeXt's stem norm: a LayerNorm over channels, run on a channels-last view."""

    def __init__(self, c):
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def stem_net(norm):
    torch.manual_seed(0)
    stem = nn.Conv2d(3, 16, 4, stride=4)
    nn.init.zeros_(stem.bias)            # timm's ConvNeXt stem: bias zero at init
    return nn.Sequential(stem, norm(16), nn.Conv2d(16, 16, 3, padding=1), nn.GELU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def codes(model, batch):
    torch.manual_seed(0)
    return {d.code: d for d in nnlint.check(model, batch, select=["NN301", "NN302"]).diagnostics}


def images(scale=1.0, offset=0.0):
    torch.manual_seed(1)
    return torch.randn(8, 3, 32, 32) * scale + offset


PER_SAMPLE = {
    "layernorm": ChannelsLastLayerNorm,
    "groupnorm": lambda c: nn.GroupNorm(1, c),      # PoolFormer's
}


@pytest.mark.parametrize("norm", PER_SAMPLE)
def test_a_stem_into_a_per_sample_norm_divides_out_the_input_scale(norm):
    model = stem_net(PER_SAMPLE[norm])
    with torch.no_grad():
        moved = (model(images(60.0)) - model(images(1.0))).norm() / model(images(1.0)).norm()
    assert moved < 1e-4                          # the premise: the output does not see the scale
    assert "NN302" not in codes(model, images(60.0))


@pytest.mark.parametrize("norm", PER_SAMPLE)
def test_a_per_sample_norm_does_not_absorb_the_offset(norm):
    found = codes(stem_net(PER_SAMPLE[norm]), images(1.0, offset=3.0))
    assert "NN301" in found and found["NN301"].evidence["input"] == "batch"


def test_a_batchnorm_stem_still_gets_the_unscaled_input():
    found = codes(stem_net(nn.BatchNorm2d), images(60.0))
    assert "NN302" in found and found["NN302"].evidence["median_std"] == pytest.approx(60, rel=0.05)


def test_an_instancenorm_stem_absorbs_offset_and_scale():
    found = codes(stem_net(nn.InstanceNorm2d), images(60.0, offset=100.0))
    assert "NN301" not in found and "NN302" not in found


def test_a_scale_so_small_the_norm_eps_dominates_is_still_reported():
    found = codes(stem_net(PER_SAMPLE["groupnorm"]), images(1e-3))
    assert found["NN302"].evidence["median_std"] == pytest.approx(1e-3, rel=0.05)


def test_features_on_different_scales_are_still_reported_before_a_layernorm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 2))
    batch = torch.randn(64, 8) * torch.tensor([1000.0, 1, 1, 1, 1, 1, 1, 1])
    found = codes(model, batch)
    assert found["NN302"].evidence["scale_ratio"] > 500


class MixerStem(nn.Module):
    """MLP-Mixer's patch embedding: its output feeds the first block's LayerNorm *and* the residual
    stream, which carries the input's scale on past the norm."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.norm = nn.LayerNorm(16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = x + self.mix(self.norm(x))
        return self.head(x.mean(1))


def test_a_stem_that_also_feeds_the_residual_stream_keeps_the_input_scale():
    assert "NN302" in codes(MixerStem(), images(60.0))
