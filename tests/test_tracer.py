"""The tracer works where torch.fx does not, and records per call site."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnlint.trace.structure import Structure
from nnlint.trace.tracer import run_trace


def kinds(trace, phase="train"):
    return [op.kind for op in trace.ops_in(phase)]


def test_shared_relu_module_is_measured_per_call_site():
    class Block(nn.Module):  # torchvision's BasicBlock reuses one nn.ReLU
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)
            self.relu = nn.ReLU(inplace=True)
            with torch.no_grad():
                self.fc2.bias.fill_(-100.0)   # the second call site is dead, the first is not

        def forward(self, x):
            return self.relu(self.fc2(self.relu(self.fc1(x))))

    trace = run_trace(Block(), torch.randn(32, 8))
    relus = [op for op in trace.ops_in() if op.kind == "relu"]
    assert [op.call_index for op in relus] == [0, 1]
    assert {op.module for op in relus} == {"relu"}
    first, second = (sum(a > 0 for a in op.stats["unit_active"]) for op in relus)
    assert first >= 6 and second == 0


def test_data_dependent_control_flow_dict_input_and_dataclass_output():
    @dataclasses.dataclass
    class Output:
        logits: torch.Tensor
        hidden: torch.Tensor

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.fc = nn.Linear(16, 4)

        def forward(self, input_ids, attention_mask=None):
            h = self.embed(input_ids)
            if h.mean() > -10:           # data-dependent branch: fx cannot trace this
                h = torch.tanh(h)
            if attention_mask is not None:
                h = h * attention_mask.unsqueeze(-1)
            return Output(self.fc(h), h)

    batch = {"input_ids": torch.randint(0, 50, (4, 6)), "attention_mask": torch.ones(4, 6)}
    trace = run_trace(Model(), batch)
    assert "embedding" in kinds(trace) and "tanh" in kinds(trace) and "linear" in kinds(trace)
    assert [i.path for i in trace.inputs] == ["batch['input_ids']", "batch['attention_mask']"]
    assert trace.inputs[0].is_float is False
    assert trace.backward_ran
    assert trace.params["embed.weight"].grad_norm > 0     # both outputs drive the surrogate loss
    assert trace.batch_description == "{input_ids: 4x6, attention_mask: 4x6}"


def test_in_place_residual_add_keeps_lineage():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            out = self.fc(x)
            out += x                     # in place, as torchvision writes it
            return F.relu(out)

    trace = run_trace(Res(), torch.randn(16, 8))
    blocks = Structure.of(trace).blocks
    assert len(blocks) == 1 and blocks[0].add.func in ("__iadd__", "add_") and not blocks[0].projection
    a, b = blocks[0].add.stats["operands"]
    assert a.std > 0 and b.std > 0


def test_functional_activations_are_recorded_with_their_source_line():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))   # the line recorded below

    trace = run_trace(Net(), torch.randn(16, 8))
    op = next(o for o in trace.ops_in() if o.kind == "sigmoid")
    assert op.module == "" and op.location is not None
    assert op.location.file == __file__
    assert "torch.sigmoid(self.fc(x))" in open(__file__).read().splitlines()[op.location.line - 1]
    assert op.stats["saturated"] >= 0.0


def test_model_without_parameters_and_integer_input():
    class Pure(nn.Module):
        def forward(self, x):
            return F.one_hot(x, 5).float().relu()

    trace = run_trace(Pure(), torch.randint(0, 5, (8,)))
    assert trace.params == {} and not trace.backward_ran
    assert trace.inputs[0].is_float is False


def test_eval_pass_sees_functional_dropout_without_training_flag():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return F.dropout(self.fc(x), 0.5)

    trace = run_trace(Net(), torch.randn(16, 8))
    eval_dropouts = [o for o in trace.ops_in("eval") if o.kind == "dropout"]
    assert eval_dropouts and eval_dropouts[0].args == {"p": 0.5, "training": True}
    assert trace.eval_rng_consumed


def test_module_construction_lines_from_source():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(4, 4),
                nn.ReLU(),
            )

        def forward(self, x):
            return self.body(x)

    trace = run_trace(Net(), torch.randn(4, 4))
    lines = open(__file__).read().splitlines()
    assert "nn.Linear(4, 4)," in lines[trace.modules["body.0"].location.line - 1]
    assert "nn.ReLU()," in lines[trace.modules["body.1"].location.line - 1]


def _weight_record(weight: torch.Tensor):
    model = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    return run_trace(model, torch.randn(4, weight.shape[1]), eval_pass=False).params["weight"]


def test_weight_rows_are_judged_exactly_where_a_screen_could_mislead():
    """The CPU path screens (rows 0 and 1, one row-norm pass); every answer must still be exact."""
    w = torch.randn(8, 6)
    w[1] = w[0]                                   # rows 0 and 1 equal, the others not: not all rows equal
    rec = _weight_record(w)
    assert (rec.rows_identical, rec.zero_rows) == (False, 0)
    assert _weight_record(torch.ones(8, 6) * 0.5).rows_identical

    tiny = torch.randn(8, 6)
    tiny[2] = 1e-30                               # its squares underflow: a zero norm, not a zero row
    tiny[5] = 0.0
    tiny[6, 3] = 0.0                              # a zero value in a live row
    rec = _weight_record(tiny)
    assert rec.zero_rows == 1 and not rec.all_zero

    huge = torch.randn(8, 6)
    huge[3, 1] = 1e30                             # finite, but its square overflows the row's norm
    rec = _weight_record(huge)
    assert rec.std == rec.std and rec.std > 1e28  # not taken for non-finite (its sum of squares overflows to inf)

    bad = torch.randn(8, 6)
    bad[4, 2] = float("nan")
    rec = _weight_record(bad)
    assert rec.std != rec.std and not rec.rows_identical
