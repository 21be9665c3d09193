"""`check` never crashes, never mutates the model and is deterministic, on random architectures; bad
inputs get a clear error or a clear diagnostic."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnlint
from nnlint.errors import BatchMismatch, NNLintError
from model_state import assert_same, snapshot

ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Identity]
INITS = {
    "default": lambda w: None,
    "kaiming": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "xavier": nn.init.xavier_normal_,
    "zeros": nn.init.zeros_,
    "large": lambda w: nn.init.normal_(w, std=3.0),
    "constant": lambda w: nn.init.constant_(w, 0.1),
}


class Residual(nn.Module):
    def __init__(self, body, in_place):
        super().__init__()
        self.body, self.in_place = body, in_place

    def forward(self, x):
        if self.in_place:
            out = self.body(x)
            out += x
            return out
        return x + self.body(x)


class DictModel(nn.Module):
    """Takes a dict and returns a dict, like a Hugging Face model."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, pixel_values, scale=None):
        out = self.net(pixel_values)
        return {"logits": out, "aux": None, "hidden": [out * 2]}


@st.composite
def models(draw):
    kind = draw(st.sampled_from(["mlp", "cnn", "residual"]))
    depth = draw(st.integers(1, 4))
    width = draw(st.sampled_from([4, 8, 16]))
    act = draw(st.sampled_from(ACTIVATIONS))
    init = draw(st.sampled_from(sorted(INITS)))
    layers: list[nn.Module] = []
    if kind == "cnn":
        layers += [nn.Conv2d(3, width, 3, padding=1), act()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1)]
            if draw(st.booleans()):
                layers.append(nn.BatchNorm2d(width))
            layers.append(act())
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3)]
        shape = (8, 3, 6, 6)
    else:
        layers += [nn.Linear(5, width), act()]
        for _ in range(depth - 1):
            if kind == "residual":
                # The branch ends in a weight layer, as in torchvision, so `out += x` is legal autograd.
                layers += [Residual(nn.Sequential(nn.Linear(width, width), act(), nn.Linear(width, width)),
                                    draw(st.booleans())), act()]
            else:
                layers += [nn.Linear(width, width), act()]
        if draw(st.booleans()):
            layers.append(nn.Dropout(0.2))
        layers.append(nn.Linear(width, 3))
        shape = (8, 5)
    torch.manual_seed(draw(st.integers(0, 3)))
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            INITS[init](m.weight)
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    structure = draw(st.sampled_from(["tensor", "tuple", "dict"]))
    batch = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    model = model.to(dtype)
    if structure == "tuple":
        batch = (batch,)
    elif structure == "dict":
        model = DictModel(model)
        batch = {"pixel_values": batch}
    if draw(st.booleans()):
        model.eval()
    return model, batch


def findings(report):
    return sorted((d.code, d.module, d.severity, d.message) for d in report.diagnostics)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_random_models_never_crash_never_mutate_and_are_deterministic(case):
    model, batch = case
    before = snapshot(model)
    first = nnlint.check(model, batch)
    assert_same(before, snapshot(model))
    second = nnlint.check(model, batch)
    assert findings(first) == findings(second)
    for d in first.diagnostics:
        assert d.message and d.severity in ("error", "warning", "info")


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def test_nan_in_the_batch_is_a_diagnostic_about_the_input():
    report = nnlint.check(Small(), torch.full((16, 8), float("nan")))
    assert [d.code for d in report.diagnostics] == ["NN002"]
    assert "input" in report.diagnostics[0].message


def test_empty_batch_is_a_clear_error():
    with pytest.raises(NNLintError, match="the batch is empty"):
        nnlint.check(Small(), torch.randn(0, 8))


def test_wrong_dtype_names_both_dtypes():
    with pytest.raises(BatchMismatch, match=r"float64.*float32"):
        nnlint.check(Small(), torch.randn(16, 8, dtype=torch.float64))


def test_wrong_shape_names_the_layer_and_what_it_expects():
    with pytest.raises(BatchMismatch, match=r"fc \(Linear\) expects inputs whose last dimension is 8"):
        nnlint.check(Small(), torch.randn(16, 5))


def test_meta_device_runs_the_structural_rules_and_says_so():
    with torch.device("meta"):
        model = Small().eval()
        model.fc = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8).train())
    report = nnlint.check(model, torch.randn(16, 8, device="meta"))
    assert any("meta device" in n for n in report.notes)
    assert [d.code for d in report.diagnostics] == ["NN502"]


def test_tied_weights_buffers_and_user_hooks():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.head = nn.Linear(8, 20, bias=False)
            self.head.weight = self.embed.weight
            self.register_buffer("scale", torch.tensor(2.0))

        def forward(self, ids):
            return self.head(self.embed(ids) * self.scale)

    model = Tied()
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    before = snapshot(model)
    report = nnlint.check(model, torch.randint(0, 20, (4, 6)))
    assert_same(before, snapshot(model))
    assert report.trace.params["head.weight"].tied_to == "embed.weight"
    assert seen


def test_scripted_submodule_is_reported_as_incomplete():
    model = Small()
    model.fc = torch.jit.script(nn.Linear(8, 8))
    report = nnlint.check(model, torch.randn(16, 8))
    assert [(d.code, d.module) for d in report.diagnostics] == [("NN001", "fc")]


def test_compiled_submodule_is_traced_eagerly():
    model = Small()
    model.fc = torch.compile(model.fc, backend="eager")
    report = nnlint.check(model, torch.randn(16, 8))
    assert not report.by_code("NN001")
    assert any(op.kind == "linear" and op.module.startswith("fc") for op in report.trace.ops)


@pytest.mark.parametrize("output", ["none", "nested"])
def test_models_returning_none_or_nested_structures(output):
    class Odd(Small):
        def forward(self, x):
            y = super().forward(x)
            return None if output == "none" else {"a": [y, (y * 2, None)], "b": 3}

    report = nnlint.check(Odd(), torch.randn(16, 8))
    assert report.trace.backward_ran is (output == "nested")


def test_generator_and_list_batches():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 2), nn.Linear(3, 2)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    batches = [torch.randn(16, 4), torch.randn(16, 3)]
    assert nnlint.check(TwoInputs(), batches).trace.backward_ran
    assert nnlint.check(Small(), (t for t in [torch.randn(16, 8)])).trace.backward_ran


class DictForward(nn.Module):
    """`forward(self, data)` reading its inputs out of one dict, as graph and detection code does."""

    def __init__(self, leak: bool = False):
        super().__init__()
        self.leak = leak
        self.fc = nn.Linear(8, 4)
        nn.init.xavier_normal_(self.fc.weight)

    def forward(self, data):
        x = data["x"] * data["mask"].unsqueeze(-1)
        if self.leak:
            x = x - x.mean(0)          # every sample's output now depends on the others
        return self.fc(x)


def test_a_forward_that_takes_the_dict_whole_is_called_with_it_and_probed():
    torch.manual_seed(0)
    batch = {"x": torch.randn(16, 8), "mask": torch.ones(16)}
    healthy = nnlint.check(DictForward(), batch)
    assert [d for d in healthy.diagnostics if d.severity != "info"] == []
    leaky = nnlint.check(DictForward(leak=True), batch)
    assert [d.code for d in leaky.diagnostics if d.severity == "error"] == ["NN701"]
    # keywords still go in as keywords where forward names them
    assert nnlint.check(nn.Bilinear(8, 8, 4), {"input1": torch.randn(16, 8), "input2": torch.randn(16, 8)}).ok
