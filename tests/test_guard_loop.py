"""The loop, seen by the guard (NN807-NN811, NN805's maximized loss): real two-step runs in plain PyTorch,
Lightning and the Hugging Face Trainer; the planted loop bug is named before the update it would
spoil, the healthy twin stays quiet, and a guarded healthy run computes exactly what an unguarded one
does."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from nnlint.config import Config
from nnlint.guard import NNLintWarning, UnhealthyModelError


def make(seed=0, dropout=True):
    torch.manual_seed(seed)
    layers = [nn.Linear(16, 32), nn.ReLU()] + ([nn.Dropout(0.1)] if dropout else []) + [nn.Linear(32, 4)]
    model = nn.Sequential(*layers)
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def batches(n=3):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)) for _ in range(n)]


def loop(model, optimizer, data, *, zero_grad=True, backward=True, sign=1.0, clip=None, eval_mode=False,
         fp16=False, scaler=None):
    torch.manual_seed(123)
    if eval_mode:
        model.eval()
    for x, y in data:
        if zero_grad:
            optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            loss = sign * F.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            continue
        if backward:
            loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()


def guarded(on_error="warn", **kwargs):
    model, optimizer = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLintWarning)
        g = nnlint.guard(model, optimizer, on_error=on_error, config=Config())
        loop(model, optimizer, batches(), **kwargs)
    g.remove()
    return {d.code: d for d in g.report.diagnostics} if g.report is not None else {}


@pytest.mark.parametrize("bug, code, severity", [
    ({"zero_grad": False}, "NN807", "error"),
    ({"eval_mode": True}, "NN808", "warning"),
    ({"fp16": True}, "NN809", "warning"),
    ({"clip": 1e-4}, "NN810", "info"),
    ({"backward": False}, "NN811", "error"),
    ({"sign": -1.0}, "NN805", "error"),
])
def test_each_loop_bug_is_named_at_its_line(bug, code, severity):
    found = guarded(**bug)
    assert code in found and found[code].severity == severity, sorted(found)
    assert found[code].location is not None and found[code].location.file == __file__
    assert not {"NN807", "NN808", "NN809", "NN810", "NN811", "NN805"} - {code} & set(found), sorted(found)


@pytest.mark.parametrize("healthy", [{}, {"clip": 1.0}, {"fp16": True, "scaler": "cpu"}])
def test_healthy_loops_are_quiet(healthy):
    if healthy.get("scaler"):
        healthy = {**healthy, "scaler": torch.amp.GradScaler("cpu")}
    found = guarded(**healthy)
    assert not {c for c in found if c >= "NN805"}, sorted(found)


def test_intentional_gradient_accumulation_is_not_a_missing_zero_grad():
    model, optimizer = make()
    g = nnlint.guard(model, optimizer, on_error="warn", config=Config())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLintWarning)
        for i, (x, y) in enumerate(batches(6)):
            (F.cross_entropy(model(x), y) / 2).backward()
            if i % 2 == 1:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    assert "NN807" not in {d.code for d in g.report.diagnostics}
    assert len(g.report.trace.probes["loop"]["steps"]) == 2


def test_missing_zero_grad_stops_before_the_second_update():
    reference, ref_opt = make()
    loop(reference, ref_opt, batches(1), zero_grad=False)          # one unguarded step
    model, optimizer = make()
    nnlint.guard(model, optimizer, config=Config())
    with pytest.raises(UnhealthyModelError, match="NN807"):
        loop(model, optimizer, batches(), zero_grad=False)
    for (n, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(a, b), f"{n}: step 2's update was made"


def test_an_eval_mode_loop_is_checked_at_its_first_step():
    model, optimizer = make()
    g = nnlint.guard(model, optimizer, on_error="warn", config=Config())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLintWarning)
        loop(model, optimizer, batches(), eval_mode=True)
    assert g.report is not None and g.report.batch_description == "32x16"   # the batch was checked too
    nn808 = [d for d in g.report.diagnostics if d.code == "NN808"]
    assert nn808 and "Dropout" in nn808[0].message and nn808[0].fix is not None


def test_a_guarded_healthy_run_is_bit_identical_to_an_unguarded_one():
    plain, plain_opt = make()
    loop(plain, plain_opt, batches(4))
    model, optimizer = make()
    g = nnlint.guard(model, optimizer, config=Config())
    loop(model, optimizer, batches(4))
    assert not g.active
    for (n, a), b in zip(model.named_parameters(), plain.parameters()):
        assert torch.equal(a, b), n
    assert all(torch.equal(optimizer.state[p]["momentum_buffer"], plain_opt.state[q]["momentum_buffer"])
               for p, q in zip(model.parameters(), plain.parameters()))


# ---------------------------------------------------------------------------------------------
# Lightning and the HF Trainer


def lightning_classifier(L, *, zero_grad=True, sign=1.0, eval_mode=False, submodule=False):
    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net, _ = make()
            self.automatic_optimization = zero_grad   # manual optimization is where zero_grad can be forgotten

        def forward(self, x):
            return self.net(x)

        def on_train_batch_start(self, batch, batch_idx):
            if eval_mode:
                self.eval()   # e.g. a validation helper called from a hook, and no train() after it

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = sign * F.cross_entropy(self.net(x) if submodule else self(x), y)
            if not self.automatic_optimization:
                optimizer = self.optimizers()
                self.manual_backward(loss)   # no optimizer.zero_grad()
                optimizer.step()
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

        def train_dataloader(self):
            x, y = zip(*batches(4))
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.cat(x), torch.cat(y)), batch_size=32)

    return Classifier()


@pytest.mark.parametrize("bug, code", [({"zero_grad": False}, "NN807"), ({"eval_mode": True}, "NN808"),
                                       ({"sign": -1.0}, "NN805"), ({"sign": -1.0, "submodule": True}, "NN805"),
                                       ({}, None)])
def test_lightning_two_step_run(lightning, bug, code):
    from nnlint.integrations.lightning import NNLintCallback

    callback = NNLintCallback(on_error="warn", config=Config())
    trainer = lightning.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                                num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLintWarning)
        trainer.fit(lightning_classifier(lightning, **bug))
    codes = {d.code for d in callback.report.diagnostics if d.code >= "NN805"}
    assert codes == ({code} if code else set()), [(d.code, d.message) for d in callback.report.diagnostics]


class HFModel(nn.Module):
    def __init__(self, sign=1.0):
        super().__init__()
        self.net, _ = make()
        self.sign = sign

    def forward(self, features, labels=None):
        logits = self.net(features)
        return {"logits": logits, "loss": self.sign * F.cross_entropy(logits, labels)}


class Rows(torch.utils.data.Dataset):
    def __init__(self):
        x, y = zip(*batches(4))
        self.x, self.y = torch.cat(x), torch.cat(y)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "labels": self.y[i]}


@pytest.mark.parametrize("bug, code", [("sign", "NN805"), ("zero_grad", "NN807"), ("eval", "NN808"), ("", None)])
def test_hf_trainer_two_step_run(hf_trainer, tmp_path, bug, code):
    from nnlint.integrations.transformers import NNLintCallback

    model = HFModel(sign=-1.0 if bug == "sign" else 1.0)
    if bug == "zero_grad":
        model.zero_grad = lambda *args, **kwargs: None    # a model class whose zero_grad does nothing
    if bug == "eval":
        model.train = lambda mode=True: model               # a model class that never leaves eval mode
        for m in model.modules():
            m.training = False
    callback = NNLintCallback(on_error="warn", config=Config())
    args = hf_trainer.TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=32,
                                        learning_rate=1e-3, report_to=[], save_strategy="no", logging_strategy="no",
                                        use_cpu=True, seed=7, disable_tqdm=True, remove_unused_columns=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLintWarning)
        hf_trainer.Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[callback]).train()
    codes = {d.code for d in callback.report.diagnostics if d.code >= "NN805"}
    assert codes == ({code} if code else set()), [(d.code, d.message) for d in callback.report.diagnostics]


def test_the_first_update_is_measured_again_on_the_real_gradients():
    # the guard's batch check has no loss (a surrogate): SGD's update is judged at the first real step
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-7)
    g = nnlint.guard(model, optimizer, on_error="warn", config=Config())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLintWarning)
        loop(model, optimizer, batches())
    nn804 = [d for d in g.report.diagnostics if d.code == "NN804"]
    assert {d.module for d in nn804} == {"0", "2"} and all(d.evidence["ratio"] < 1e-5 for d in nn804)
    assert not nn804[0].evidence["loss_is_surrogate"]
