"""What the probes' runner and comparisons promise: a parameter the model's eval forward writes is
copied just before the write and put back bit for bit, a model that writes nothing costs no copy, and
a comparison's fast path judges non-finite values as the careful one does."""
import math

import pytest

torch = pytest.importorskip("torch")

from nnlint.probes import compare  # noqa: E402
from nnlint.trace.state import ParameterWrites  # noqa: E402


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


@pytest.mark.parametrize("write", [
    lambda m: m[0].weight.mul_(2),                       # an in-place method
    lambda m: m[0].weight.data.div_(3),                  # through .data
    lambda m: m[0].weight.__setitem__(0, 7.0),           # item assignment on the parameter
    lambda m: m[0].weight[1].zero_(),                    # a view of it
    lambda m: torch.add(m[2].bias, 1, out=m[2].bias),    # out=
])
def test_a_write_in_place_is_copied_before_and_put_back(write):
    m = net()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    writes = ParameterWrites(m)
    with torch.no_grad(), writes:
        write(m)
    changed = [n for n, p in m.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "the write did not happen"
    assert sorted(writes.restore()) == sorted(changed)
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())


def test_a_forward_that_writes_nothing_copies_nothing():
    m = net()
    writes = ParameterWrites(m)
    with torch.no_grad(), writes:
        y = m(torch.randn(5, 4))
        y.add_(1)                  # a write to an activation is not a parameter's
    assert writes.copies == {}
    assert writes.restore() == []


def test_the_comparisons_fast_path_agrees_with_the_careful_one_on_non_finite_values():
    a = torch.tensor([1.0, 2.0, 3.0])
    assert compare.delta(a, a + 0.5) == pytest.approx(0.5)
    assert compare.delta(a, torch.tensor([1.0, math.inf, 3.0])) == math.inf        # turned non-finite
    both = torch.tensor([1.0, math.nan, 3.0])
    assert compare.delta(both, both.clone()) == 0.0                                  # NaN on both sides: unknown
    assert compare.delta(both, both.clone(), unknown=math.inf) == math.inf
    assert compare.largest(torch.tensor([-4.0, 2.0])) == 4.0
    assert compare.largest(torch.tensor([-4.0, math.inf, math.nan])) == 4.0          # finite values only
    assert compare.largest(torch.tensor([])) == 0.0


class WithLabels(torch.nn.Module):
    """A Hugging Face-style model: the batch's labels are read only by the loss in forward."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        self.seen = []

    def forward(self, x, labels):
        if not self.training:
            self.seen.append((x.detach().clone(), labels.clone()))
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def test_no_probe_pass_changes_an_input_the_model_reads_only_as_a_loss_target():
    import nnlint

    torch.manual_seed(0)
    model = WithLabels()
    batch = {"x": torch.randn(6, 6), "labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    report = nnlint.check(model, batch, select=["NN701", "NN702"])
    assert not report.diagnostics, report.diagnostics
    probe_passes = model.seen
    assert probe_passes, "the dependence probes did not run"
    # every pass keeps sample 0's and 1's labels; the float input of sample 0 is still varied
    assert all(torch.equal(labels, batch["labels"][: len(labels)]) for _, labels in probe_passes)
    assert any(not torch.equal(x[0], batch["x"][0]) for x, _ in probe_passes)


def test_the_update_probe_samples_weight_matrices_not_per_channel_gains_stored_as_c11():
    from nnlint.initmath import is_weight_matrix
    from nnlint.probes.update_ratio import sampled_weights

    assert is_weight_matrix((8, 4)) and is_weight_matrix((8, 3, 3, 3)) and is_weight_matrix((1, 8))
    assert not is_weight_matrix((8, 1, 1)) and not is_weight_matrix((8,))
    conv = torch.nn.Conv2d(3, 8, 3)
    layer_scale = torch.nn.Parameter(torch.full((8, 1, 1), 1e-6))   # torchvision ConvNeXt's
    named = {id(conv.weight): "conv.weight", id(conv.bias): "conv.bias", id(layer_scale): "layer_scale"}
    optimizer = torch.optim.AdamW([conv.weight, conv.bias, layer_scale])
    gradients = {n: torch.ones(1) for n in named.values()}
    assert sampled_weights(optimizer, gradients, named, limit=16) == {id(conv.weight)}
