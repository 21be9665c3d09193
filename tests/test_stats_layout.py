"""The on-the-fly statistics read a tensor in whatever layout the model left it, and sample very large
maps: the numbers must not depend on either."""
import math

import pytest

torch = pytest.importorskip("torch")

from nnlint.trace import stats  # noqa: E402


def summary(x):
    pending, out = stats.PendingStats(), []
    stats.summarize(x, pending, out.append)
    pending.resolve()
    return out[0]


@pytest.mark.parametrize("layout", [
    lambda x: x.permute(0, 2, 3, 1),          # channels-last, as ConvNeXt's blocks run
    lambda x: x.transpose(1, 2),               # attention heads
    lambda x: x[:, ::2],                       # a slice: not dense in memory
])
def test_a_summary_does_not_depend_on_the_layout(layout):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8, 8) * 3 + 1
    y = layout(x)
    a, b = summary(y), summary(y.contiguous())
    assert (a.mean, a.std, a.nonfinite) == pytest.approx((b.mean, b.std, b.nonfinite), rel=1e-5)


def test_one_non_finite_value_anywhere_in_a_permuted_map_is_seen():
    x = torch.randn(2, 8, 16, 16)
    x[1, 5, 3, 7] = math.inf
    assert summary(x.permute(0, 2, 3, 1)).nonfinite


def test_dead_units_are_found_on_the_sampled_positions_of_a_large_map():
    torch.manual_seed(0)
    conv = torch.randn(8, 16, 64, 64)
    conv[:, 3] = -1.0                                           # channel 3 never fires
    rows = torch.randn(8, 32, 32, 24)
    rows[..., 7] = -1.0                                         # feature 7 never fires
    rows[..., 9] = torch.where(torch.rand(8, 32, 32) < 0.3, 1.0, -1.0)   # feature 9 on 30% of positions
    for y, dim, dead in ((conv, 1, 3), (rows, -1, 7)):
        pending, out = stats.PendingStats(), []
        stats.active_fraction_per_unit(y, dim, pending, out.append)
        pending.resolve()
        active = out[0]
        assert active[dead] == 0.0
        assert min(a for i, a in enumerate(active) if i != dead) > 0.25
    assert active[9] == pytest.approx(0.3, abs=0.035)            # 2048 positions: standard error 1%


@pytest.mark.parametrize("shape", [(8, 64, 56, 56), (8, 256, 32, 32), (4, 512, 3072)])
def test_a_sampled_summary_of_a_structured_map_is_within_its_stated_bound(shape):
    """Above SAMPLE_ABOVE elements the summary reads runs of the tensor. Channels with their own means
    and scales, and a border row ten times larger than the rest, are where a regular sample that keeps
    landing on the same rows or channels would be biased: the stated bound (2.2% of the std for the
    mean, 1.6% for the std, one standard error) holds with room at four of them."""
    torch.manual_seed(0)
    x = torch.randn(shape)
    channel = torch.linspace(-2, 2, shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2))
    x = x * (1 + channel.abs()) + channel
    if len(shape) == 4:
        x[:, :, 0, :] *= 10
    assert x.numel() >= stats.SAMPLE_ABOVE
    var, mean = torch.var_mean(x.double(), correction=0)
    s = summary(x)
    assert abs(s.mean - mean.item()) < 4 * 0.022 * var.sqrt().item()
    assert s.std == pytest.approx(var.sqrt().item(), rel=4 * 0.016)


def test_a_sample_reads_far_fewer_elements_than_the_map_and_is_a_view():
    x = torch.randn(8, 64, 112, 112)
    sample = stats._sample_of(x.reshape(-1))
    assert sample.numel() == stats.SAMPLE_BLOCKS * stats.BLOCK < x.numel() // 20
    assert sample.data_ptr() == x.data_ptr()             # no copy
    distance = sample.stride(0)
    assert all(distance % f for f in range(2, int(distance ** 0.5) + 1))   # prime: no channel or row aligns
    assert distance * (stats.SAMPLE_BLOCKS - 1) + stats.BLOCK <= x.numel()


def test_cpu_results_are_read_at_once_not_kept_alive_until_the_end():
    """Thousands of live 0-d results between the activations fragment glibc's heap (peak RSS 1.4x on
    ViT-B/16): on the CPU the values are taken when queued, and the callbacks still wait for resolve,
    in order, as they do for accelerator tensors."""
    import weakref

    pending, out = stats.PendingStats(), []
    first, second = torch.tensor(3.0), torch.tensor([1, 2], dtype=torch.int32)
    refs = [weakref.ref(first), weakref.ref(second)]
    pending.defer([first], lambda v: out.append(("first", v)))
    pending.defer([second, torch.tensor(True)], lambda v: out.append(("second", v)))
    del first, second
    assert [r() for r in refs] == [None, None]
    assert out == []
    pending.resolve()
    assert out == [("first", [3.0]), ("second", [1, 2, True])]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_one_non_finite_value_of_a_sampled_map_is_seen_where_the_sample_does_not_reach(bad):
    """The sample reads runs of a large map; the non-finite check reads all of it (on the CPU, by the
    sum over every value)."""
    x = torch.randn(8, 64, 56, 56)
    assert x.numel() >= stats.SAMPLE_ABOVE
    flat = x.reshape(-1)
    flat[stats.BLOCK + 1] = bad          # inside the gap between the first two runs
    assert torch.isfinite(stats._sample_of(flat)).all()
    assert summary(x).nonfinite


@pytest.mark.parametrize("numel", [64, 3 << 20])
def test_finite_values_whose_sum_overflows_are_finite_and_their_scale_infinite(numel):
    """A float32 attention mask full of finfo.min: its sum is -inf, yet every value is finite."""
    s = summary(torch.full((numel,), torch.finfo(torch.float32).min))
    assert not s.nonfinite and s.std == math.inf


def test_the_mean_of_a_sampled_map_is_exact_on_the_cpu():
    torch.manual_seed(0)
    x = torch.randn(8, 64, 56, 56) + torch.linspace(-3, 3, 56)
    assert summary(x).mean == pytest.approx(x.double().mean().item(), abs=1e-5)
