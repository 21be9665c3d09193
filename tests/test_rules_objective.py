"""NN601-NN606 (the objective) and NN304's calibration at init, measured from the real loss.

For each code: the planted fault fires on the right module with the number that proves it, and the
healthy twin is quiet; then the healthy setups with real losses every rule must leave alone (CE on
logits, BCEWithLogits, NLL after log_softmax, MSE of matching shapes, label smoothing, ignore_index
padding, soft targets, weighted and summed losses), the healthy zoo, and the gallery's rows.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnlint
import zoo   # tests/zoo: small faithful copies of library models at their own init

CODES = ["NN304", "NN601", "NN602", "NN603", "NN604", "NN605", "NN606"]


def check(model, batch, codes=CODES, **kwargs):
    torch.manual_seed(0)
    return nnlint.check(model, batch, select=codes, **kwargs).diagnostics


def problems(diagnostics):
    return [(d.code, d.module, d.message) for d in diagnostics if d.severity != "info"]


def mlp(out=10, *tail, width=64, head_std=None):
    """Linear(32, width), ReLU, Linear(width, out), *tail: Kaiming-initialized, the head drawn small."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, out), *tail)
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    if head_std is not None:
        nn.init.normal_(model[2].weight, std=head_std)
        nn.init.zeros_(model[2].bias)
    return model


def data(n=64, classes=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 32, generator=g), torch.randint(0, classes, (n,), generator=g)


X, Y = data()
BINARY = torch.randint(0, 2, (64, 1), generator=torch.Generator().manual_seed(2)).float()


# ---------------------------------------------------------------------------------------------
# NN601 probabilities-into-logit-loss


def test_nn601_double_softmax_names_the_softmax_and_the_loss_floor():
    [d] = check(mlp(10, nn.Softmax(dim=1)), X, target=Y, loss_fn=nn.CrossEntropyLoss())
    assert (d.code, d.module, d.severity) == ("NN601", "3", "error")
    assert d.evidence["loss_floor"] == pytest.approx(math.log(1 + 9 / math.e), abs=1e-6)   # 1.46
    assert d.evidence["row_sum"] == pytest.approx((1.0, 1.0), abs=1e-5)
    assert "log(1 + 9/e) = 1.46 for 10 classes" in d.message and "nn.Softmax" in d.message
    assert d.fix.kind == "drop_squash" and not d.fix.safe


def test_nn601_sigmoid_before_bce_with_logits_called_in_forward_points_at_the_line():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(1)

        def forward(self, x):
            return torch.sigmoid(self.net(x))

    [d] = check(Net(), X, target=BINARY, loss_fn=nn.BCEWithLogitsLoss())
    assert d.code == "NN601" and d.module == "" and d.location.file == __file__
    assert "sigmoid() in forward" in d.message and d.evidence["squash"] == "sigmoid"
    rate = float(BINARY.mean())
    assert d.evidence["loss_floor"] == pytest.approx(rate * math.log1p(math.exp(-1)) + (1 - rate) * math.log(2))
    fixed = nnlint.fix(Net(), X, target=BINARY, loss_fn=nn.BCEWithLogitsLoss(), unsafe=True, select=["NN601"])
    assert [o.diagnostic.code for o in fixed.applied] == ["NN601"] and fixed.report.diagnostics == []


def test_nn601_softmax_inside_the_loss_function_is_the_loss_functions():
    def loss_fn(logits, y):
        return F.cross_entropy(logits.softmax(dim=-1), y)

    [d] = check(mlp(10), X, target=Y, loss_fn=loss_fn)
    assert d.code == "NN601" and d.module == "" and "loss function" in d.message and d.fix is None


def test_nn601_quiet_on_logits_and_on_log_probabilities_into_cross_entropy():
    # log_softmax is idempotent: cross_entropy(log_softmax(z)) == cross_entropy(z), gradients too
    assert check(mlp(10), X, target=Y, loss_fn=nn.CrossEntropyLoss()) == []
    assert check(mlp(10, nn.LogSoftmax(dim=1)), X, target=Y, loss_fn=nn.CrossEntropyLoss()) == []
    assert check(mlp(1), X, target=BINARY, loss_fn=nn.BCEWithLogitsLoss()) == []


# ---------------------------------------------------------------------------------------------
# NN602 scores-into-probability-loss


def test_nn602_raw_scores_into_nll_quotes_the_row_logsumexp():
    [d] = check(mlp(10), X, target=Y, loss_fn=nn.NLLLoss())
    assert (d.code, d.module) == ("NN602", "2") and d.evidence["row_logsumexp"] > 2
    assert "raw scores" in d.message and "log_softmax" in d.message


def test_nn602_probabilities_into_nll_say_take_the_log():
    [d] = check(mlp(10, nn.Softmax(dim=1)), X, target=Y, loss_fn=nn.NLLLoss())
    assert d.code == "NN602" and d.module == "3" and "probabilities, not their log" in d.message


def test_nn602_raw_scores_into_bce_is_the_finding_not_a_crash():
    report = nnlint.check(mlp(1), X, target=BINARY, loss_fn=nn.BCELoss(), select=CODES)
    [d] = report.diagnostics
    assert (d.code, d.module) == ("NN602", "2") and d.evidence["min"] < 0
    assert "outside [0, 1]" in d.message and "BCEWithLogitsLoss" in d.message
    assert report.trace.objective.failure is not None and "would raise" in report.trace.objective.failure.error


def test_nn602_scores_in_range_only_by_chance_from_a_linear_layer():
    model = mlp(1, head_std=1e-3)
    nn.init.constant_(model[2].bias, 0.5)               # all outputs ~0.5: in [0, 1], but no sigmoid
    [d] = check(model, X, target=BINARY, loss_fn=nn.BCELoss())
    assert d.code == "NN602" and d.module == "2" and "by chance" in d.message


def test_nn602_quiet_on_log_softmax_nll_and_sigmoid_bce():
    assert check(mlp(10, nn.LogSoftmax(dim=1)), X, target=Y, loss_fn=nn.NLLLoss()) == []
    assert check(mlp(1, nn.Sigmoid()), X, target=BINARY, loss_fn=nn.BCELoss()) == []


# ---------------------------------------------------------------------------------------------
# NN603 target-broadcast


def test_nn603_mse_of_n1_against_n_broadcasts_to_n_by_n():
    target = torch.randn(64)
    with pytest.warns(UserWarning):        # torch's own warning, easily lost among others
        [d] = check(mlp(1), X, target=target, loss_fn=F.mse_loss)
    assert (d.code, d.module) == ("NN603", "2") and d.evidence["broadcast_shape"] == [64, 64]
    assert "4096 terms instead of 64" in d.message and "target.view_as(output)" in d.message


def test_nn603_bce_with_logits_shape_mismatch_explains_the_raise():
    [d] = check(mlp(1), X, target=BINARY.squeeze(1), loss_fn=nn.BCEWithLogitsLoss())
    assert d.code == "NN603" and "loss_failure" in d.evidence


def test_nn603_quiet_on_matching_shapes_and_a_constant_target():
    assert check(mlp(1), X, target=torch.randn(64, 1), loss_fn=F.mse_loss) == []
    for loss_fn in (F.l1_loss, F.smooth_l1_loss, F.huber_loss):
        assert check(mlp(3), X, target=torch.randn(64, 3), loss_fn=loss_fn) == []
    assert check(mlp(1), X, target=torch.zeros(1), loss_fn=F.mse_loss) == []   # broadcasts over the output

    def against_several_targets(out, targets):          # one prediction for each of 4 targets, on purpose
        return F.mse_loss(out.unsqueeze(1), targets)
    assert check(mlp(3), X, target=torch.randn(64, 4, 3), loss_fn=against_several_targets) == []


# ---------------------------------------------------------------------------------------------
# NN604 target-mismatch


def test_nn604_label_out_of_range_names_the_label_and_the_head():
    y = Y.clone()
    y[5] = 11
    [d] = check(mlp(10), X, target=y, loss_fn=nn.CrossEntropyLoss())
    assert (d.code, d.module) == ("NN604", "2") and d.evidence["out_of_range"] == 1
    assert "which has 10 classes (0..9): the first is 11" in d.message and "12 outputs" in d.message
    assert "device-side assert" in d.message


@pytest.mark.parametrize("target, words", [
    (F.one_hot(Y, 10), "target.argmax(1)"),
    (Y.float(), "target.long()"),
    ((torch.rand(64, 10, generator=torch.Generator().manual_seed(3)) < 0.2).long(), "BCEWithLogitsLoss"),
    (torch.rand(64, 10, generator=torch.Generator().manual_seed(3)), "target / target.sum(1, keepdim=True)"),
    (torch.softmax(torch.randn(64, 5), 1), "the head has 10 classes but the targets have 5"),
], ids=["one-hot", "float-indices", "multi-hot", "soft-not-summing-to-1", "class-count"])
def test_nn604_targets_that_do_not_fit_the_head(target, words):
    [d] = check(mlp(10), X, target=target, loss_fn=nn.CrossEntropyLoss())
    assert (d.code, d.module) == ("NN604", "2") and words in d.message


def test_nn604_binary_targets_must_be_float_and_in_the_unit_interval():
    [d] = check(mlp(1), X, target=BINARY.long(), loss_fn=nn.BCEWithLogitsLoss())
    assert d.code == "NN604" and "target.float()" in d.message
    [d] = check(mlp(1), X, target=torch.randint(0, 3, (64, 1)).float(), loss_fn=nn.BCEWithLogitsLoss())
    assert d.code == "NN604" and "cross_entropy with 3 outputs" in d.message


def test_nn604_quiet_on_ignore_index_padding_smoothing_and_soft_targets():
    y = Y.clone()
    y[::4] = -100                                       # padding, as language-model targets have
    assert check(mlp(10), X, target=y, loss_fn=nn.CrossEntropyLoss()) == []
    assert check(mlp(10), X, target=Y, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1)) == []
    soft = torch.softmax(torch.randn(64, 10), dim=1)    # distillation targets
    assert check(mlp(10), X, target=soft, loss_fn=nn.CrossEntropyLoss()) == []


# ---------------------------------------------------------------------------------------------
# NN605 loss-not-trainable


def test_nn605_unreduced_loss_is_the_one_finding_and_the_gradients_are_still_real():
    report = nnlint.check(mlp(10), X, target=Y, loss_fn=nn.CrossEntropyLoss(reduction="none"))
    [d] = [d for d in report.diagnostics if d.severity != "info"]
    assert (d.code, d.module) == ("NN605", "") and d.evidence["shape"] == [64]
    assert 'reduction="none"' in d.message and "loss.mean()" in d.message
    assert report.trace.backward_ran and not report.trace.loss_is_surrogate
    assert report.trace.objective.backward == "loss.mean()"


def through_item(out, y):
    return torch.tensor(F.cross_entropy(out, y).item(), requires_grad=True)


def through_numpy(out, y):
    return F.cross_entropy(torch.from_numpy(out.detach().numpy()), y)


def detached(out, y):
    return F.cross_entropy(out.detach(), y)


def under_no_grad(out, y):
    with torch.no_grad():
        return F.cross_entropy(out, y)


def as_float(out, y):
    return F.cross_entropy(out, y).item()


@pytest.mark.parametrize("loss_fn, words", [
    (through_item, "new leaf tensor"), (through_numpy, "rebuilt outside the graph"),
    (detached, "detaches the output"), (under_no_grad, "torch.no_grad()"), (as_float, "Python float"),
], ids=["item", "numpy", "detach", "no_grad", "float"])
def test_nn605_a_loss_cut_from_the_graph_says_how_and_nn406_stays_quiet(loss_fn, words):
    if loss_fn is through_numpy:
        pytest.importorskip("numpy")
    report = nnlint.check(mlp(10), X, target=Y, loss_fn=loss_fn)
    loud = [(d.code, d.module) for d in report.diagnostics if d.severity != "info"]
    assert loud == [("NN605", "")], report.diagnostics
    assert words in report.by_code("NN605")[0].message


def test_nn605_leaves_nn406_its_own_finding_a_cut_inside_the_model():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = mlp(16), nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.backbone(x).detach())

    report = nnlint.check(Net(), X, target=Y, loss_fn=through_item)
    # (the backbone's last Linear and the head are one linear map: NN704's, and right)
    assert {(d.code, d.module) for d in report.diagnostics if d.severity == "error"} == {("NN605", ""), ("NN406", "backbone")}


# ---------------------------------------------------------------------------------------------
# NN606 head-init-vs-target

PRIORS = torch.tensor([0.85, 0.05, 0.05, 0.05])


def imbalanced(n=256, seed=4):
    return torch.multinomial(PRIORS, n, replacement=True, generator=torch.Generator().manual_seed(seed))


def test_nn606_imbalanced_priors_and_the_fix_sets_the_log_priors():
    x = torch.randn(256, 32)
    [d] = check(mlp(4, head_std=0.01), x, target=imbalanced(), loss_fn=nn.CrossEntropyLoss())
    assert (d.code, d.module, d.severity) == ("NN606", "2", "warning")
    assert d.evidence["gap"] > 0.5 and d.evidence["label_entropy"] == pytest.approx(0.59, abs=0.1)
    assert d.fix.kind == "bias_to_priors" and d.fix.safe
    model = mlp(4, head_std=0.01)
    result = nnlint.fix(model, x, target=imbalanced(), loss_fn=nn.CrossEntropyLoss(), select=["NN606"])
    assert [o.diagnostic.code for o in result.applied] == ["NN606"] and result.report.diagnostics == []
    assert model[2].bias.detach().tolist() == pytest.approx(d.evidence["log_priors"], abs=1e-3)


def test_nn606_quiet_on_the_head_at_the_priors_and_on_balanced_small_batches():
    model = mlp(4, head_std=0.01)
    with torch.no_grad():
        model[2].bias.copy_(PRIORS.log())
    assert check(model, torch.randn(256, 32), target=imbalanced(), loss_fn=nn.CrossEntropyLoss()) == []
    for seed in range(20):   # 16 balanced labels over 10 classes look imbalanced by chance
        x, y = data(16, 10, seed)
        assert check(mlp(10, head_std=0.01), x, ["NN606"], target=y, loss_fn=nn.CrossEntropyLoss()) == []


def test_nn606_rare_positives_of_a_sigmoid_head():
    y = (torch.rand(256, 1, generator=torch.Generator().manual_seed(5)) < 0.05).float()
    [d] = check(mlp(1, head_std=0.01), torch.randn(256, 32), target=y, loss_fn=nn.BCEWithLogitsLoss())
    assert d.code == "NN606" and d.evidence["log_priors"][0] < -2     # log(r / (1 - r)) of ~5%


def test_nn606_unstandardized_regression_targets():
    target = 50 + 100 * torch.randn(64, 1, generator=torch.Generator().manual_seed(6))
    [d] = check(mlp(1), X, target=target, loss_fn=F.mse_loss)
    assert (d.code, d.module) == ("NN606", "2") and d.evidence["scale_ratio"] > 100
    assert "Standardize the targets" in d.message and d.fix is None


def test_nn606_quiet_on_standardized_targets_whatever_the_head_scale():
    target = torch.randn(64, 1, generator=torch.Generator().manual_seed(6))
    assert check(mlp(1), X, target=target, loss_fn=F.mse_loss) == []
    assert check(mlp(1, head_std=0.001), X, target=target, loss_fn=F.mse_loss) == []   # drawn small on purpose
    zero = mlp(1)
    nn.init.zeros_(zero[2].weight)                       # a zero-init output (diffusion models)
    assert check(zero, X, ["NN606"], target=target, loss_fn=F.mse_loss) == []


# ---------------------------------------------------------------------------------------------
# NN304: calibration at init, against the nearer of uniform and the label frequencies


def test_nn304_calibration_sees_an_over_confident_large_head_the_loss_ratio_misses():
    x, y = data(128, 1000)
    [d] = check(mlp(1000, head_std=0.18, width=128), x, ["NN304"], target=y, loss_fn=nn.CrossEntropyLoss())
    assert d.evidence["ratio"] < 1.5 and d.evidence["calibration"] > 0.6


def test_nn304_quiet_on_a_xavier_head_over_kaiming_features():
    # logit std ~1.4: loss ratio 1.36, calibration 0.51 of its largest value; a common healthy init
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    nn.init.zeros_(model[0].bias)
    nn.init.xavier_normal_(model[2].weight)
    nn.init.zeros_(model[2].bias)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    assert check(model, x, ["NN304"], target=y, loss_fn=nn.CrossEntropyLoss()) == []


def test_nn304_quiet_on_a_head_at_the_log_priors():
    # the peers compare with 1/C and raise a false alarm here
    model = mlp(4, head_std=0.01)
    with torch.no_grad():
        model[2].bias.copy_(PRIORS.log())
    assert check(model, torch.randn(256, 32), ["NN304"], target=imbalanced(), loss_fn=nn.CrossEntropyLoss()) == []


# ---------------------------------------------------------------------------------------------
# Healthy setups with real losses, the healthy zoo, the gallery


def lm_setup():
    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(100, 32), nn.Linear(32, 100)
            nn.init.normal_(self.head.weight, std=0.02)

        def forward(self, ids):
            return self.head(self.embed(ids))

    ids = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(7))
    labels = ids.clone()
    labels[:, -4:] = -100                                 # padding

    def lm_loss(logits, labels):
        return F.cross_entropy(logits[:, :-1].reshape(-1, 100), labels[:, 1:].reshape(-1), ignore_index=-100)

    torch.manual_seed(0)
    return TinyLM(), ids, labels, lm_loss


HEALTHY = {
    "ce-logits": lambda: (mlp(10, head_std=0.01), X, Y, nn.CrossEntropyLoss()),
    "ce-label-smoothing": lambda: (mlp(10, head_std=0.01), X, Y, nn.CrossEntropyLoss(label_smoothing=0.1)),
    "ce-weighted": lambda: (mlp(10, head_std=0.01), X, Y, nn.CrossEntropyLoss(weight=torch.rand(10) + 0.5)),
    "ce-sum": lambda: (mlp(10, head_std=0.01), X, Y, nn.CrossEntropyLoss(reduction="sum")),
    "bce-logits": lambda: (mlp(1), X, BINARY, nn.BCEWithLogitsLoss()),
    "multi-label": lambda: (mlp(5), X, (torch.rand(64, 5) < 0.3).float(), nn.BCEWithLogitsLoss()),
    "nll-log-softmax": lambda: (mlp(10, nn.LogSoftmax(dim=1), head_std=0.01), X, Y, nn.NLLLoss()),
    "mse": lambda: (mlp(3), X, torch.randn(64, 3), nn.MSELoss()),
    "lm-ignore-index": lm_setup,
}


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_setups_with_real_losses_are_quiet(name):
    model, batch, target, loss_fn = HEALTHY[name]()
    assert problems(check(model, batch, target=target, loss_fn=loss_fn)) == []


@pytest.mark.parametrize("make", zoo.HEALTHY, ids=[make.__name__ for make in zoo.HEALTHY])
def test_zoo_healthy_models_are_quiet(make):
    case = make()
    assert problems(check(case.model, case.batch, loss_fn=case.loss_fn, target=case.target)) == []


GALLERY = ["double_softmax_ce", "sigmoid_bce_logits", "raw_scores_nll", "raw_scores_bce", "mse_broadcast",
           "class_index_out_of_range", "one_hot_targets", "reduction_none", "loss_via_item", "loss_numpy_roundtrip",
           "imbalanced_priors", "unstandardized_regression"]


@pytest.mark.parametrize("name", GALLERY)
def test_gallery_bugs_are_found_on_the_right_module_and_their_twins_are_quiet(name, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))   # benchmarks/ is no package
    from benchmarks import gallery

    if name == "loss_numpy_roundtrip":
        pytest.importorskip("numpy")
    case = gallery.case_by_name(name)
    setup = case.build()
    found = check(setup.model, setup.batch, target=setup.target, loss_fn=setup.loss_fn)
    assert any(d.code == case.expect.code and case.expect.names(d.module) for d in found), found
    twin = gallery.case_by_name(case.twin).build()
    assert problems(check(twin.model, twin.batch, target=twin.target, loss_fn=twin.loss_fn)) == []
