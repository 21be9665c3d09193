"""The Lightning and Hugging Face Trainer callbacks, in real (tiny, CPU) training runs.

Both libraries are optional extras; .ci/run's second pass installs them, and these tests skip (saying
what to install) where they are absent. What a user relies on: the first training step is traced as
their code runs it (training_step / compute_loss, whatever modules it calls) with its real loss, a
planted fault stops training before any update, and a healthy run trains exactly as it would have
without the callback (same parameters, same logged metrics, same draws from every RNG).
"""
from __future__ import annotations

import random
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nnlint.config import Config
from nnlint.guard import NNLintWarning, UnhealthyModelError
from nnlint.registry import all_rules


def mlp(fault: str = "") -> nn.Sequential:
    """16 -> 32 -> 32 -> 4, He-initialized, with a small head (a loss near log(4) at init). The faults:
    "zero": the hidden layer net.3 is all zeros (NN101); "dead": every unit after it is dead (NN203)."""
    fc1, fc2, head = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)
    for fc in (fc1, fc2):
        nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
        nn.init.zeros_(fc.bias)
    nn.init.normal_(head.weight, std=0.05)
    nn.init.zeros_(head.bias)
    if fault == "zero":
        nn.init.zeros_(fc2.weight)
    elif fault == "dead":
        nn.init.constant_(fc2.bias, -20.0)
    return nn.Sequential(fc1, nn.ReLU(), nn.Dropout(0.1), fc2, nn.ReLU(), head)


def dataset(n=128):
    g = torch.Generator().manual_seed(1)
    return torch.utils.data.TensorDataset(torch.randn(n, 16, generator=g), torch.randint(0, 4, (n,), generator=g))


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def jitter(x):
    """The step draws from Python's RNG (and dropout from torch's): a check that consumed either would
    change what the real first step computes."""
    return x * (1 + 0.01 * random.random())


# ---------------------------------------------------------------------------------------------
# Lightning


# How training_step reaches the network: through forward (self(x)), a submodule with no forward on the
# LightningModule (self.net(x)), two modules called one after the other, or manual optimization.
STYLES = ["forward", "submodule", "two_modules", "manual"]
ZERO_LAYER = {"forward": "net.3", "submodule": "net.3", "two_modules": "encoder.3", "manual": "net.3"}


def lightning_module(L, style="submodule", fault="", nan_loss=False, metric=False):
    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            net = mlp(fault)
            if style == "two_modules":
                self.encoder, self.head = net[:5], net[5]
            else:
                self.net = net
            self.automatic_optimization = style != "manual"
            if metric:
                import torchmetrics

                self.accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=4)

        if style == "forward":
            def forward(self, x):
                return self.net(x)

        def logits(self, x):
            if style == "forward":
                return self(x)
            if style == "two_modules":
                return self.head(self.encoder(x))
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.logits(jitter(x))
            loss = F.cross_entropy(logits, y)
            loss = loss * float("nan") if nan_loss else loss
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            if metric:
                self.accuracy(logits, y)
                self.log("train_acc", self.accuracy, on_step=False, on_epoch=True)
            if style == "manual":
                optimizer = self.optimizers()
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(dataset(), batch_size=32, shuffle=True)

    return Classifier()


def fit(L, module, callbacks, steps=2):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        num_sanity_val_steps=0)
    L.seed_everything(7, verbose=False)
    trainer.fit(module)
    return trainer


@pytest.mark.parametrize("style", STYLES)
def test_lightning_zero_layer_stops_fit_at_the_first_step(lightning, style):
    from nnlint.integrations.lightning import NNLintCallback

    module = lightning_module(lightning, style, fault="zero")
    before = params_of(module)
    with pytest.raises(UnhealthyModelError, match="NN101") as err:
        fit(lightning, module, [NNLintCallback(config=Config())])
    assert [d.module for d in err.value.report.by_code("NN101")] == [ZERO_LAYER[style]]
    assert_same(before, params_of(module))   # stopped before any update


@pytest.mark.parametrize("style", STYLES)
def test_lightning_healthy_run_is_traced_with_its_real_loss_and_trains_unchanged(lightning, style):
    from nnlint.integrations.lightning import NNLintCallback

    callback = NNLintCallback(config=Config())
    guarded = lightning_module(lightning, style)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLintWarning)
        fit(lightning, guarded, [callback])
    report = callback.report
    assert report is not None and report.ok, report
    trace = report.trace
    assert not trace.loss_is_surrogate and trace.loss == pytest.approx(1.386, abs=0.2)   # cross-entropy of 4 classes
    assert trace.objective.name == "Classifier.training_step"
    measured = {op.module for op in trace.ops if op.kind == "linear"}
    assert measured == ({"encoder.0", "encoder.3", "head"} if style == "two_modules" else {"net.0", "net.3", "net.5"})
    assert [i.path for i in trace.inputs] == ["batch[0]"]   # the labels are the loss's, not a model input
    plain = lightning_module(lightning, style)
    fit(lightning, plain, [])
    assert_same(params_of(plain), params_of(guarded))
    assert not guarded._forward_pre_hooks


def test_lightning_logged_metrics_and_torchmetrics_state_are_the_run_s_own(lightning):
    pytest.importorskip("torchmetrics", reason="torchmetrics is not installed: pip install -e \".[lightning]\"")
    from nnlint.integrations.lightning import NNLintCallback

    guarded = fit(lightning, lightning_module(lightning, metric=True), [NNLintCallback(config=Config())], steps=4)
    plain = fit(lightning, lightning_module(lightning, metric=True), [], steps=4)
    # The epoch means would count the checked batch twice if the traced step's self.log or metric
    # update had counted.
    assert guarded.logged_metrics.keys() == plain.logged_metrics.keys() >= {"train_loss_epoch", "train_acc"}
    for key, value in plain.logged_metrics.items():
        assert torch.equal(guarded.logged_metrics[key], value), key


def test_lightning_warn_mode_lets_fit_finish(lightning):
    from nnlint.integrations.lightning import NNLintCallback

    callback = NNLintCallback(on_error="warn", config=Config())
    with pytest.warns(NNLintWarning, match="NN203"):
        trainer = fit(lightning, lightning_module(lightning, fault="dead"), [callback], steps=3)
    assert trainer.global_step == 3
    assert [d.module for d in callback.report.by_code("NN203")] == ["net.4"]


def test_lightning_step_that_cannot_be_traced_falls_back_to_the_first_forward(lightning, monkeypatch):
    from nnlint.integrations import lightning as integration

    def untraceable(trainer, pl_module, batch_idx):
        def step(model, batch):
            raise RuntimeError("cannot trace this")
        step.__qualname__ = "Classifier.training_step"
        return step

    monkeypatch.setattr(integration, "traced_training_step", untraceable)
    callback = integration.NNLintCallback(config=Config())
    with pytest.warns(NNLintWarning, match=r"could not check the model \(it checks the first training batch the "
                                           r"model's forward receives instead\): Classifier.training_step raised "
                                           "RuntimeError: cannot trace this"):
        with pytest.raises(UnhealthyModelError, match="NN203"):
            fit(lightning, lightning_module(lightning, "forward", fault="dead"), [callback])
    assert callback.report.trace.loss_is_surrogate   # the forward's output, not the step's loss


@pytest.mark.skipif("NN405" not in all_rules(), reason="the gradient rule NN405 is not in the catalog")
def test_lightning_non_finite_gradients_stop_fit_before_the_update(lightning):
    from nnlint.integrations.lightning import NNLintCallback

    module = lightning_module(lightning, nan_loss=True)
    before = params_of(module)
    with pytest.raises(UnhealthyModelError, match="NN405"):
        fit(lightning, module, [NNLintCallback(config=Config())])
    assert_same(before, params_of(module))


# ---------------------------------------------------------------------------------------------
# Hugging Face Trainer


class DictDataset(torch.utils.data.Dataset):
    """Rows as the Trainer passes them: dicts of tensors with the model's keyword names."""

    def __init__(self, n=128):
        self.x, self.y = dataset(n).tensors

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "labels": self.y[i]}


class HFClassifier(nn.Module):
    """The Trainer's contract: forward(**batch) returns a dict with the loss when labels are given."""

    def __init__(self, fault="", nan_loss=False):
        super().__init__()
        torch.manual_seed(0)
        self.net = mlp(fault)
        self.nan_loss = nan_loss

    def forward(self, features, labels=None):
        logits = self.net(features)
        out = {"logits": logits}
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
            out["loss"] = loss * float("nan") if self.nan_loss else loss
        return out


class LogitsOnly(nn.Module):
    """A model that knows nothing of labels: the Trainer subclass computes the loss."""

    def __init__(self, fault=""):
        super().__init__()
        torch.manual_seed(0)
        self.net = mlp(fault)

    def forward(self, features):
        return self.net(features)


def custom_trainer(hf):
    class LabelSmoothingTrainer(hf.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            logits = model(**inputs)
            loss = F.cross_entropy(jitter(logits), labels, label_smoothing=0.1)
            return (loss, logits) if return_outputs else loss

    return LabelSmoothingTrainer


def hf_train(hf, model, callbacks, tmp_path, steps=2, trainer_class=None, **args):
    arguments = hf.TrainingArguments(
        # AdamW at 1e-3: at 0.1 its first step moves net.5's weight by 2.1x its norm (NN804, rightly)
        output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=32, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, seed=7,
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False, **args)
    trainer = (trainer_class or hf.Trainer)(model=model, args=arguments, train_dataset=DictDataset(),
                                            callbacks=callbacks)
    trainer.train()
    return trainer


def test_hf_healthy_run_is_checked_and_unchanged(hf_trainer, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    callback = NNLintCallback(config=Config())
    guarded = HFClassifier()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLintWarning)
        hf_train(hf_trainer, guarded, [callback], tmp_path, gradient_accumulation_steps=2)
    assert callback.report is not None and callback.report.ok, callback.report
    assert "features" in callback.report.batch_description   # checked on a real dataloader batch
    assert callback.report.trace.objective.name == "Trainer.compute_loss"
    plain = HFClassifier()
    hf_train(hf_trainer, plain, [], tmp_path, gradient_accumulation_steps=2)
    assert_same(params_of(plain), params_of(guarded))


def test_hf_planted_fault_stops_training_before_any_update(hf_trainer, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    model = HFClassifier(fault="dead")
    before = params_of(model)
    with pytest.raises(UnhealthyModelError, match="NN203") as err:
        hf_train(hf_trainer, model, [NNLintCallback(config=Config())], tmp_path)
    assert [d.module for d in err.value.report.by_code("NN203")] == ["net.4"]
    assert_same(before, params_of(model))


def test_hf_custom_compute_loss_zero_layer_stops_training_at_the_first_step(hf_trainer, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    model = LogitsOnly(fault="zero")
    before = params_of(model)
    with pytest.raises(UnhealthyModelError, match="NN101") as err:
        hf_train(hf_trainer, model, [NNLintCallback(config=Config())], tmp_path,
                 trainer_class=custom_trainer(hf_trainer))
    assert [d.module for d in err.value.report.by_code("NN101")] == ["net.3"]
    assert_same(before, params_of(model))


def test_hf_custom_compute_loss_is_the_checked_loss_and_training_is_unchanged(hf_trainer, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    trainer_class = custom_trainer(hf_trainer)
    callback = NNLintCallback(config=Config())
    guarded = LogitsOnly()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLintWarning)
        hf_train(hf_trainer, guarded, [callback], tmp_path, trainer_class=trainer_class)
    trace = callback.report.trace
    assert callback.report.ok, callback.report
    assert not trace.loss_is_surrogate and trace.objective.name == "LabelSmoothingTrainer.compute_loss"
    [call] = trace.objective.calls   # the loss-at-init rule read the subclass's loss
    assert call.num_classes == 4
    plain = LogitsOnly()
    hf_train(hf_trainer, plain, [], tmp_path, trainer_class=trainer_class)
    assert_same(params_of(plain), params_of(guarded))


@pytest.mark.skipif("NN405" not in all_rules(), reason="the gradient rule NN405 is not in the catalog")
def test_hf_non_finite_gradients_stop_training_before_the_update(hf_trainer, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    model = HFClassifier(nan_loss=True)
    before = params_of(model)
    with pytest.raises(UnhealthyModelError, match="NN405"):
        hf_train(hf_trainer, model, [NNLintCallback(config=Config())], tmp_path, max_grad_norm=0.0)
    assert_same(before, params_of(model))


def test_first_batch_keeps_the_random_state(transformers):
    from nnlint.integrations import transformers as integration

    loader = torch.utils.data.DataLoader(dataset(), batch_size=8, shuffle=True)
    state = torch.get_rng_state()
    x, y = integration.first_batch(loader)
    assert x.shape == (8, 16) and torch.equal(torch.get_rng_state(), state)
    # The training loop's own first epoch draws the same order it would have drawn anyway.
    assert torch.equal(next(iter(loader))[0], x)


def test_callbacks_are_reachable_as_the_issue_spells_them(lightning, transformers):
    import nnlint
    from nnlint.integrations import lightning as lightning_integration
    from nnlint.integrations import transformers as transformers_integration

    assert nnlint.integrations.lightning.NNLintCallback is lightning_integration.NNLintCallback
    assert nnlint.integrations.transformers.NNLintCallback is transformers_integration.NNLintCallback
    assert isinstance(lightning_integration.NNLintCallback(config=Config()), lightning.Callback)
    with pytest.raises(ValueError, match="on_error"):
        transformers_integration.NNLintCallback(on_error="ignore")


@pytest.mark.parametrize("integration, extra", [("lightning", "lightning"), ("transformers", "transformers")])
def test_an_integration_without_its_library_says_what_to_install(integration, extra, monkeypatch):
    import importlib
    import sys

    for name in list(sys.modules):
        if name.split(".")[0] in (extra, "pytorch_lightning") or name == f"nnlint.integrations.{integration}":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, extra, None)   # import of it raises ImportError, as when not installed
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    with pytest.raises(ImportError, match=rf'pip install "nnlint\[{extra}\]"'):
        importlib.import_module(f"nnlint.integrations.{integration}")
