"""NN704 collapsed-linear, NN705 unused-module, NN706 stateful-module-reuse, NN707 bias-before-norm and
NN204 improper-hidden-activation: structure read from the trace.

Each fires on the planted fault, on the right module, with the number that proves it; stays quiet on
the healthy twin and on the intentional patterns of real architectures; quiet on the healthy zoo and
on tiny Hugging Face models.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint

CODES = ["NN204", "NN704", "NN705", "NN706", "NN707"]


def check(model, batch, codes=CODES, **kwargs):
    torch.manual_seed(0)
    return nnlint.check(model, batch, select=codes, **kwargs).diagnostics


def found(diagnostics, code):
    return [d for d in diagnostics if d.code == code]


def seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


def x(n=32, d=32):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------
# NN704 collapsed-linear


def test_nn704_two_linears_with_nothing_between_and_the_relu_twin():
    (d,) = found(check(seeded(lambda: nn.Sequential(nn.Linear(32, 64), nn.Linear(64, 10))), x()), "NN704")
    assert d.module == "0" and d.message.startswith("0 -> 1") and "Linear(32 -> 64) then Linear(64 -> 10)" in d.message
    assert found(check(seeded(lambda: nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))), x()), "NN704") == []


def test_nn704_views_dropout_a_norm_and_a_residual_of_its_own_input_do_not_count_as_nonlinearities():
    class Through(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(32, 32)
            self.norm = nn.LayerNorm(32)
            self.drop = nn.Dropout(0.1)
            self.fc2 = nn.Linear(32, 32)
            self.out = nn.Linear(32, 10)

        def forward(self, x):
            h = self.drop(self.norm(x + self.fc1(x))).view(x.shape[0], 4, 8).flatten(1)
            return self.out(torch.relu(self.fc2(h)))

    (d,) = found(check(seeded(Through), x()), "NN704")
    assert d.module == "fc1" and "fc1 -> fc2" in d.message
    assert {"add", "norm", "dropout", "view"} <= set(d.evidence["between"])


@pytest.mark.parametrize("name, make, batch", [
    ("swiglu", lambda: SwiGLU(), (32, 32)),
    ("bottleneck factorization", lambda: nn.Sequential(nn.Linear(64, 8), nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4)),
     (32, 64)),
    ("depthwise separable", lambda: DepthwiseSeparable(), (8, 8, 16, 16)),
    ("final projection after a norm", lambda: nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.Linear(64, 10)),
     (32, 32)),
    ("attention v then output", lambda: Attention(), (8, 16, 32)),
    ("residual stream", lambda: ResidualStream(), (32, 32)),
])
def test_nn704_leaves_intentional_patterns_alone(name, make, batch):
    assert found(check(seeded(make), torch.randn(*batch)), "NN704") == [], name


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(32, 64), nn.Linear(32, 64), nn.Linear(64, 32)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))   # up's output is gated by its own input


class DepthwiseSeparable(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.norm = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 32, 1)

    def forward(self, x):
        return torch.relu(self.pw(self.norm(self.dw(x)))).mean((2, 3))


class Attention(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        a = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), dim=-1)
        return self.o(a @ self.v(x))


class ResidualStream(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)) for _ in range(2))
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        for block in self.blocks:
            x = x + block(torch.relu(x))               # the branch's last layer meets the stream
        return self.head(x)


# ---------------------------------------------------------------------------------------------
# NN705 unused-module (and NN406 leaving it alone)


class WithGhost(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)
        self.ghost = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4))

    def forward(self, x):
        return self.head(self.features(x))


def test_nn705_reports_the_unused_container_once_and_nn406_says_nothing_about_it():
    diags = check(seeded(WithGhost), x(), codes=["NN705", "NN406"])
    (d,) = found(diags, "NN705")
    assert d.module == "ghost" and d.severity == "warning" and f"{128 * 128 + 128 + 128 * 4 + 4:,}" in d.message
    assert found(diags, "NN406") == []
    # on its own, NN406 leaves it to NN705 too: one cause, one finding
    assert found(check(seeded(WithGhost), x(), codes=["NN406"]), "NN406") == []


def test_nn705_tied_weights_frozen_modules_and_functional_use_are_not_unused():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            self.lm_head = nn.Linear(16, 50, bias=False)
            self.lm_head.weight = self.emb.weight     # tied, as in GPT-2
            self.frozen = nn.Linear(16, 16).requires_grad_(False)
            self.extra = nn.Linear(16, 16)

        def forward(self, ids):
            h = self.emb(ids)
            h = F.linear(h, self.extra.weight, self.extra.bias)   # used without calling the module
            return h @ self.emb.weight.T

    ids = torch.randint(0, 50, (4, 8))
    assert found(check(seeded(Tied), ids), "NN705") == []


# ---------------------------------------------------------------------------------------------
# NN706 stateful-module-reuse


class SharedNorm(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, 64, bias=False), nn.Linear(64, 64, bias=False)
        self.norm = norm
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.norm(self.fc1(x)))
        return self.head(torch.relu(self.norm(self.fc2(x))))


def test_nn706_a_batchnorm_called_twice_and_a_layernorm_shared_on_purpose():
    (d,) = found(check(seeded(lambda: SharedNorm(nn.BatchNorm1d(64))), x()), "NN706")
    assert d.module == "norm" and "called at 2 places" in d.message and "after fc1, after fc2" in d.message
    assert d.evidence["buffers"] == ["num_batches_tracked", "running_mean", "running_var"]
    assert found(check(seeded(lambda: SharedNorm(nn.LayerNorm(64))), x()), "NN706") == []


def test_nn706_any_module_that_updates_a_buffer_counts():
    class RunningMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.zeros(64))

        def forward(self, x):
            if self.training:
                with torch.no_grad():
                    self.mean.mul_(0.9).add_(0.1 * x.mean(0))
            return x - self.mean

    (d,) = found(check(seeded(lambda: SharedNorm(RunningMean())), x()), "NN706")
    assert d.evidence["buffers"] == ["mean"]


# ---------------------------------------------------------------------------------------------
# NN707 bias-before-norm


@pytest.mark.parametrize("norm, fires", [
    (lambda: nn.BatchNorm2d(16), True),
    (lambda: nn.InstanceNorm2d(16, affine=True), True),
    (lambda: nn.GroupNorm(16, 16), True),          # one channel per group: InstanceNorm
    (lambda: nn.GroupNorm(4, 16), False),          # a group's mean: the bias's spread survives
])
def test_nn707_which_norms_cancel_a_conv_bias(norm, fires):
    model = seeded(lambda: nn.Sequential(nn.Conv2d(3, 16, 3), norm(), nn.ReLU()))
    diags = found(check(model, torch.randn(8, 3, 16, 16)), "NN707")
    assert [d.module for d in diags] == (["0"] if fires else [])
    if fires:
        assert diags[0].severity == "info" and diags[0].fix.kind == "drop_bias" and "bias=False" in diags[0].message


def test_nn707_layernorm_rmsnorm_and_a_residual_add_in_between_are_not_reported():
    class PostLN(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(32, 32)
            self.norm = nn.LayerNorm(32)
            self.fc = nn.Linear(32, 32)
            self.bn = nn.BatchNorm1d(32)

        def forward(self, x):
            h = self.norm(self.dense(x) + x)           # BERT's add & norm
            return self.bn(self.fc(h) + h)             # an add between the layer and the BatchNorm

    assert found(check(seeded(PostLN), x()), "NN707") == []
    ln = seeded(lambda: nn.Sequential(nn.Linear(32, 32), nn.LayerNorm(32)))
    assert found(check(ln, x()), "NN707") == []


def test_nn707_fix_removes_the_bias_and_the_output_is_unchanged():
    model = seeded(lambda: nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16)))
    batch = x()
    before = model(batch)
    result = nnlint.fix(model, batch, unsafe=True, select=["NN707"])
    assert model[0].bias is None and found(result.report.diagnostics, "NN707") == []
    assert torch.allclose(model(batch), before, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# NN204 improper-hidden-activation


class Hidden(nn.Module):
    def __init__(self, act, width=64):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, width), nn.Linear(width, 10)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("act, what", [
    (torch.exp, "exp"),
    (lambda h: h ** 2, "x**2"),
    (lambda h: torch.pow(h, 3), "x**3"),
    (nn.Softmax(dim=1), "softmax"),
    (lambda h: F.log_softmax(h, dim=-1), "log_softmax"),
])
def test_nn204_exp_powers_and_softmax_over_features(act, what):
    (d,) = found(check(seeded(lambda: Hidden(act)), x()), "NN204")
    assert d.evidence["activation"] == what and "fc1 -> " in d.message and d.fix.kind == "swap_activation"
    assert d.severity == "warning"


def test_nn204_softmax_message_quotes_the_simplex_and_a_module_is_named():
    (d,) = found(check(seeded(lambda: nn.Sequential(nn.Linear(32, 64), nn.Softmax(dim=1), nn.Linear(64, 10))), x()),
                 "NN204")
    assert d.module == "1" and "1/64 = 0.016" in d.message and "mean 0.016" in d.message


def test_nn204_an_overflowing_exp_is_an_error():
    model = seeded(lambda: Hidden(torch.exp))
    with torch.no_grad():
        model.fc1.weight.mul_(100)
    (d,) = found(check(model, x()), "NN204")
    assert d.severity == "error" and d.evidence["overflow"]


@pytest.mark.parametrize("name, make, batch", [
    ("gelu tanh formula (pow 3)", lambda: Hidden(lambda h: 0.5 * h * (1 + torch.tanh(0.79788 * (h + 0.044715 * torch.pow(h, 3))))), None),
    ("rmsnorm pow 2", lambda: RMSNormMLP(), None),
    ("attention softmax", lambda: Attention(), torch.randn(8, 16, 32)),
    ("exp output (Poisson rate)", lambda: nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1), Exp()), None),
    ("learned temperature", lambda: Temperature(), None),
    ("gate", lambda: Gate(), None),
    ("final softmax", lambda: nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10), nn.Softmax(dim=1)), None),
])
def test_nn204_leaves_intentional_uses_alone(name, make, batch):
    assert found(check(seeded(make), x() if batch is None else batch), "NN204") == [], name


class Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class RMSNormMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(32, 64), RMSNorm(64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.norm(self.fc1(x))))


class Temperature(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 16)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)) * self.logit_scale.exp())


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.gate, self.head = nn.Linear(32, 16), nn.Linear(32, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)) * torch.softmax(self.gate(x), dim=-1))
