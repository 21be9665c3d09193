"""NN701 batch-mixing, NN702 ignored-input, NN703 causal-leak: the dependence probes (nnlint.probes).

Each rule fires on the planted fault, on the module where the dependence starts, with the measured
change; stays quiet on the healthy twin; the probes leave the model as they found it, cost a few
small passes, and say why they did not look when they cannot. (The healthy zoo and tiny Hugging Face
models: tests/test_rules_dataflow_healthy.py.)
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from nnlint.config import Config

CODES = ["NN701", "NN702", "NN703"]


def check(model, batch, codes=CODES, **kwargs):
    torch.manual_seed(0)
    return nnlint.check(model, batch, select=codes, **kwargs)


def found(report, code):
    return [d for d in report.diagnostics if d.code == code]


def seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


def sequences(n=8, t=12, d=8):
    return torch.randn(n, t, d, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------
# NN701 batch-mixing


class LastStep(nn.Module):
    """A sequence classifier around a sequence-first RNN; `layout` is how (batch, time, features)
    reaches it: "transpose" (right), "view" (mixes samples), "none" (read as (time, batch, ...))."""

    def __init__(self, layout="transpose", rnn=nn.LSTM):
        super().__init__()
        self.layout = layout
        self.rnn = rnn(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        b, t, f = x.shape
        if self.layout == "transpose":
            x = x.transpose(0, 1)
        elif self.layout == "view":
            x = x.view(t, b, f)
        out, _ = self.rnn(x)
        return self.head(out[-1] if self.layout != "none" else out[:, -1])


def test_nn701_view_for_transpose_is_located_at_the_view_with_its_line():
    report = check(seeded(lambda: LastStep("view")), sequences())
    (d,) = found(report, "NN701")
    assert d.module == "" and d.severity == "error"
    assert "view()" in d.message and "transpose()/permute()" in d.message
    assert d.location is not None and d.location.file == __file__
    assert 1e-4 < d.evidence["change"] < 1 and d.evidence["origin"] == "view"
    assert found(check(seeded(lambda: LastStep("transpose")), sequences()), "NN701") == []


def test_nn701_a_sequence_first_gru_fed_batch_first_names_the_gru_and_fixes_it():
    model = seeded(lambda: LastStep("none", nn.GRU))
    (d,) = found(check(model, sequences()), "NN701")
    assert d.module == "rnn" and "batch_first=True" in d.message and d.evidence["change"] > 0.05
    assert d.fix is not None and d.fix.kind == "batch_first" and d.fix.target == "rnn" and not d.fix.safe
    result = nnlint.fix(model, sequences(), unsafe=True, select=["NN701"])
    assert model.rnn.batch_first is True
    assert found(result.report, "NN701") == []


@pytest.mark.parametrize("layer, module", [
    (lambda: nn.MultiheadAttention(16, 4), "attn"),
    (lambda: nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0), "attn"),
])
def test_nn701_attention_and_transformer_layers_built_sequence_first(layer, module):
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = layer()

        def forward(self, x):
            return self.attn(x, x, x)[0] if isinstance(self.attn, nn.MultiheadAttention) else self.attn(x)

    (d,) = found(check(seeded(Encoder), torch.randn(4, 6, 16)), "NN701")
    assert d.module == module or d.module.startswith(module + ".")
    assert d.fix is not None and d.fix.target == "attn"


@pytest.mark.parametrize("make, module, words", [
    (lambda: nn.Sequential(nn.Linear(32, 10), nn.Softmax(dim=0)), "1", "dim=0"),
    (lambda: nn.Sequential(nn.Linear(32, 10), nn.Softmax(dim=1)), None, ""),
])
def test_nn701_softmax_over_the_batch(make, module, words):
    diags = found(check(seeded(make), torch.randn(16, 32)), "NN701")
    if module is None:
        assert diags == []
        return
    (d,) = diags
    assert d.module == module and words in d.message and "dim=1" in d.message


class Normalized(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.fc = nn.Linear(32, 16)

    def forward(self, x):
        return F.normalize(self.fc(x), dim=self.dim)


def test_nn701_normalize_and_sum_over_dim_0_and_their_twins():
    (d,) = found(check(seeded(lambda: Normalized(0)), torch.randn(16, 32)), "NN701")
    assert d.module == "" and d.evidence["origin"] == "normalize"
    assert found(check(seeded(lambda: Normalized(1)), torch.randn(16, 32)), "NN701") == []

    class BatchSum(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 10)

        def forward(self, x):
            return self.fc(x.sum(dim=0)).repeat(x.shape[0], 1)

    (d,) = found(check(seeded(BatchSum), torch.randn(16, 10)), "NN701")
    assert d.evidence["origin"] == "sum" and "reduces over the batch" in d.message


def test_nn701_batchnorm_in_eval_does_not_mix_and_one_without_running_stats_is_nn503s():
    def net(track):
        return nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16, track_running_stats=track), nn.ReLU(), nn.Linear(16, 4))

    assert found(check(seeded(lambda: net(True)), torch.randn(16, 16)), "NN701") == []
    report = check(seeded(lambda: net(False)), torch.randn(16, 16), codes=["NN503", "NN701"])
    probe = report.trace.probes["batch_mixing"]
    assert probe.mixes and probe.origin.module == "1"        # it does mix, in eval mode ...
    assert [d.code for d in report.diagnostics] == ["NN503"]  # ... and NN503 says why, once


def test_nn701_pairwise_outputs_are_exempt():
    class Distances(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(8, 4)

        def forward(self, x):
            z = self.embed(x)
            return torch.cdist(z, z)                    # (batch, batch): every row sees every sample

    report = check(seeded(Distances), torch.randn(6, 8))
    assert found(report, "NN701") == []
    assert report.trace.probes["batch_mixing"].pairwise == ["output"]


def test_nn701_integer_inputs_are_varied_by_swapping_in_another_samples_ids():
    class BagOfBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, ids):
            h = self.emb(ids).mean(dim=1)
            return self.head(h - h.mean(dim=0))         # centred over the batch: mixes

    ids = torch.randint(0, 50, (8, 10), generator=torch.Generator().manual_seed(2))
    (d,) = found(check(seeded(BagOfBatch), ids), "NN701")
    assert "sample 0's batch" in d.message and d.evidence["origin"] == "mean"


def test_nn701_a_tiny_dependence_is_measured_again_in_float64_and_the_tolerance_decides():
    class Leaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            return self.fc(x) + 3e-6 * x.sum(dim=0)

    report = check(seeded(Leaky), torch.randn(8, 16))
    probe = report.trace.probes["batch_mixing"]
    assert 1e-6 < probe.change < 1e-4 and probe.float64_change is not None
    assert math.isclose(probe.float64_change, probe.change, rel_tol=0.1)   # a real dependence stays
    assert found(report, "NN701") == []                 # under the default 1e-5
    strict = Config(rule_options={"NN701": {"relative_tolerance": 1e-6}})
    assert len(found(check(seeded(Leaky), torch.randn(8, 16), config=strict), "NN701")) == 1


def test_nn701_a_batch_of_one_is_not_tested():
    report = check(seeded(lambda: LastStep("view")), sequences(n=1))
    assert found(report, "NN701") == []
    assert report.trace.probes["batch_mixing"].reason == "the batch has one sample"


def test_nn701_a_model_with_a_fixed_batch_size_is_probed_on_the_whole_batch():
    class FixedBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4 * 8, 4 * 3)

        def forward(self, x):
            return self.fc(x.reshape(1, 4 * 8)).view(4, 3)   # only runs on 4 samples: mixes them all

    report = check(seeded(FixedBatch), torch.randn(4, 8))
    probe = report.trace.probes["batch_mixing"]
    assert probe.samples == 4
    assert len(found(report, "NN701")) == 1


def test_nn701_long_sequences_are_cut_for_the_first_look_and_the_finding_measured_at_full_length():
    class Mixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 8)
            self.head = nn.Linear(8, 4)

        def forward(self, ids):
            h = self.emb(ids)                           # (batch, 128, 8)
            return self.head(h.view(h.shape[1], h.shape[0], -1).mean(0))   # view for transpose

    ids = torch.randint(0, 100, (4, 128), generator=torch.Generator().manual_seed(3))
    report = check(seeded(Mixer), ids)
    (d,) = found(report, "NN701")
    assert d.evidence["origin"] == "view"


class FixedSizeViT(nn.Module):
    """A Hugging Face-style vision transformer: patch tokens plus learned positions for 96x96 images;
    another size raises unless the call asks to interpolate the positions. `mixes`: a batch-mean token
    added to every sample (the fault)."""

    def __init__(self, mixes=False):
        super().__init__()
        self.mixes = mixes
        self.patch = nn.Conv2d(3, 16, 16, stride=16)
        self.pos = nn.Parameter(torch.randn(1, 16, 6, 6) * 0.02)
        self.head = nn.Linear(16, 4)
        self.sides = []                                       # the image sides each call saw

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        self.sides.append((pixel_values.shape[-1], interpolate_pos_encoding))
        h = self.patch(pixel_values)
        if h.shape[-2:] != self.pos.shape[-2:]:
            if not interpolate_pos_encoding:
                raise ValueError(f"Input image size ({pixel_values.shape[-1]}) doesn't match model (96).")
            h = h + F.interpolate(self.pos, size=h.shape[-2:], mode="bicubic", align_corners=False)
        else:
            h = h + self.pos
        tokens = h.flatten(2).mean(-1)
        if self.mixes:
            tokens = tokens + tokens.mean(0, keepdim=True)
        return self.head(tokens)


@pytest.mark.parametrize("mixes", [False, True])
def test_nn701_a_vision_transformer_of_a_fixed_size_is_probed_on_the_crop_with_interpolated_positions(mixes):
    model = seeded(lambda: FixedSizeViT(mixes))
    images = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    report = check(model, images)
    probe_calls = [s for s in model.sides[1:]]                # the first call is the traced training step
    assert model.sides[0] == (96, False)
    # the first look: 64-pixel crops with the positions interpolated, not two passes at the model's size
    assert (64, True) in probe_calls and all(s == (64, True) or s == (96, False) for s in probe_calls)
    assert not any("did not run" in n for n in report.trace.notes)
    if not mixes:
        assert found(report, "NN701") == [] and (96, False) not in probe_calls[1:]
    else:
        (d,) = found(report, "NN701")                        # measured again at 96 pixels, as the user calls it
        assert (96, False) in probe_calls and d.evidence["origin"] == "mean"


# ---------------------------------------------------------------------------------------------
# NN702 ignored-input


class TwoTower(nn.Module):
    def __init__(self, bug):
        super().__init__()
        self.bug = bug
        self.user = nn.Linear(16, 8)
        self.item = nn.Linear(16, 8)

    def forward(self, x):
        u, i = x[:, :16], x[:, 16:]
        return (self.user(u) * self.item(u if self.bug else i)).sum(-1)


def test_nn702_a_slice_of_features_nobody_reads():
    (d,) = found(check(seeded(lambda: TwoTower(True)), torch.randn(16, 32)), "NN702")
    assert d.module == "" and "features 16-31 of batch (16 of 32" in d.message
    assert d.evidence["features"] == [[16, 31]]
    assert found(check(seeded(lambda: TwoTower(False)), torch.randn(16, 32)), "NN702") == []


class Masked(nn.Module):
    def __init__(self, use_mask):
        super().__init__()
        self.use_mask = use_mask
        self.emb = nn.Embedding(100, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        if not self.use_mask:
            return self.head(h.mean(1))
        m = attention_mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


def padded(n=8, t=12):
    ids = torch.randint(1, 100, (n, t), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[::2, t // 2:] = 0
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask}


def test_nn702_an_attention_mask_the_forward_never_reads():
    (d,) = found(check(seeded(lambda: Masked(False)), padded()), "NN702")
    assert "batch['attention_mask'] has no influence" in d.message and d.evidence["how"] == "swapped"
    assert found(check(seeded(lambda: Masked(True)), padded()), "NN702") == []


@pytest.mark.parametrize("masked", [slice(40, 64), slice(0, 24), slice(20, 30)], ids=["right", "left", "middle"])
def test_nn702_a_long_sequence_masked_past_the_probes_cut_is_still_tested(masked):
    """The probes look first at 8 of the 64 positions (their first and last 4): right or left padding
    stays in view, and a mask that differs only in between is swapped at the batch's own size."""
    ids = torch.randint(1, 100, (4, 64), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, masked] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    (d,) = found(check(seeded(lambda: Masked(False)), batch), "NN702")
    assert "batch['attention_mask'] has no influence" in d.message
    assert found(check(seeded(lambda: Masked(True)), batch), "NN702") == []


def test_nn702_an_input_that_is_the_same_in_every_sample_cannot_be_tested():
    batch = padded()
    batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
    report = check(seeded(lambda: Masked(False)), batch)
    assert found(report, "NN702") == []
    assert report.trace.probes["ignored_input"].untested == ["batch['attention_mask']"]


def test_nn702_a_second_input_forgotten_and_an_output_that_ignores_everything():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(32, 10)

        def forward(self, x, context):
            return self.fc(x)

    (d,) = found(check(seeded(TwoInputs), (torch.randn(16, 32), torch.randn(16, 8))), "NN702")
    assert d.message.startswith("batch[1] has no influence")

    class Zeroed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 10)

        def forward(self, x):
            return self.fc(x) * 0

    (d,) = found(check(seeded(Zeroed), torch.randn(16, 10)), "NN702")
    assert d.evidence["outputs_constant"] and "NN406" in d.message


def test_nn702_a_detached_input_still_flows_forward_and_is_not_called_ignored():
    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(16, 16)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            return self.head(self.backbone(x).detach())  # the gradient is cut, the values are not

    assert found(check(seeded(Detached), torch.randn(8, 16)), "NN702") == []


def test_nn702_non_finite_outputs_prove_no_dependence_either_way():
    class Log(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.log(x))               # NaN wherever x < 0 (NN002's)

    report = check(seeded(Log), torch.randn(16, 8))
    assert found(report, "NN701") == [] and found(report, "NN702") == []


def test_nn702_an_input_cut_off_by_an_all_zero_layer_is_nn101s():
    model = seeded(lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)))
    nn.init.zeros_(model[2].weight)
    report = check(model, torch.randn(16, 16), codes=["NN101", "NN702"])
    assert report.trace.probes["ignored_input"].outputs_constant   # measured: the output is constant ...
    assert [d.code for d in report.diagnostics] == ["NN101"]        # ... because of the zero layer


def test_nn702_features_that_are_zero_in_every_sample_are_left_out():
    class FirstHalf(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x[:, :8])

    x = torch.randn(16, 16)
    x[:, 8:] = 0                                        # padding columns: nothing to read
    assert found(check(seeded(FirstHalf), x), "NN702") == []


def test_nn702_a_model_that_reads_only_past_the_cut_is_measured_at_full_length():
    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, ids):
            return self.head(self.emb(ids[:, 64:]).mean(1))   # positions 64.. only

    ids = torch.randint(0, 100, (4, 128), generator=torch.Generator().manual_seed(5))
    assert found(check(seeded(Tail), ids), "NN702") == []


class Stem(nn.Module):
    """A small image classifier: a stem conv over every channel, or a depthwise one that keeps the
    channels apart (and may drop one); `discard` computes the stem and throws it away."""

    def __init__(self, depthwise=False, dropped=None, discard=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 3 if depthwise else 8, 3, padding=1, groups=3 if depthwise else 1)
        self.head = nn.Linear(3 if depthwise else 8, 4)
        self.dropped, self.discard = dropped, discard

    def forward(self, x):
        h = torch.relu(self.stem(x)).mean((2, 3))
        if self.dropped is not None:
            h = h.clone()
            h[:, self.dropped] = 0
        return self.head(h * 0 if self.discard else h)


def images(n=8):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(6))


@pytest.fixture
def gradients_taken(monkeypatch):
    """The inputs each clean probe pass took a gradient for."""
    from nnlint.probes.passes import Dependence

    taken, clean = [], Dependence._clean

    def spy(self):
        out = clean(self)
        taken.append(sorted(self.layout.inputs[i].path for i in out.grads))
        return out

    monkeypatch.setattr(Dependence, "_clean", spy)
    return taken


def test_nn702_an_image_its_stem_conv_reads_whole_needs_no_gradient(gradients_taken):
    """Every channel feeds every unit of the stem: no slice can go unread, so the probes skip the input
    gradient (a backward at the image's size) and the swap they make anyway says whether it is read."""
    assert found(check(seeded(Stem), images()), "NN702") == []
    assert gradients_taken == [[]]
    gradients_taken.clear()
    (d,) = found(check(seeded(lambda: Stem(discard=True)), images()), "NN702")
    # the swap finds it on the probe batch; the whole batch's gradient confirms it
    assert d.evidence["whole"] and d.evidence["how"] == "gradient" and d.evidence["outputs_constant"]
    assert gradients_taken == [[], ["batch"]]


def test_nn702_an_image_dead_on_the_probes_samples_but_read_by_another_is_not_ignored(gradients_taken):
    """Every unit of the stem is off for samples 0-2 (the probe's rows and its donor): swapping sample 0's
    values changes nothing. Sample 5 turns units on, so the model does read the images: the whole batch's
    gradient, which sums over every sample, says so where a swap of sample 0 cannot."""
    model = seeded(Stem)
    with torch.no_grad():
        model.stem.bias.fill_(-3.0)
    batch = images() * 0.01
    batch[5] *= 1000
    assert found(check(model, batch), "NN702") == []
    assert gradients_taken == [[], ["batch"]]


def test_nn702_a_channel_a_depthwise_stem_keeps_apart_is_still_found_by_its_gradient(gradients_taken):
    (d,) = found(check(seeded(lambda: Stem(depthwise=True, dropped=2)), images()), "NN702")
    assert d.evidence["features"] == [[2, 2]] and d.evidence["how"] == "gradient"
    assert "channels 2 of batch (1 of 3, dim 1)" in d.message
    assert gradients_taken[0] == ["batch"]
    assert found(check(seeded(lambda: Stem(depthwise=True)), images()), "NN702") == []


def test_nn702_a_stem_whose_weights_skip_a_channel_is_differentiated():
    model = seeded(Stem)
    with torch.no_grad():
        model.stem.weight[:, 1] = 0             # channel 1 reaches no unit of the stem
    (d,) = found(check(model, images()), "NN702")
    assert d.evidence["features"] == [[1, 1]] and "channels 1 of batch" in d.message


# ---------------------------------------------------------------------------------------------
# NN703 causal-leak


class Prefix(nn.Module):
    def __init__(self, leak):
        super().__init__()
        self.leak = leak
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        if self.leak:
            return self.proj(x.sum(dim=1, keepdim=True)).expand_as(x)
        return self.proj(x.cumsum(dim=1))


def test_nn703_declared_causal_sum_over_the_sequence_and_its_prefix_twin():
    (d,) = found(check(seeded(lambda: Prefix(True)), sequences(4, 16), causal=True), "NN703")
    assert d.module == "" and d.severity == "error" and d.evidence["origin"] == "sum"
    assert "declared causal" in d.message and "positions 0-7" in d.message and "cumsum" in d.message
    assert found(check(seeded(lambda: Prefix(False)), sequences(4, 16), causal=True), "NN703") == []
    # not declared, not recognisable: not checked
    report = check(seeded(lambda: Prefix(True)), sequences(4, 16))
    assert found(report, "NN703") == [] and not report.trace.probes["causal_leak"].causal


class Attention(nn.Module):
    def __init__(self, mask, d=16):
        super().__init__()
        self.mask = mask
        self.qkv = nn.Linear(d, 3 * d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(-2, -1)
        if self.mask:
            t = x.shape[1]
            scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        return torch.softmax(scores, dim=-1) @ v


class LM(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.attn = Attention(mask)
        self.head = nn.Linear(16, 50)

    def forward(self, ids):
        return self.head(self.attn(self.emb(ids)))


def tokens(n=4, t=16):
    return torch.randint(0, 50, (n, t), generator=torch.Generator().manual_seed(6))


def test_nn703_a_triangular_mask_in_forward_is_recognised_and_a_dropped_one_is_a_leak():
    report = check(seeded(lambda: LM(True)), tokens())
    probe = report.trace.probes["causal_leak"]
    assert probe.causal and "tril" in probe.why and probe.tested and probe.change == 0.0
    assert found(report, "NN703") == []
    (d,) = found(check(seeded(lambda: LM(False)), tokens(), causal=True), "NN703")
    assert d.module == "attn" and d.evidence["origin"] == "matmul"


def test_nn703_is_causal_attention_and_an_is_causal_module_are_recognised():
    class SDPA(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)

        def forward(self, ids):
            h = self.emb(ids).unsqueeze(1)
            return F.scaled_dot_product_attention(h, h, h, is_causal=True)

    probe = check(seeded(SDPA), tokens()).trace.probes["causal_leak"]
    assert probe.causal and "is_causal=True" in probe.why and probe.change == 0.0

    class Flagged(LM):
        def __init__(self):
            super().__init__(mask=False)
            self.attn.is_causal = True                 # what Hugging Face attention modules say

    report = check(seeded(Flagged), tokens())
    assert report.trace.probes["causal_leak"].why == "attn.is_causal"
    assert [d.module for d in found(report, "NN703")] == ["attn"]
    assert found(check(seeded(Flagged), tokens(), causal=False), "NN703") == []


def test_nn703_a_model_file_declares_causal_and_the_command_line_overrides_it(tmp_path):
    from click.testing import CliRunner

    from nnlint.cli import main

    path = tmp_path / "lm.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\ncausal = True\n\n"
        "class Sum(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n"
        "    def forward(self, x):\n        return self.fc(x.sum(dim=1, keepdim=True)).expand_as(x)\n\n"
        "torch.manual_seed(0)\nmodel = Sum()\nbatch = torch.randn(4, 16, 4)\n")
    runner = CliRunner()
    declared = runner.invoke(main, ["check", str(path), "--select", "NN703"])
    assert declared.exit_code == 1 and "NN703" in declared.output
    off = runner.invoke(main, ["check", str(path), "--select", "NN703", "--not-causal"])
    assert off.exit_code == 0, off.output
    path.write_text(path.read_text().replace("causal = True", "causal = 'yes'"))
    wrong = runner.invoke(main, ["check", str(path)])
    assert wrong.exit_code == 2 and "`causal` must be True or False" in wrong.output


def test_nn703_a_model_without_a_sequence_input_is_not_tested():
    report = check(seeded(lambda: nn.Linear(8, 4)), torch.randn(8, 8), causal=True)
    probe = report.trace.probes["causal_leak"]
    assert probe.causal and not probe.tested and "no sequence input" in probe.reason


# ---------------------------------------------------------------------------------------------
# The probes: cheap, and the model left as it was


def test_the_probes_leave_the_model_and_rng_bit_identical():
    model = seeded(lambda: nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), nn.Linear(16, 4)))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.randn(8, 8)
    rng = torch.get_rng_state()
    nnlint.check(model, batch, select=CODES)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


def test_a_dropout_left_on_in_eval_is_not_taken_for_batch_mixing():
    class AlwaysDrop(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return F.dropout(self.fc(x), 0.5)            # training=True even in eval (NN501's)

    assert found(check(seeded(AlwaysDrop), torch.randn(8, 8)), "NN701") == []


def test_the_probes_are_skipped_with_a_note_when_the_check_runs_a_training_step():
    model = seeded(lambda: nn.Linear(4, 2))
    report = nnlint.check(model, torch.randn(8, 4), step=lambda m, b: m(b).pow(2).mean(), select=CODES)
    assert report.diagnostics == []
    assert any("dependence probes" in n and "step=" in n for n in report.notes)


def test_a_list_of_per_sample_images_is_not_sliced_as_a_batch():
    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, images):                     # torchvision detection style: one tensor per image
            return torch.stack([self.conv(i[None]).mean((0, 2, 3)) for i in images])

    report = check(seeded(Detector), ([torch.randn(3, 16, 16), torch.randn(3, 20, 20)],))
    assert report.diagnostics == []
    assert any("list of tensors, one per sample" in n for n in report.notes)


def test_the_probes_run_only_when_a_rule_reads_them():
    report = check(seeded(lambda: LastStep("view")), sequences(), codes=["NN101"])
    assert report.trace.probes == {}
