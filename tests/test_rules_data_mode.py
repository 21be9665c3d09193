"""NN303, NN305 and NN503-NN506: each on a faulty setup and on its healthy twin, end to end through
nnlint.check (optimizer=, train_transform=, source_origins= plumbing included)."""
from __future__ import annotations


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from nnlint.diagnostics import Location
from nnlint.rulekit import fmt


def run(model, batch, codes, **kw):
    torch.manual_seed(0)
    return [d for d in nnlint.check(model, batch, select=codes, **kw).diagnostics]


def only(diagnostics, code):
    found = [d for d in diagnostics if d.code == code]
    assert len(found) == 1, [d.message for d in diagnostics]
    return found[0]


# ----- small torchvision stand-ins: recognised by class name, like the real ones --------------------
class Transform:
    def __call__(self, x):
        return x


class Compose(Transform):
    def __init__(self, transforms):
        self.transforms = transforms


class RandomApply(Compose):
    def __init__(self, transforms, p=0.5):
        super().__init__(transforms)
        self.p = p


class ToTensor(Transform): ...
class Normalize(Transform): ...
class Resize(Transform): ...
class Grayscale(Transform): ...
class RandomCrop(Transform): ...
class RandomHorizontalFlip(Transform): ...
class TrivialAugmentWide(Transform): ...


class Lambda(Transform):
    def __init__(self, fn):
        self.fn = fn


class ImageFolderLike:
    """A training Dataset carrying its transform, as torchvision's datasets do."""

    def __init__(self, transform):
        self.transform = transform

    def __getitem__(self, i):
        return i

    def __len__(self):
        return 10


# ----- models ------------------------------------------------------------------------------------
def kaiming(model):
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias) if m.bias is not None else None
    return model


class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    """A BN ResNet: stem conv+bn, two basic blocks, pooled linear head."""

    def __init__(self, c=8, classes=10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.layer1 = nn.Sequential(BasicBlock(c), BasicBlock(c))
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.layer1(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def images(n=16, size=16):
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size)


def conv_net(dropout: nn.Module):
    """conv -> relu -> <dropout> -> conv -> relu -> pool -> linear."""
    torch.manual_seed(0)
    return kaiming(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), dropout, nn.Conv2d(8, 8, 3, padding=1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)))


# ----- NN303 correlated-input -------------------------------------------------------------------------
def mlp(features=12):
    torch.manual_seed(0)
    return kaiming(nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, 2)))


def test_nn303_features_driven_by_one_factor_are_reported_with_their_correlation():
    torch.manual_seed(2)
    z = torch.randn(64, 1)
    x = 0.9 * z + 0.3 * torch.randn(64, 12)
    x = (x - x.mean(0)) / x.std(0)                      # centered and scaled: only the correlation is wrong
    corr = torch.corrcoef(x.T)
    expected = float((corr.abs().sum() - corr.diagonal().sum()) / (12 * 11))
    d = only(run(mlp(), x, ["NN3"]), "NN303")
    assert d.module == "" and d.severity == "info"
    assert d.evidence["features"] == 12 and d.evidence["samples"] == 64
    assert d.evidence["mean_abs_correlation"] == pytest.approx(expected, abs=1e-4) and expected > 0.8
    assert f"features {fmt(expected)} over 64 samples" in d.message and "whiten" in d.message.lower()
    assert d.fix.kind == "whiten_input" and d.fix.safe is False


def test_nn303_standardized_independent_features_are_quiet():
    torch.manual_seed(3)
    assert run(mlp(), torch.randn(64, 12), ["NN303"]) == []


def test_nn303_needs_enough_rows_to_tell_correlation_from_noise():
    torch.manual_seed(4)
    x = torch.randn(16, 2)
    x[:, 1] = x[:, 0] + 0.5 * x[:, 1]                   # truly correlated, but only 16 rows
    assert run(mlp(2), x, ["NN303"]) == []
    config = nnlint.config.Config(rule_options={"NN303": {"min_samples": 8}})
    assert only(run(mlp(2), x, ["NN303"], config=config), "NN303").evidence["samples"] == 16


def test_nn303_only_features_read_by_a_dense_layer_count():
    torch.manual_seed(6)
    lengths = torch.randint(2, 20, (64,))
    mask = (torch.arange(20)[None] < lengths[:, None]).float()       # padding mask: correlated columns

    class MaskedBag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(50, 8), nn.Linear(8, 2)

        def forward(self, ids, mask):
            return self.fc((self.emb(ids) * mask.unsqueeze(-1)).mean(1))

    class SignalConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv1d(1, 4, 5), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.conv(x.unsqueeze(1)).mean(2))

    walk = torch.cumsum(torch.randn(64, 100), 1)                     # a random walk: smooth, correlated in time
    walk = (walk - walk.mean(0)) / walk.std(0)
    assert run(MaskedBag(), (torch.randint(0, 50, (64, 20)), mask), ["NN303"]) == []
    assert run(SignalConv(), walk, ["NN303"]) == []
    d = only(run(nn.Sequential(nn.BatchNorm1d(100), nn.Linear(100, 2)), walk, ["NN303"]), "NN303")
    assert d.evidence["features"] == 100 and d.evidence["mean_abs_correlation"] > 0.5


# ----- NN305 no-augmentation ----------------------------------------------------------------------
def test_nn305_transform_without_random_steps_is_reported_at_its_definition():
    transform = Compose([ToTensor(), Normalize()])
    where = Location("train.py", 12)
    d = only(run(TinyResNet(), images(size=32), ["NN305"], train_transform=transform,
                 source_origins={id(transform): where}), "NN305")
    assert d.module == "" and d.evidence["steps"] == ["ToTensor", "Normalize"]
    assert d.location == where
    assert "RandomCrop(32, padding=4)" in d.message and "RandomHorizontalFlip()" in d.message


def test_nn305_large_images_get_random_resized_crops():
    d = only(run(TinyResNet(), images(n=4, size=96), ["NN305"], train_transform=Compose([Resize(), ToTensor()])),
             "NN305")
    assert "RandomResizedCrop(96)" in d.message


@pytest.mark.parametrize("transform", [
    Compose([RandomCrop(), RandomHorizontalFlip(), ToTensor(), Normalize()]),
    Compose([TrivialAugmentWide(), ToTensor()]),
    Compose([RandomApply([Grayscale()]), ToTensor()]),    # the wrapper is what makes it random
    Compose([ToTensor(), Lambda(lambda x: x)]),            # nnlint cannot see into a lambda: quiet
], ids=["flip-crop", "trivial-augment", "random-apply", "lambda"])
def test_nn305_random_or_opaque_transforms_are_quiet(transform):
    assert run(TinyResNet(), images(), ["NN305"], train_transform=transform) == []


def test_nn305_reads_a_training_datasets_transform():
    dataset = ImageFolderLike(Compose([ToTensor(), Normalize()]))
    d = only(run(TinyResNet(), images(), ["NN305"], train_transform=dataset), "NN305")
    assert d.evidence["dataset"] == "ImageFolderLike" and d.evidence["steps"] == ["ToTensor", "Normalize"]
    assert run(TinyResNet(), images(), ["NN305"], train_transform=ImageFolderLike(RandomCrop())) == []


def test_nn305_non_image_pipeline_is_not_reported():
    class Tokenize(Transform): ...
    assert run(mlp(), torch.randn(32, 12), ["NN305"], train_transform=Compose([Tokenize()])) == []


# ----- NN503 batchnorm-batch-stats-at-eval ---------------------------------------------------------
def test_nn503_batchnorm_without_running_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, track_running_stats=False), nn.ReLU())
    d = only(run(model, images(), ["NN503"]), "NN503")
    assert d.module == "1" and d.severity == "warning"
    assert "BatchNorm2d(8, track_running_stats=False)" in d.message
    assert d.evidence["num_features"] == 8
    assert d.fix.kind == "keep_running_stats" and d.fix.target == "1" and d.fix.safe is True


def test_nn503_default_batchnorm_and_instancenorm_are_quiet():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.InstanceNorm2d(8), nn.ReLU())
    assert run(model, images(), ["NN503"]) == []


def test_nn503_is_structural_so_it_runs_on_the_meta_device():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False))
        batch = torch.randn(8, 4)
    assert only(run(model, batch, ["NN503"]), "NN503").module == "1"


# ----- NN504 dropout-on-conv-features -------------------------------------------------------------
def test_nn504_elementwise_dropout_on_a_conv_map():
    d = only(run(conv_net(nn.Dropout(0.3)), images(), ["NN504"]), "NN504")
    assert d.module == "2" and d.evidence["conv"] == "0"
    assert d.evidence["shape"] == [16, 8, 16, 16] and d.evidence["p"] == 0.3
    assert "nn.Dropout2d(p=0.3)" in d.message
    assert d.fix.kind == "dropout2d" and d.fix.target == "2" and d.fix.params.replacement == "Dropout2d"
    assert d.fix.safe is False


def test_nn504_functional_dropout_on_a_conv1d_map_suggests_dropout1d():
    class Conv1dNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 8, 3, padding=1)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            h = F.dropout(F.relu(self.conv(x)), 0.2, training=self.training)
            return self.fc(h.mean(2))

    d = only(run(Conv1dNet(), torch.randn(16, 4, 20), ["NN504"]), "NN504")
    assert d.module == "" and d.evidence["replacement"] == "Dropout1d"
    assert "F.dropout1d(x, p=0.2, training=self.training)" in d.message
    assert d.fix.params.site.functional is True and d.location is not None


@pytest.mark.parametrize("dropout", [nn.Dropout2d(0.3), nn.Dropout(0.0)], ids=["dropout2d", "p=0"])
def test_nn504_channel_dropout_and_p0_are_quiet(dropout):
    assert run(conv_net(dropout), images(), ["NN504"]) == []


def test_nn504_dropout_after_flatten_or_pooled_to_one_position_is_quiet():
    torch.manual_seed(0)
    vgg_head = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Dropout(0.5),   # 16x8x1x1
                             nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 4))
    assert run(vgg_head, images(), ["NN504"]) == []


def test_nn504_vit_tokens_from_a_patch_embedding_are_not_a_conv_map():
    class PatchEmbedViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Conv2d(3, 16, 4, stride=4)
            self.pos_drop = nn.Dropout(0.1)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            tokens = self.proj(x).flatten(2).transpose(1, 2)        # (N, 16 patches, 16 dims)
            return self.head(self.pos_drop(tokens).mean(1))

    assert run(PatchEmbedViT(), images(), ["NN504"]) == []


# ----- NN505 dropout-before-batchnorm -------------------------------------------------------------
def bn_mlp(dropout_first: bool):
    torch.manual_seed(0)
    if dropout_first:   # linear -> relu -> dropout -> bn: the BN's running variance sees the dropped signal
        body = [nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.5), nn.BatchNorm1d(32), nn.Linear(32, 4)]
    else:               # dropout after the last BN, before the classifier
        body = [nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4)]
    return kaiming(nn.Sequential(*body))


def test_nn505_dropout_feeding_batchnorm_quotes_the_measured_variance_shift():
    torch.manual_seed(5)
    d = only(run(bn_mlp(True), torch.randn(256, 16), ["NN505"]), "NN505")
    assert d.module == "2" and d.evidence["batchnorm"] == "3" and d.evidence["p"] == 0.5
    # relu(N(0, s^2)) through inverted dropout p=0.5: (E[x^2]/(1-p) - E[x]^2) / Var(x) = 2.47
    shift = d.evidence["variance_shift"]
    assert 2.2 < shift < 2.8
    assert shift == pytest.approx(d.evidence["train_var"] / d.evidence["eval_var"])
    assert f"{fmt(shift)}x" in d.message
    assert d.fix.kind == "move_dropout" and d.fix.safe is False and d.fix.params.batchnorm == "3"


def test_nn505_dropout_after_the_last_batchnorm_is_quiet():
    assert run(bn_mlp(False), torch.randn(64, 16), ["NN505"]) == []


def test_nn505_densenet_concatenation_carries_the_dropout_into_the_next_batchnorm():
    class DenseLayer(nn.Module):
        def __init__(self, c_in, growth):
            super().__init__()
            self.norm, self.conv = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, growth, 3, padding=1)

        def forward(self, x):
            new = F.dropout(self.conv(F.relu(self.norm(x))), 0.2, training=self.training)
            return torch.cat([x, new], 1)

    torch.manual_seed(0)
    model = nn.Sequential(DenseLayer(3, 4), DenseLayer(7, 4))
    d = only(run(model, images(), ["NN505"]), "NN505")
    assert d.module == "0" and d.evidence["batchnorm"] == "1.norm"


def test_nn505_dropout_then_weight_layer_then_batchnorm_is_not_reported():
    # Wide ResNet: conv -> dropout -> conv -> bn. The shift is diluted by the conv (and NN504 speaks).
    torch.manual_seed(0)
    model = kaiming(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8)))
    codes = {d.code for d in run(model, images(), ["NN504", "NN505"])}
    assert codes == {"NN504"}


# ----- NN506 weight-decay-setup -------------------------------------------------------------------
def norm_and_bias_params(model):
    norms = [n for m_name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
             for n, _ in m.named_parameters(prefix=m_name)]
    biases = [n for n, p in model.named_parameters() if p.ndim < 2 and n not in norms]
    return norms, biases


def param_groups(model, wd):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def test_nn506_sgd_decaying_every_parameter_counts_the_norm_and_bias_params():
    model = TinyResNet()
    norms, biases = norm_and_bias_params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    where = Location("train.py", 30)
    d = only(run(model, images(), ["NN506"], optimizer=optimizer, source_origins={id(optimizer): where}), "NN506")
    assert d.module == "" and d.location == where and d.evidence["finding"] == "decayed_norm_bias"
    assert (d.evidence["norm"], d.evidence["bias"]) == (len(norms), len(biases)) == (10, 1)
    assert f"to {len(norms) + len(biases)} norm/bias parameters" in d.message
    assert "weight_decay=0.0001" in d.message
    assert "decay = [p for n, p in model.named_parameters() if p.ndim >= 2]" in d.message


def test_nn506_no_weight_decay_anywhere():
    model = TinyResNet()
    d = only(run(model, images(), ["NN506"], optimizer=torch.optim.SGD(model.parameters(), lr=0.1)), "NN506")
    assert d.evidence["finding"] == "no_decay" and d.evidence["groups"] == 1
    assert f"({len(list(model.parameters()))} trainable parameters)" in d.message


def test_nn506_adam_with_weight_decay_suggests_adamw():
    model = TinyResNet()
    optimizer = torch.optim.Adam(param_groups(model, 1e-4), lr=1e-3)
    d = only(run(model, images(), ["NN506"], optimizer=optimizer), "NN506")
    assert d.evidence == {"optimizer": "Adam", "weight_decay": 1e-4, "finding": "coupled_l2"}
    assert "AdamW" in d.message


def test_nn506_adam_decaying_everything_gives_one_diagnostic_per_finding():
    model = TinyResNet()
    optimizer = torch.optim.Adam(model.parameters(), weight_decay=1e-4)
    findings = sorted(d.evidence["finding"] for d in run(model, images(), ["NN506"], optimizer=optimizer))
    assert findings == ["coupled_l2", "decayed_norm_bias"]


@pytest.mark.parametrize("make", [
    lambda m: torch.optim.AdamW(param_groups(m, 0.05), lr=1e-3),
    lambda m: torch.optim.SGD(param_groups(m, 1e-4), lr=0.1, momentum=0.9),
    lambda m: torch.optim.LBFGS(m.parameters()),                      # has no weight decay at all
], ids=["adamw-groups", "sgd-groups", "lbfgs"])
def test_nn506_healthy_setups_are_quiet(make):
    model = TinyResNet()
    assert run(model, images(), ["NN506"], optimizer=make(model)) == []


def test_nn506_frozen_norms_are_not_counted():
    model = TinyResNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)
    d = only(run(model, images(), ["NN506"], optimizer=optimizer), "NN506")
    assert (d.evidence["norm"], d.evidence["bias"]) == (0, 1) and d.evidence["examples"] == ["fc.bias"]


def test_nn506_names_the_optimizer_inside_a_wrapper():
    class AcceleratedOptimizer(torch.optim.Optimizer):   # accelerate's wrapper keeps it in .optimizer
        def __init__(self, optimizer):
            self.optimizer = optimizer

        @property
        def param_groups(self):
            return self.optimizer.param_groups

    model = TinyResNet()
    wrapped = AcceleratedOptimizer(torch.optim.Adam(param_groups(model, 1e-4)))
    d = only(run(model, images(), ["NN506"], optimizer=wrapped), "NN506")
    assert d.evidence["optimizer"] == "Adam" and d.evidence["finding"] == "coupled_l2"


# ----- the healthy BN ResNet, whole setup: nothing from this family -------------------------------
def test_bn_resnet_with_adamw_groups_and_augmentation_is_clean_for_this_family():
    model = TinyResNet()
    transform = Compose([RandomCrop(), RandomHorizontalFlip(), ToTensor(), Normalize()])
    found = run(model, images(), ["NN303", "NN305", "NN503", "NN504", "NN505", "NN506"],
                optimizer=torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3), train_transform=transform)
    assert found == []
