"""The optimizer rules NN801-NN806 on the gallery's optimizer bugs and their healthy twins, the first-update
probe quiet on the healthy zoo with the usual optimizers at their usual learning rates, and every probe
leaving the model, the optimizer's state and the RNG exactly as found."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from zoo import HEALTHY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.gallery import case_by_name  # noqa: E402


class Lion(torch.optim.Optimizer):
    """Chen et al. 2023: sign of an interpolated momentum, decoupled decay."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                p.mul_(1 - g["lr"] * g["weight_decay"])
                p.add_(torch.sign(m * b1 + p.grad * (1 - b1)), alpha=-g["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


USUAL = {
    "sgd_momentum": lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
    "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
    "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05),
    # torch's own (relative step: the update scales with the weight's RMS), at its default lr
    "adafactor": lambda m: torch.optim.Adafactor(m.parameters(), lr=1e-2),
    "lion": lambda m: Lion(m.parameters(), lr=1e-4),
}


def gallery(name, **kwargs):
    setup = case_by_name(name).build()
    return nnlint.check(setup.model, setup.batch, target=setup.target, loss_fn=setup.loss_fn,
                        optimizer=setup.optimizer, select=["NN8"], **kwargs)


def found(report, code):
    return [d for d in report.diagnostics if d.code == code]


# ----- the optimizer as given ------------------------------------------------------------------


def test_nn801_names_the_replaced_head_and_nn802_the_old_one():
    report = gallery("head_replaced_after_optimizer")
    [missing] = found(report, "NN801")
    assert missing.module == "2" and missing.severity == "error" and "650 values" in missing.message
    assert missing.evidence["missing"] == 2 and missing.evidence["foreign"] == 2
    [stray] = found(report, "NN802")
    assert "1000x64" in stray.message and stray.evidence["group"] == 0


@pytest.mark.parametrize("case, module, finding, severity", [
    ("duplicate_param_across_groups", "2", "duplicate", "error"),
    ("foreign_optimizer_tensor", "", "foreign", "error"),
    ("frozen_params_in_optimizer", "0.0", "frozen", "info"),
])
def test_nn802(case, module, finding, severity):
    [d] = found(gallery(case), "NN802")
    assert (d.module, d.evidence["finding"], d.severity) == (module, finding, severity)


def _set(optimizer, **values):
    """What torch's constructors refuse, a schedule or a hand edit of param_groups can still set."""
    optimizer.param_groups[0].update(values)
    return optimizer


@pytest.mark.parametrize("make, finding", [
    (lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=1.0), "momentum"),
    (lambda m: _set(torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9), momentum=-0.1), "momentum"),
    (lambda m: torch.optim.Adam(m.parameters(), lr=0.0), "lr"),
    (lambda m: _set(torch.optim.Adam(m.parameters(), lr=1e-3), lr=-1e-3), "lr"),
    (lambda m: _set(torch.optim.Adam(m.parameters()), betas=(0.9, 1.0)), "beta2"),
    (lambda m: torch.optim.Adam(m.half().parameters(), lr=1e-3), "eps"),
])
def test_nn803_names_the_value(make, finding):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    optimizer = make(model)
    dtype = next(model.parameters()).dtype   # float16 for the eps case
    report = nnlint.check(model, torch.randn(4, 8, dtype=dtype), optimizer=optimizer, select=["NN803"])
    assert [d.evidence["finding"] for d in report.diagnostics] == [finding]


def test_nn803_quiet_on_healthy_hyperparameters():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    for make in USUAL.values():
        assert nnlint.check(model, torch.randn(4, 8), optimizer=make(model), select=["NN803"]).diagnostics == []


# ----- the first update ---------------------------------------------------------------------------


@pytest.mark.parametrize("case, finding, lo, hi", [
    ("sgd_lr_1e-5", "low", 1e-6, 5e-6), ("sgd_lr_1e-7", "low", 5e-9, 5e-8), ("sgd_lr_10", "high", 1.1, 4.5)])
def test_nn804_measures_the_ratio_and_names_the_learning_rate(case, finding, lo, hi):
    ds = found(gallery(case), "NN804")
    assert {d.module for d in ds} == {"0", "2"}
    for d in ds:
        assert d.evidence["finding"] == finding and lo <= d.evidence["ratio"] <= hi
        # the median layer at 1e-3: SGD's update is linear in lr
        assert d.evidence["suggested_lr"] == pytest.approx(d.evidence["lr"] * 1e-3 / d.evidence["median_ratio"], rel=0.05)
        assert f"lr={d.evidence['suggested_lr']:g}" in d.message


@pytest.mark.parametrize("case", ["sgd_classifier", "sgd_momentum_classifier", "adamw_classifier", "classifier",
                                  "tt2_frozen_layer", "sgd_param_groups", "adamw_param_groups", "tiny_lm"])
def test_nn804_quiet_on_the_healthy_gallery(case):
    assert found(gallery(case), "NN804") == []


@pytest.mark.parametrize("factory", HEALTHY, ids=[f.__name__ for f in HEALTHY])
def test_nn804_quiet_on_the_healthy_zoo_with_the_usual_optimizers(factory):
    case = factory()
    # every optimizer on every model up to 5M parameters; the big ones (ResNet-50, DenseNet, GPT-2)
    # with the two they are trained with: the suite's time goes to five full checks of each otherwise
    big = sum(p.numel() for p in case.model.parameters()) > 5_000_000
    for name, make in USUAL.items():
        if big and name not in ("sgd_momentum", "adamw"):
            continue
        report = nnlint.check(case.model, case.batch, target=case.target, loss_fn=case.loss_fn,
                              optimizer=make(case.model), select=["NN804"])
        assert report.diagnostics == [], (name, [d.message for d in report.diagnostics])
        data = report.trace.probes["update_ratio"]
        assert data["params"], name   # measured (a surrogate-loss SGD step is measured, then not judged)


def test_nn804_judges_a_normalized_update_on_the_surrogate_but_not_sgd():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    tiny_adam = nnlint.check(model, torch.randn(16, 32), optimizer=torch.optim.Adam(model.parameters(), lr=1e-8),
                             select=["NN804"])
    assert found(tiny_adam, "NN804") and tiny_adam.trace.probes["update_ratio"]["scale_response"] == pytest.approx(1, abs=0.01)
    tiny_sgd = nnlint.check(model, torch.randn(16, 32), optimizer=torch.optim.SGD(model.parameters(), lr=1e-8),
                            select=["NN804"])
    assert found(tiny_sgd, "NN804") == [] and tiny_sgd.trace.probes["update_ratio"]["scale_response"] > 2   # ~4, rounding at lr 1e-8


def _snapshot(model, optimizer):
    return (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), torch.get_rng_state(),
            {n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()})


def _assert_same(before, after):
    (m0, o0, r0, g0), (m1, o1, r1, g1) = before, after
    for k in m0:
        assert torch.equal(m0[k], m1[k]), k
    assert o0["param_groups"] == o1["param_groups"]
    for p, state in o0["state"].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(o1["state"][p][k])), (p, k)
    assert torch.equal(r0, r1)
    for n in g0:
        assert (g0[n] is None and g1[n] is None) or torch.equal(g0[n], g1[n]), n


@pytest.mark.parametrize("make", [USUAL["adamw"], USUAL["sgd_momentum"], USUAL["lion"]])
def test_probes_leave_model_optimizer_state_and_rng_bit_identical(make):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
    optimizer = make(model)
    x, y = torch.randn(16, 32), torch.randint(0, 10, (16,))
    F.cross_entropy(model(x), y).backward()
    optimizer.step()                                   # a resumed optimizer: state and a held gradient
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)   # it wraps optimizer.step on the instance
    before = _snapshot(model, optimizer)
    report = nnlint.check(model, x, target=y, loss_fn=F.cross_entropy, optimizer=optimizer, steps=5,
                          frozen=["0"], select=["NN8"])
    assert report.trace.probes["update_ratio"]["params"] and report.trace.probes["train_steps"]["ran"] == 5
    _assert_same(before, _snapshot(model, optimizer))
    assert scheduler.last_epoch == 0 and not getattr(optimizer, "_opt_called", False)


# ----- the training probe -------------------------------------------------------------------------


def test_nn805_inverted_objective_and_non_finite_step():
    [flipped] = found(gallery("flipped_loss_sign", steps=50), "NN805")
    assert flipped.evidence["finding"] == "inverted" and "cross-entropy" in flipped.message
    [nan] = found(gallery("nan_after_steps", steps=50), "NN805")
    assert nan.evidence["finding"] == "nonfinite" and nan.evidence["param"] == "var"
    assert nan.evidence["op"] == "SqrtBackward0" and 20 <= nan.evidence["step"] <= 40
    assert "ms each" in nan.message   # what the probe cost


def test_nn805_no_progress_and_quiet_on_a_model_that_learns():
    [flat] = found(gallery("sgd_lr_1e-7", steps=50), "NN805")
    assert flat.evidence["finding"] == "no_progress"
    assert found(gallery("classifier", steps=50), "NN805") == []
    [slow] = found(gallery("sgd_lr_1e-5", steps=50), "NN805")
    assert slow.evidence["finding"] == "no_progress"   # 0.019% in 50 steps


def test_nn805_quiet_on_a_healthy_model_that_learns_slowly():
    """torch-audit demo_cv's conv net on noise images under SGD lr 1e-2: its global-pooled features
    barely differ between images, yet the loss falls steadily, 0.67% in 50 steps (30x the lr-1e-5 bug)."""
    report = gallery("small_convnet", steps=50)
    assert found(report, "NN805") == []
    losses = report.trace.probes["train_steps"]["losses"]
    assert 0.003 < 1 - losses[-1] / losses[0] < 0.01


def test_nn806_frozen_that_trains_and_parameters_that_never_change():
    [trains] = found(gallery("frozen_backbone_trains", steps=50, frozen=["0"]), "NN806")
    assert trains.module == "0" and trains.evidence["finding"] == "frozen_changed"
    [static] = found(gallery("frozen_backbone_trains", frozen=["0"]), "NN806")   # no probe: the setup says it
    assert static.module == "0" and static.evidence["finding"] == "frozen_trainable"
    assert found(gallery("frozen_backbone", steps=50, frozen=["0"]), "NN806") == []
    [never] = found(gallery("head_replaced_after_optimizer", steps=10), "NN806")
    assert never.module == "2" and "no parameter group" in never.message


def test_steps_must_be_a_positive_number():
    with pytest.raises(nnlint.NNLintError, match="positive"):
        nnlint.check(nn.Linear(2, 2), torch.randn(3, 2), steps=0)


# ----- the source fixes -----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture, code, edit", [
    # NN506's decay groups (AdamW decays the biases) are built from model.parameters() too: both clear
    ("optimizer_params_forgotten.py", "NN801", "return torch.optim.AdamW([{\"params\": [p for p in model.parameters()"),
    ("mode_sgd_decays_norms.py", "NN506", '"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 0.0001'),
    ("loop_missing_zero_grad.py", "NN807", "    for x, y in batches:\n        optimizer.zero_grad(set_to_none=True)\n"),
    ("loop_eval_mode.py", "NN808", "    model.train()\n    for x, y in batches:\n"),
])
def test_source_fixes_are_placed_and_verified(fixture, code, edit):
    from nnlint.fix.filefix import fix_file

    run = fix_file(Path(__file__).resolve().parent.parent / "fixtures" / fixture)
    assert edit in run.fixed
    assert code in {o.diagnostic.code for o in run.result.applied}   # the re-check of the edited file cleared it
    assert code not in {d.code for d in run.result.report.diagnostics}
