"""The models nnlint is tested on, checked with plain torch: every zoo case (tests/zoo) and every
fixture (fixtures/) builds, runs a forward and backward pass, is deterministic, and really has the
property it is meant to show, measured directly (stream variance per block, saturation, dead units,
input statistics). Nothing here uses nnlint's rules: a rule that disagrees with these numbers is
wrong, not the model.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from zoo import FAULTY, HEALTHY, convnets, mlp, resnet, transformer, vgg
from zoo.measure import (FIXTURES, SIGMOID_FLAT, TANH_FLAT, block_variances, branch_gains, call,
                         capture, channel_stats, dead_fraction, load_fixture, median_std,
                         off_center_fraction, relu_dead_fractions, train_step, weight_layer_stds)

CODE = re.compile(r"NN\d{3}")


def _ids(factories):
    return [f.__name__ for f in factories]


# ----- every zoo case ------------------------------------------------------------------------------

@pytest.mark.parametrize("factory", HEALTHY + FAULTY, ids=_ids(HEALTHY + FAULTY))
def test_zoo_case_runs_forward_and_backward(factory):
    case = factory()
    loss = train_step(case.model, case.batch, case.loss_fn, case.target)
    assert torch.isfinite(loss)
    cut = tuple(f"{module}." for module in case.expect.get("NN406", []))
    for name, p in case.model.named_parameters():
        if not p.requires_grad:
            continue
        if cut and name.startswith(cut):
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("factory", HEALTHY + FAULTY, ids=_ids(HEALTHY + FAULTY))
def test_zoo_case_says_what_must_fire_where(factory):
    case = factory()
    modules = {name for name, _ in case.model.named_modules()}
    if factory in HEALTHY:
        assert case.expect == {}
    else:
        assert case.expect and all(case.expect.values())
    for codes in (case.expect, case.consequences):
        for code, names in codes.items():
            assert CODE.fullmatch(code)
            assert set(names) <= modules, set(names) - modules     # "" (the whole model) is a module name


@pytest.mark.parametrize("factory", HEALTHY + FAULTY, ids=_ids(HEALTHY + FAULTY))
def test_zoo_case_is_deterministic_and_leaves_the_global_rng_alone(factory):
    before = torch.get_rng_state()
    a, b = factory(), factory()
    assert torch.equal(torch.get_rng_state(), before)
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name
    assert all(torch.equal(x, y) for x, y in zip(_tensors(a.batch), _tensors(b.batch)))


def _model_batch(case):
    return case.model, case.batch


def _tensors(batch) -> list[torch.Tensor]:
    if isinstance(batch, dict):
        return list(batch.values())
    return list(batch) if isinstance(batch, (tuple, list)) else [batch]


# ----- residual streams (NN403's calibration) ----------------------------------------------------

def _stage_factors(case) -> dict[str, float]:
    """Per identity block: Var(out) / Var(in)."""
    names = resnet.identity_blocks(case.model)
    return {n: o / i for n, (i, o) in zip(names, block_variances(case.model, case.batch, names))}


@pytest.mark.parametrize("factory", [resnet.resnet18_bn, resnet.resnet50_bn])
def test_batchnorm_resnet_stream_grows_additively_within_a_stage(factory):
    case = factory()
    factors = _stage_factors(case)
    # The first block of each stage is reset by its downsample branch (or, in resnet18's layer1,
    # fed by the max-pooled stem: 1.86x there); after it each BN-ended branch adds a roughly
    # constant variance, so the factor shrinks along the stage (ResNet-50 layer3: 1.47, 1.35, ...).
    later = {n: f for n, f in factors.items() if not n.endswith(".0")}
    assert later and all(1.0 < f < 1.6 for f in later.values()), later


def test_zero_init_residual_resnet_is_flat_within_a_stage():
    factors = _stage_factors(resnet.resnet50_zero_init_residual())
    assert all(abs(f - 1) < 1e-5 for f in factors.values()), factors


@pytest.mark.parametrize("factory", [resnet.resnet50_no_norm, resnet.resnet18_no_norm])
def test_no_norm_resnet_blocks_that_must_fire_nn403_measure_as_such(factory):
    case = factory()
    must = case.expect["NN403"]
    gains = branch_gains(case.model, case.batch, must, resnet.branch_end(case.model))
    assert min(gains) >= 0.5, gains                                          # NN403's criterion
    factors = [o / i for i, o in block_variances(case.model, case.batch, must)]
    # The run grows geometrically (the last block of a run may add less, e.g. 1.12 with gain 0.6).
    assert math.prod(factors) ** (1 / len(factors)) > 1.3, factors


def test_no_norm_resnet50_stream_grows_geometrically():
    case = resnet.resnet50_no_norm()
    factors = list(_stage_factors(case).values())
    assert math.prod(factors) ** (1 / len(factors)) > 1.5, factors           # NN403's evidence: about 2x per block
    bv = block_variances(case.model, case.batch, resnet.blocks(case.model))
    assert bv[-1][1] / bv[0][0] > 100                                        # NN403's evidence: 30,000x at full size


@pytest.mark.parametrize("factory, kind", [(transformer.gpt2, transformer.GPT2Block),
                                           (transformer.llama, transformer.LlamaDecoderLayer)])
def test_pre_norm_transformer_grows_a_tiny_stream_by_constant_increments(factory, kind):
    """The trap for a growth-only NN403: large early factors and >10x in all, yet healthy."""
    case = factory()
    names = [n for n, m in case.model.named_modules() if isinstance(m, kind)]
    bv = block_variances(case.model, case.batch, names)
    increments = [o - i for i, o in bv]
    assert bv[0][0] < 0.002                                                  # the 0.02-std embedding
    assert bv[0][1] / bv[0][0] > 3 and bv[-1][1] / bv[0][0] > 10
    assert min(increments) > 0 and max(increments) / min(increments) < 5     # additive, not geometric
    assert increments[-1] / increments[len(increments) // 2] < 2


def test_post_norm_bert_stream_has_unit_variance_after_every_layer():
    case = transformer.bert()
    names = [n for n, m in case.model.named_modules() if isinstance(m, transformer.BertLayer)]
    assert all(abs(o - 1) < 0.02 for _, o in block_variances(case.model, case.batch, names))


def test_convnext_layer_scale_keeps_each_stage_flat():
    case = convnets.convnext()
    names = [n for n, m in case.model.named_modules() if isinstance(m, convnets.ConvNeXtBlock)]
    assert all(abs(o / i - 1) < 1e-3 for i, o in block_variances(case.model, case.batch, names))


@pytest.mark.parametrize("factory", [convnets.mobilenet_v3, convnets.efficientnet])
def test_inverted_residuals_double_the_stream_through_a_batchnorm_branch(factory):
    """Healthy, yet x2 per block like the no-norm ResNet: the branch ends in BatchNorm (variance 1
    added to a stream of variance 1), which is what NN403 must look at, not the factor alone."""
    case = factory()
    names = convnets.residual_blocks(case.model)
    assert names
    for name in names:
        assert isinstance(case.model.get_submodule(name).block[-1][1], nn.BatchNorm2d)
    assert all(1.7 < o / i < 2.3 for i, o in block_variances(case.model, case.batch, names))


# ----- signal through depth, activations --------------------------------------------------------------

def test_vgg_kaiming_fan_out_keeps_the_signal_and_small_init_collapses_it():
    healthy = [s for _, s in weight_layer_stds(*_model_batch(vgg.vgg11()))]
    assert all(0.1 < s < 1.0 for s in healthy), healthy                    # NN401's evidence: 0.2-0.43 at full size
    collapsed = [s for _, s in weight_layer_stds(*_model_batch(vgg.vgg11_small_init()))]
    steps = [b / a for a, b in zip(collapsed, collapsed[1:])]
    assert collapsed[-1] / collapsed[0] < 1e-6 and max(steps[:7]) < 0.2, collapsed


def test_kaiming_mlp_keeps_its_activation_scale():
    stds = [s for _, s in weight_layer_stds(*_model_batch(mlp.mlp_kaiming()))]
    assert all(0.7 < s < 2.0 for s in stds), stds


def test_deep_tanh_with_unit_weights_saturates_every_layer():
    case = mlp.deep_tanh_unit_weights()
    inputs = capture(case.model, case.batch, mlp.activations(case.model, nn.Tanh), inputs=True)
    fractions = [(z[0].abs() > TANH_FLAT).float().mean().item() for z in inputs.values()]
    assert all(f > 0.5 for f in fractions), fractions


@pytest.mark.parametrize("factory", [mlp.mlp_kaiming, resnet.resnet18_bn, resnet.resnet50_bn, convnets.densenet])
def test_healthy_relu_nets_have_no_dead_layer(factory):
    case = factory()
    dead = relu_dead_fractions(case.model, case.batch)
    assert dead and max(dead.values()) < 0.2, dead


def test_detached_backbone_gets_no_gradient_but_the_head_does():
    case = resnet.resnet18_detached_backbone()
    train_step(case.model, case.batch)
    assert all(p.grad is None for p in case.model.features.parameters())
    assert all(p.grad is not None for p in case.model.head.parameters())


def test_batchnorm_without_running_stats_everywhere():
    case = resnet.resnet18_no_running_stats()
    bns = [m for m in case.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.track_running_stats and m.running_mean is None for m in bns)
    assert sorted(case.expect["NN503"]) == sorted(n for n, m in case.model.named_modules() if m in bns)


def test_sgd_decays_norm_weights_and_biases():
    case = resnet.resnet18_sgd_weight_decay_everywhere()
    decayed = {id(p) for g in case.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert all(id(p) in decayed for p in case.model.parameters())
    assert any(p.dim() == 1 for p in case.model.parameters())               # norm weights and biases among them


# ----- fixtures -----------------------------------------------------------------------------------------

FIXTURE_FILES = sorted(p for p in FIXTURES.glob("*.py"))
MARKER = re.compile(r"#\s*expect:\s*([^#\n]*)")


def _markers(path: Path) -> dict[int, list[str]]:
    """line -> codes, from `# expect: NN202, NN201` (or repeated `# expect: NN304  # expect: NN103`)."""
    out: dict[int, list[str]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        for m in MARKER.finditer(line):
            out.setdefault(i, []).extend(t for t in re.split(r"[,\s]+", m.group(1).strip()) if t)
    return out


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_fixture_markers_are_well_formed(path):
    markers = _markers(path)
    codes = [c for cs in markers.values() for c in cs]
    assert codes, f"{path.name}: no `# expect:` marker (a healthy file says `# expect: clean`)"
    if "clean" in codes:
        assert codes == ["clean"], f"{path.name}: `clean` together with codes"
    else:
        assert all(CODE.fullmatch(c) for c in codes), codes
    assert '"""' in path.read_text().split("\n", 1)[0], f"{path.name}: starts without a docstring"


# Fixtures of objective faults on which plain torch raises (nnlint reports them instead of "could not run").
STEP_RAISES = {
    "objective_label_out_of_range": (IndexError, "out of bounds"),
    "objective_one_hot_targets": (RuntimeError, "Expected floating point type for target"),
    "objective_raw_scores_bce": (RuntimeError, "between 0 and 1"),
    "objective_unreduced_loss": (RuntimeError, "only for scalar outputs"),
}


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_fixture_builds_runs_and_is_deterministic(path):
    f, again = load_fixture(path), load_fixture(path)
    for (name, x), (_, y) in zip(f.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(x, y), name
    assert all(torch.equal(x, y) for x, y in zip(_tensors(f.batch), _tensors(again.batch)))
    if path.stem in STEP_RAISES:   # the planted fault is one that makes a plain training step crash
        with pytest.raises(STEP_RAISES[path.stem][0], match=STEP_RAISES[path.stem][1]):
            train_step(f.model, f.batch, f.loss_fn, f.target)
        return
    loss = train_step(f.model, f.batch, f.loss_fn, f.target)
    planted_nan = any("NN002" in cs for cs in _markers(path).values())
    assert bool(torch.isfinite(loss)) != planted_nan


def _fixture(name: str):
    return load_fixture(FIXTURES / f"{name}.py")


def _inputs_of(f, names: list[str]) -> dict[str, torch.Tensor]:
    return {n: z[0] for n, z in capture(f.model, f.batch, names, inputs=True).items()}


def _outputs_of(f, names: list[str]) -> dict[str, torch.Tensor]:
    return {n: z[0] for n, z in capture(f.model, f.batch, names).items()}


def _flat(z: torch.Tensor, threshold: float) -> float:
    return (z.abs() > threshold).float().mean().item()


def test_tanh_mlp_fixture_has_all_four_faults():
    f = _fixture("tanh_mlp")
    x = f.batch
    assert 0.10 < x.mean().item() < 0.16 and 0.27 < x.std().item() < 0.34        # MNIST-like pixels
    assert off_center_fraction(x) > 0.5 and 0.2 < median_std(x) < 5               # NN301, not NN302
    assert abs(f.model.fc1.weight.std().item() - 0.5) < 0.01                      # NN103
    assert _flat(_inputs_of(f, ["act1"])["act1"], TANH_FLAT) > 0.5                # NN202 (error)
    assert torch.count_nonzero(f.model.fc2.weight) == 0                           # NN101
    assert _flat(_inputs_of(f, ["act2"])["act2"], TANH_FLAT) < 0.2                # act2: only NN201


@pytest.mark.parametrize("faulty, healthy", [("init_zero_hidden_layer", "init_xavier_hidden_layer")])
def test_zero_hidden_layer_fixture(faulty, healthy):
    assert torch.count_nonzero(_fixture(faulty).model.embed.weight) == 0
    assert torch.count_nonzero(_fixture(healthy).model.embed.weight) > 0


def test_constant_fill_fixture_has_identical_rows():
    w = _fixture("init_constant_fill").model.fc1.weight
    assert torch.equal(w, w[:1].expand_as(w))
    w = _fixture("init_random_fill").model.fc1.weight
    assert not torch.equal(w[0], w[1])


def test_sigmoid_fixtures_are_not_saturated():
    f = _fixture("activation_sigmoid_hidden")
    assert _flat(_inputs_of(f, ["act1"])["act1"], SIGMOID_FLAT) < 0.05           # NN201 alone
    g = _fixture("activation_sigmoid_gate")
    z = _outputs_of(g, ["se.fc2", "head"])
    assert _flat(z["se.fc2"], SIGMOID_FLAT) < 0.2 and _flat(z["head"], SIGMOID_FLAT) < 0.2
    assert dead_fraction(_outputs_of(g, ["se.fc1"])["se.fc1"].clamp(min=0)) < 0.2


def test_saturated_tanh_fixture_and_its_twin():
    assert _flat(_outputs_of(_fixture("activation_saturated_tanh"), ["mu"])["mu"], TANH_FLAT) > 0.5
    assert _flat(_outputs_of(_fixture("activation_tanh_xavier"), ["mu"])["mu"], TANH_FLAT) < 0.2


@pytest.mark.parametrize("faulty, healthy, relu", [("activation_dead_relu_cnn", "activation_relu_cnn_kaiming", "relu2"),
                                                   ("activation_dead_relu_mlp", "activation_relu_mlp_kaiming", "act1")])
def test_dead_relu_fixtures_and_their_twins(faulty, healthy, relu):
    dead = dead_fraction(_outputs_of(_fixture(faulty), [relu])[relu])
    # Most units dead (NN203, error), but not all: the layer feeding them still gets a gradient, so
    # the fixture shows NN203 alone and not NN406's exactly-zero gradient too.
    assert 0.5 < dead < 1.0
    assert dead_fraction(_outputs_of(_fixture(healthy), [relu])[relu]) < 0.2


def test_input_fixtures_measure_as_planted():
    uncentered = _fixture("data_uncentered_images").batch
    assert off_center_fraction(uncentered) == 1.0 and 0.2 < median_std(uncentered) < 5
    assert abs(uncentered.mean().item() - 0.45) < 0.01
    raw = _fixture("data_unscaled_pixels").batch
    assert median_std(raw) > 5 and off_center_fraction(raw) == 1.0
    for healthy in ("data_normalized_images", "data_scaled_pixels"):
        x = _fixture(healthy).batch
        mean, std = channel_stats(x)
        assert mean.abs().max() < 1e-3 and (std - 1).abs().max() < 1e-3


def test_dropout_fixtures_in_eval_mode():
    for name, random_in_eval in (("mode_dropout_active_in_eval", True), ("mode_dropout_follows_mode", False)):
        f = _fixture(name)
        f.model.eval()
        with torch.no_grad():
            differs = not torch.equal(call(f.model, f.batch), call(f.model, f.batch))
        assert differs == random_in_eval, name


def test_mode_fixtures():
    mixed = _fixture("mode_mixed_train_eval").model
    assert not mixed.training and mixed.bn1.training
    assert [n for n, m in mixed.named_modules() if m.training] == ["bn1"]
    consistent = _fixture("mode_consistent_eval").model
    assert not any(m.training for m in consistent.modules())


def test_log_fixtures():
    f = _fixture("meta_log_of_negative")
    with torch.no_grad():
        assert torch.isnan(call(f.model, f.batch)).any() and (f.batch < 0).any()
    g = _fixture("meta_log1p_counts")
    assert not g.batch.is_floating_point() and (g.batch >= 0).all()
    with torch.no_grad():
        assert torch.isfinite(call(g.model, g.batch)).all()
