"""The record of the objective (nnlint.trace.objective, lossprobe): what each loss call saw, measured
before it runs; a loss that raises reported by the rule that explains it, or else a clear "could not
run"; a model's own `outputs.loss` (Hugging Face models given labels) and a step's loss as the real
loss; the model left as it was found when the loss fails.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnlint
from nnlint.errors import ModelRaised, NNLintError
from nnlint.trace import objective
from nnlint.trace.lossprobe import loss_calls

OBJECTIVE = ["NN304", "NN601", "NN602", "NN603", "NN604", "NN605", "NN606"]


def measured(loss, *args, **kwargs):
    """The LossCall of one loss call, made under the probe."""
    with loss_calls() as calls:
        loss(*args, **kwargs)
    [call] = calls
    return call


def classifier(out=10):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, out))


X = torch.randn(64, 32, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------
# What a call saw


def test_a_cross_entropy_call_records_its_rows_target_and_value():
    logits = torch.randn(64, 10) * 3
    call = measured(nn.CrossEntropyLoss(ignore_index=-100), logits, torch.where(Y == 0, -100, Y))
    assert (call.loss, call.family, call.expects, call.num_classes) == ("cross_entropy", "class", "logits", 10)
    assert call.input.row_logsumexp == pytest.approx(float(torch.logsumexp(logits, 1).mean()), rel=1e-5)
    assert call.input.row_sum == pytest.approx((float(logits.sum(1).min()), float(logits.sum(1).max())), rel=1e-5)
    p = logits.softmax(1)
    assert call.input.calibration == pytest.approx(float((p - 0.1).abs().mean()), rel=1e-5)
    t = call.target
    assert t.ignored == int((Y == 0).sum()) and t.out_of_range == 0 and sum(t.class_counts) == 64 - t.ignored
    assert call.options == {"reduction": "mean", "ignore_index": -100, "grad_enabled": True}
    assert call.value == pytest.approx(float(F.cross_entropy(logits, torch.where(Y == 0, -100, Y))), rel=1e-6)


def test_a_summed_loss_is_read_per_counted_label():
    y = Y.clone()
    y[:16] = -100
    call = measured(F.cross_entropy, torch.zeros(64, 10), y, reduction="sum")
    assert call.value == pytest.approx(math.log(10), rel=1e-6)    # divided by the 48 labels counted


@pytest.mark.filterwarnings("ignore::UserWarning")     # size_average and reduce are deprecated
def test_legacy_reduction_arguments_are_read_as_torch_reads_them():
    assert measured(F.mse_loss, torch.zeros(4), torch.ones(4), reduce=False).options["reduction"] == "none"
    assert measured(F.mse_loss, torch.zeros(4), torch.ones(4), size_average=False).options["reduction"] == "sum"


def test_per_row_statistics_read_a_sample_of_a_vocabulary_sized_output():
    logits = torch.randn(512, 50_000)
    call = measured(F.cross_entropy, logits, torch.randint(0, 50_000, (512,)))
    assert call.input.row_logsumexp == pytest.approx(float(torch.logsumexp(logits, 1).mean()), rel=1e-3)
    assert call.target.class_counts == []       # priors of a vocabulary mean nothing on one batch


@pytest.mark.parametrize("args, reason", [
    ((torch.randn(8, 10), torch.full((8,), 11)), "target 11 is out of range for 10 classes"),
    ((torch.randn(8, 10), F.one_hot(torch.arange(8), 10)), "one-hot"),
    ((torch.randn(8, 10), torch.arange(8).float()), "integer class indices"),
    ((torch.randn(8, 10), torch.rand(8, 5)), "neither class indices"),
], ids=["out-of-range", "one-hot", "float-indices", "class-count"])
def test_a_cross_entropy_that_would_raise_is_not_made(args, reason):
    made = []

    def loss_fn(out, y):
        loss = F.cross_entropy(out, y)
        made.append(loss)
        return loss

    with pytest.raises(Exception) as err, loss_calls() as calls:
        loss_fn(*args)
    assert type(err.value).__name__ == "LossWouldFail" and made == []
    assert calls[0].predicted and reason in calls[0].raised


def test_binary_cross_entropy_outside_the_unit_interval_is_not_made():
    with pytest.raises(Exception), loss_calls() as calls:
        F.binary_cross_entropy(torch.tensor([[-0.5], [0.5]]), torch.ones(2, 1))
    assert "outside [0, 1]" in calls[0].raised


def test_broadcast_shape_is_torchs_rule():
    assert objective.broadcast_shape((16, 1), (16,)) == (16, 16)
    assert objective.broadcast_shape((16, 1), (16, 1)) == (16, 1)
    assert objective.broadcast_shape((16, 2), (3,)) is None
    assert objective.broadcast_shape((4, 1, 3), (5, 1)) == (4, 5, 3)


def test_the_loss_function_follows_the_model_output_through_views_and_ops():
    model = classifier()

    def lm_style(out, y):
        return F.nll_loss(F.log_softmax(out.view(64, 10), dim=1), y)

    report = nnlint.check(model, X, target=Y, loss_fn=lm_style)
    [call] = report.trace.objective.calls
    assert call.steps == ("log_softmax",) and call.serial in report.trace.output_serials


# ---------------------------------------------------------------------------------------------
# A loss that raises: the finding that explains it, or could-not-run


def test_a_genuine_error_in_the_loss_function_is_a_clear_could_not_run():
    def broken(out, y):
        return F.cross_entropy(out, y) + out.sum(dim=3)     # the user's own bug, no rule's

    with pytest.raises(ModelRaised) as err:
        nnlint.check(classifier(), X, target=Y, loss_fn=broken)
    message = str(err.value)
    assert message.startswith("the loss function raised IndexError") and "test_objective_trace.py" in message


def test_a_failure_whose_rule_is_ignored_cannot_be_explained():
    y = Y.clone()
    y[0] = 12
    with pytest.raises(NNLintError, match="target 12 is out of range for 10 classes"):
        nnlint.check(classifier(), X, target=y, loss_fn=nn.CrossEntropyLoss(), ignore=["NN604"])
    report = nnlint.check(classifier(), X, target=y, loss_fn=nn.CrossEntropyLoss())
    assert [d.code for d in report.diagnostics if d.severity == "error"] == ["NN604"]


def test_an_unexplained_backward_failure_is_could_not_run():
    class Bad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("custom backward is broken")

    def loss_fn(out, y):
        return F.cross_entropy(Bad.apply(out), y)

    with pytest.raises(ModelRaised, match="the backward pass raised RuntimeError: custom backward is broken"):
        nnlint.check(classifier(), X, target=Y, loss_fn=loss_fn)


def test_the_model_and_rng_are_left_as_found_when_the_loss_fails():
    model = classifier()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    y = Y.clone()
    y[3] = 40
    report = nnlint.check(model, X, target=y, loss_fn=nn.CrossEntropyLoss())
    assert report.by_code("NN604")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


# ---------------------------------------------------------------------------------------------
# The model's own loss, a step's loss


class DictLoss(nn.Module):
    """A model that computes its loss when given labels, as Hugging Face models do."""

    def __init__(self, squash=False):
        super().__init__()
        self.net = classifier()
        self.squash = squash

    def forward(self, x, labels=None):
        logits = self.net(x)
        if self.squash:
            logits = logits.softmax(-1)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def test_outputs_loss_is_the_real_loss_and_labels_are_not_a_model_input():
    report = nnlint.check(DictLoss(), {"x": X, "labels": Y})
    trace = report.trace
    assert trace.objective.source == "outputs.loss" and not trace.loss_is_surrogate and trace.backward_ran
    assert [c.loss for c in trace.objective.calls] == ["cross_entropy"]
    assert [i.path for i in trace.inputs] == ["batch['x']"]
    assert [d for d in report.diagnostics if d.severity != "info"] == []


def test_outputs_loss_reports_a_double_softmax_inside_the_forward():
    [d] = nnlint.check(DictLoss(squash=True), {"x": X, "labels": Y}, select=OBJECTIVE).diagnostics
    assert d.code == "NN601" and d.module == "" and "softmax() in forward" in d.message


def test_a_label_out_of_range_inside_the_forward_stops_the_pass_and_is_reported():
    y = Y.clone()
    y[7] = 10
    report = nnlint.check(DictLoss(), {"x": X, "labels": y})
    assert [(d.code, d.module) for d in report.diagnostics if d.severity == "error"] == [("NN604", "net.2")]
    assert not report.trace.backward_ran and not report.trace.eval_ran


def test_a_steps_loss_calls_are_its_objective():
    def training_step(model, batch):
        x, y = batch
        return F.cross_entropy(model(x).softmax(-1), y)

    report = nnlint.check(classifier(), (X, Y), step=training_step, select=OBJECTIVE)
    assert report.trace.objective.source == "step"
    assert [(d.code, d.module) for d in report.diagnostics] == [("NN601", "")]


# ---------------------------------------------------------------------------------------------
# Hugging Face models given labels: outputs.loss


def hf_models(transformers):
    bert = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=1000)
    ids = torch.randint(0, 1000, (4, 32), generator=torch.Generator().manual_seed(5))
    masked = torch.where(torch.rand(4, 32, generator=torch.Generator().manual_seed(6)) < 0.15, ids, -100)
    return {
        "bert-classifier": (lambda: transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **bert)),
                            {"input_ids": ids, "labels": torch.tensor([0, 2, 1, 0])}),
        "bert-regression": (lambda: transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=1, **bert)),
                            {"input_ids": ids, "labels": torch.randn(4)}),
        "bert-multi-label": (lambda: transformers.BertForSequenceClassification(transformers.BertConfig(
            num_labels=5, problem_type="multi_label_classification", **bert)),
            {"input_ids": ids, "labels": (torch.rand(4, 5) < 0.3).float()}),
        "bert-mlm": (lambda: transformers.BertForMaskedLM(transformers.BertConfig(**bert)),
                     {"input_ids": ids, "labels": masked}),
        "gpt2": (lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=64, n_layer=2, n_head=2, vocab_size=1000, n_positions=64)), {"input_ids": ids, "labels": ids}),
        "llama": (lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=1000)), {"input_ids": ids, "labels": ids}),
    }


@pytest.mark.parametrize("name", ["bert-classifier", "bert-regression", "bert-multi-label", "bert-mlm", "gpt2", "llama"])
def test_hugging_face_models_given_labels_are_quiet(name, transformers):
    make, batch = hf_models(transformers)[name]
    torch.manual_seed(0)
    report = nnlint.check(make(), batch)
    assert report.trace.objective.source == "outputs.loss" and report.trace.objective.backward == "loss"
    assert [(d.code, d.module, d.message) for d in report.diagnostics if d.severity != "info"] == []


def test_hugging_face_labels_out_of_the_vocabulary_name_the_lm_head(transformers):
    make, batch = hf_models(transformers)["gpt2"]
    torch.manual_seed(0)
    report = nnlint.check(make(), {"input_ids": batch["input_ids"], "labels": batch["input_ids"] + 1000})
    [d] = [d for d in report.diagnostics if d.severity == "error"]
    assert (d.code, d.module) == ("NN604", "lm_head") and "which has 1000 classes" in d.message
