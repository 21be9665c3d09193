"""The Lightning and Hugging Face Trainer callbacks, in real (tiny, CPU) training runs.

Both libraries are optional extras; .ci/run installs them, and these tests skip where they are absent.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nnlint.config import Config
from nnlint.guard import NNLintWarning, UnhealthyModelError
from nnlint.registry import all_rules


def mlp(dead: bool) -> nn.Sequential:
    fc1, fc2, head = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)
    for fc in (fc1, fc2):
        nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
        nn.init.zeros_(fc.bias)
    nn.init.xavier_normal_(head.weight)
    if dead:
        nn.init.constant_(fc2.bias, -20.0)   # the planted fault: every unit after fc2 is dead
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


# ---------------------------------------------------------------------------------------------
# Lightning


@pytest.fixture
def L():
    return pytest.importorskip("lightning", reason="the lightning extra is not installed")


def lightning_module(L, dead=False, example=True, call_forward=True, nan_loss=False):
    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = mlp(dead)
            if example:
                self.example_input_array = torch.randn(64, 16, generator=torch.Generator().manual_seed(2))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x) if call_forward else self.net(x)
            loss = F.cross_entropy(logits, y)
            return loss * float("nan") if nan_loss else loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(dataset(), batch_size=32, shuffle=True)

    return Classifier()


def fit(L, module, callbacks, steps=3):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        num_sanity_val_steps=0)
    L.seed_everything(7, verbose=False)
    trainer.fit(module)
    return trainer


@pytest.mark.parametrize("example", [True, False], ids=["example_input_array", "first_batch"])
def test_lightning_healthy_run_is_checked_and_unchanged(L, example):
    from nnlint.integrations.lightning import NNLintCallback

    callback = NNLintCallback(config=Config())
    guarded = lightning_module(L, example=example)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLintWarning)
        fit(L, guarded, [callback])
    assert callback.report is not None and callback.report.ok, callback.report
    plain = lightning_module(L, example=example)
    fit(L, plain, [])
    assert_same(params_of(plain), params_of(guarded))
    assert not guarded._forward_pre_hooks


@pytest.mark.parametrize("example", [True, False], ids=["example_input_array", "first_batch"])
def test_lightning_planted_fault_stops_fit_before_any_update(L, example):
    from nnlint.integrations.lightning import NNLintCallback

    module = lightning_module(L, dead=True, example=example)
    before = params_of(module)
    with pytest.raises(UnhealthyModelError, match="NN203") as err:
        fit(L, module, [NNLintCallback(config=Config())])
    assert [d.module for d in err.value.report.by_code("NN203")] == ["net.4"]
    assert_same(before, params_of(module))


def test_lightning_warn_mode_lets_fit_finish(L):
    from nnlint.integrations.lightning import NNLintCallback

    callback = NNLintCallback(on_error="warn", config=Config())
    with pytest.warns(NNLintWarning, match="NN203"):
        trainer = fit(L, lightning_module(L, dead=True), [callback])
    assert trainer.global_step == 3


def test_lightning_training_step_that_bypasses_forward_is_reported(L):
    from nnlint.integrations.lightning import NNLintCallback

    with pytest.warns(NNLintWarning, match="no training forward"):
        fit(L, lightning_module(L, example=False, call_forward=False), [NNLintCallback(config=Config())])


@pytest.mark.skipif("NN405" not in all_rules(), reason="the gradient rule NN405 is not in the catalog")
def test_lightning_non_finite_gradients_stop_fit_before_the_update(L):
    from nnlint.integrations.lightning import NNLintCallback

    module = lightning_module(L, nan_loss=True)
    before = params_of(module)
    with pytest.raises(UnhealthyModelError, match="NN405"):
        fit(L, module, [NNLintCallback(config=Config())])
    assert_same(before, params_of(module))


# ---------------------------------------------------------------------------------------------
# Hugging Face Trainer


@pytest.fixture
def hf():
    transformers = pytest.importorskip("transformers", reason="the transformers extra is not installed")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    return transformers


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

    def __init__(self, dead=False, nan_loss=False):
        super().__init__()
        torch.manual_seed(0)
        self.net = mlp(dead)
        self.nan_loss = nan_loss

    def forward(self, features, labels=None):
        logits = self.net(features)
        out = {"logits": logits}
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
            out["loss"] = loss * float("nan") if self.nan_loss else loss
        return out


def hf_train(hf, model, callbacks, tmp_path, steps=3, **args):
    arguments = hf.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=32, learning_rate=0.1,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, seed=7,
        dataloader_num_workers=0, disable_tqdm=True, **args)
    trainer = hf.Trainer(model=model, args=arguments, train_dataset=DictDataset(), callbacks=callbacks)
    trainer.train()
    return trainer


def test_hf_healthy_run_is_checked_and_unchanged(hf, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    callback = NNLintCallback(config=Config())
    guarded = HFClassifier()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLintWarning)
        hf_train(hf, guarded, [callback], tmp_path, gradient_accumulation_steps=2)
    assert callback.report is not None and callback.report.ok, callback.report
    assert "features" in callback.report.batch_description   # checked on a real dataloader batch
    plain = HFClassifier()
    hf_train(hf, plain, [], tmp_path, gradient_accumulation_steps=2)
    assert_same(params_of(plain), params_of(guarded))


def test_hf_planted_fault_stops_training_before_any_update(hf, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    model = HFClassifier(dead=True)
    before = params_of(model)
    with pytest.raises(UnhealthyModelError, match="NN203") as err:
        hf_train(hf, model, [NNLintCallback(config=Config())], tmp_path)
    assert [d.module for d in err.value.report.by_code("NN203")] == ["net.4"]
    assert_same(before, params_of(model))


@pytest.mark.skipif("NN405" not in all_rules(), reason="the gradient rule NN405 is not in the catalog")
def test_hf_non_finite_gradients_stop_training_before_the_update(hf, tmp_path):
    from nnlint.integrations.transformers import NNLintCallback

    model = HFClassifier(nan_loss=True)
    before = params_of(model)
    with pytest.raises(UnhealthyModelError, match="NN405"):
        hf_train(hf, model, [NNLintCallback(config=Config())], tmp_path, max_grad_norm=0.0)
    assert_same(before, params_of(model))


def test_first_batch_keeps_the_random_state():
    from nnlint.integrations import transformers as integration

    pytest.importorskip("transformers")
    loader = torch.utils.data.DataLoader(dataset(), batch_size=8, shuffle=True)
    state = torch.get_rng_state()
    x, y = integration.first_batch(loader)
    assert x.shape == (8, 16) and torch.equal(torch.get_rng_state(), state)
    # The training loop's own first epoch draws the same order it would have drawn anyway.
    assert torch.equal(next(iter(loader))[0], x)


def test_callbacks_are_reachable_as_the_issue_spells_them(L, hf):
    import nnlint
    from nnlint.integrations import lightning, transformers

    assert nnlint.integrations.lightning.NNLintCallback is lightning.NNLintCallback
    assert nnlint.integrations.transformers.NNLintCallback is transformers.NNLintCallback
    assert isinstance(lightning.NNLintCallback(config=Config()), L.Callback)
    with pytest.raises(ValueError, match="on_error"):
        transformers.NNLintCallback(on_error="ignore")
