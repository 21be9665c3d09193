"""The source fixer: for every rule that declares a fix, the edit it makes to a small model file (a
golden diff, tests/fix_cases/<case>.diff), and that the edited file, checked again from scratch, no
longer reports the finding. Plus where edits go (in place, the class's __init__, the parent's, the
factory, after a module-level model), what is kept (comments, formatting), and what is refused (a
file with a syntax error, a fix that cannot be placed in this file): never a half-edited file.

NNLINT_UPDATE_SNAPSHOTS=1 rewrites the golden diffs; read them before committing.
"""
from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

import nnlint
from nnlint.fix.kind import all_kinds
from nnlint.errors import LoadError
from nnlint.fix.filefix import fix_file
from nnlint.loader import load_target
from nnlint.registry import all_rules

CASES = Path(__file__).parent / "fix_cases"

# case -> (the rules whose source fix it shows, fix_file options)
SOURCE_CASES = {
    "reinit_in_place": ({"NN101", "NN103"}, {}),              # nn.init calls edited in place, comments kept
    "exploding_cnn": ({"NN402", "NN103"}, {}),                # the init call inside a loop, edited once
    "deep_mlp": ({"NN401", "NN103"}, {}),                     # default init: one loop at the end of __init__
    "pooled_chain": ({"NN401", "NN103"}, {}),                 # max-pools and dropouts: measured stds, one per layer
    "block_init": ({"NN203", "NN103"}, {}),                   # every Block alike: edits go into Block.__init__
    "block_mixed": ({"NN103"}, {"select": ["NN103"]}),        # only some Blocks: the parent names them
    "vgg_isinstance": ({"NN103", "NN401", "NN203"}, {}),      # modules() + isinstance, edited and added
    "residual_blocks": ({"NN403"}, {}),                       # after the parent's init loop, one loop
    "bn_residual": ({"NN403"}, {}),                           # the last norm weight, in Block.__init__
    "relu_end_residual": ({"NN403"}, {}),                     # a branch ending in ReLU: zero weight, bias 0.01
    "tanh_head": ({"NN202", "NN103"}, {}),                    # the measured std, where Xavier still saturates
    "overconfident_head": ({"NN304"}, {}),                    # final layer scaled down, bias zeroed
    "prior_head": ({"NN103"}, {}),                            # the convs' Kaiming, and the logits held at their spread
    "module_level": ({"NN102", "NN203", "NN301"}, {"unsafe": True}),   # after the module-level statements
    "sequential_sigmoid": ({"NN201"}, {"unsafe": True}),      # `return nn.Sequential(...)` bound to a name
    "functional_calls": ({"NN201", "NN501"}, {"unsafe": True}),   # torch.sigmoid -> torch.relu; training=
    "conv_modes": ({"NN502", "NN503", "NN504"}, {"unsafe": True}),
    "raw_images": ({"NN301", "NN302"}, {"unsafe": True}),     # one normalization, first thing in forward
    "correlated_features": ({"NN303"}, {"unsafe": True}),     # ZCA whitening in a forward pre-hook
    "dropout_before_bn": ({"NN505"}, {"unsafe": True}),
    # the escalation ladder, on the fixtures themselves (fixtures/<case>.py): each step a golden diff
    "activation_narrow_sigmoid": ({"NN201"}, {"unsafe": True}),        # narrow: LeakyReLU(0.1) in the loop
    "activation_tanh_comprehension": ({"NN201", "NN202", "NN103"}, {"unsafe": True}),   # in a comprehension
    "propagation_exp_hidden": ({"NN402"}, {"unsafe": True}),           # re-init fails: exp -> relu
    "activation_dead_relu_deep": ({"NN203"}, {"unsafe": True}),        # re-init fails: relu -> leaky_relu
    "propagation_scaled_chain": ({"NN401"}, {"unsafe": True}),         # re-init fails: a norm per layer
    "gradients_normalized_stem": ({"NN405"}, {}),                     # a stem under its BatchNorm at 0.001: Kaiming
    "double_softmax": ({"NN601"}, {"unsafe": True}),         # nn.Softmax(dim=1) -> nn.Identity()
    "sigmoid_output": ({"NN601"}, {"unsafe": True}),         # torch.sigmoid(x) -> x
    "imbalanced_head": ({"NN606"}, {}),                       # the bias at the log-priors, before the return
    "improper_activations": ({"NN204"}, {"unsafe": True}),  # exp() and F.softmax(dim=) -> relu, nn.Softmax -> ReLU
    "batch_first": ({"NN701"}, {"unsafe": True}),           # batch_first=True added to the construction call
    "bias_before_norm": ({"NN707"}, {"unsafe": True}),      # bias=False added, or bias=True replaced
}
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def copy_case(name: str, folder: Path) -> Path:
    """The case's model file (tests/fix_cases/, else the fixture of that name) copied into `folder`."""
    path = folder / f"{name}.py"
    own = CASES / f"{name}.py"
    shutil.copy(own if own.exists() else FIXTURES / f"{name}.py", path)
    return path


def check_golden(name: str, text: str) -> None:
    path = CASES / f"{name}.diff"
    if os.environ.get("NNLINT_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden diff {path.name}; create it with NNLINT_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"{path.name} changed; rerun with NNLINT_UPDATE_SNAPSHOTS=1 if intended"


def check_file(path: Path):
    loaded = load_target(str(path))
    return nnlint.check(loaded.model, loaded.batch, **loaded.check_arguments())


# Fixes of the training code (the model file's optimizer(model) and train loop), not of the model:
# their source cases are in the test file named, which must exercise them.
ELSEWHERE = {
    "NN506": "test_rules_optimizer.py", "NN801": "test_rules_optimizer.py", "NN807": "test_rules_optimizer.py",
    "NN808": "test_rules_optimizer.py",
    # a parameter in two groups cannot be built by a torch constructor (it refuses), only appended by
    # hand afterwards: the fixer says what to change instead of editing (test_fix_runtime's SOURCE_ONLY)
    "NN802": "test_fix_runtime.py",
}


def test_every_rule_that_declares_a_fix_has_a_source_case():
    fixable = {code for code, cls in all_rules().items() if cls.fixable != "none"}
    covered = set().union(*(codes for codes, _ in SOURCE_CASES.values()))
    here = Path(__file__).resolve().parent
    covered |= {code for code, where in ELSEWHERE.items() if f'"{code}"' in (here / where).read_text()}
    assert fixable <= covered, f"no source case for {sorted(fixable - covered)}"


@pytest.mark.parametrize("name", sorted(SOURCE_CASES))
def test_the_source_fix_makes_the_expected_edit_and_the_file_checks_clean(name, tmp_path):
    codes, options = SOURCE_CASES[name]
    path = copy_case(name, tmp_path)
    before = check_file(path)
    assert codes <= {d.code for d in before.diagnostics}, f"{name} should show {sorted(codes)}"
    original = path.read_text()
    run = fix_file(path, **options)
    assert path.read_text() == original          # fix_file plans and verifies; it writes nothing
    check_golden(name, run.diff(f"{name}.py"))
    assert codes <= {o.diagnostic.code for o in run.result.applied}, run.result.summary()
    path.write_text(run.fixed)                   # checked again from scratch, as a user would
    after = check_file(path)
    assert not codes & {d.code for d in after.diagnostics}, [d.message for d in after.diagnostics]
    again = fix_file(path, **options)            # and fixing the fixed file changes nothing
    assert not again.changed and not again.result.applied


def test_the_fixed_source_is_plain_torch():
    for diff in CASES.glob("*.diff"):
        added = [line for line in diff.read_text().splitlines() if line.startswith("+") and not line.startswith("+++")]
        assert not any("import nnlint" in line or "nnlint." in line for line in added), diff.name


def test_a_syntax_error_is_named_and_nothing_is_edited(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\n\ndef build_model(:\n    return torch.nn.Linear(2, 2)\n")
    with pytest.raises(LoadError) as err:
        fix_file(path)
    message = str(err.value)
    assert "broken.py:3" in message and "syntax error" in message and "changed nothing" in message
    assert path.read_text().startswith("import torch\n\ndef build_model(:")


def test_a_fix_that_cannot_be_placed_here_is_named_and_left_out(tmp_path):
    # the model is built in another file: this one can only say what to change there
    copy_case("raw_images", tmp_path)
    path = tmp_path / "uses_raw_images.py"
    path.write_text(textwrap.dedent("""\
        import torch

        from raw_images import build_model  # noqa: F401


        def sample_batch():
            torch.manual_seed(2)
            return torch.randint(0, 256, (8, 3, 8, 8)).float()
        """))
    run = fix_file(path, unsafe=True)
    assert not run.changed
    assert {o.diagnostic.code for o in run.result.not_fixable} == {"NN301", "NN302"}
    assert all("cannot place it in this file" in o.detail and "build_model" in o.detail for o in run.result.not_fixable)


def test_a_fix_whose_finding_survives_is_failed_and_not_written(tmp_path, monkeypatch):
    from nnlint.fix import source

    def useless(fix, d, ctx):   # an applier that edits nothing that matters
        ctx.edits.insertions.append(source.Insertion(None, "imports", ["import math"]))
        return "imported math"

    monkeypatch.setattr(all_kinds()["zero_init"], "edit", useless)
    path = copy_case("residual_blocks", tmp_path)
    run = fix_file(path)
    assert not run.changed
    assert {o.diagnostic.code for o in run.result.failed} == {"NN403"}
    assert "still reports" in run.result.failed[0].detail


def test_unsafe_fixes_need_unsafe(tmp_path):
    path = copy_case("sequential_sigmoid", tmp_path)
    run = fix_file(path)
    assert "nn.Sigmoid()" in run.fixed
    # the ReLU after the sigmoid's all-positive outputs has dead units a re-init cannot revive: its
    # ladder's next step, a LeakyReLU, is unsafe too
    skipped = {o.diagnostic.code: o for o in run.result.skipped_unsafe}
    assert set(skipped) == {"NN201", "NN203"}
    assert skipped["NN201"].step == 0 and skipped["NN203"].step == 1


def test_two_functional_calls_in_one_forward_are_two_findings_and_both_are_fixed(tmp_path):
    path = tmp_path / "two_calls.py"
    path.write_text(textwrap.dedent("""\
        import torch
        import torch.nn.functional as F
        from torch import nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(8, 32)
                self.fc2 = nn.Linear(32, 32)
                self.fc3 = nn.Linear(32, 2)

            def forward(self, features):
                h = self.fc1(features).tanh()
                return self.fc3(self.fc2(F.tanh(h)))


        def build_model():
            torch.manual_seed(0)
            return Net()


        def sample_batch():
            torch.manual_seed(1)
            return {"features": torch.randn(64, 8)}
        """))
    run = fix_file(path, unsafe=True, select=["NN201"])
    assert [(o.diagnostic.code, o.diagnostic.location.line) for o in run.result.applied] == [("NN201", 14), ("NN201", 15)]
    assert "h = self.fc1(features).relu()" in run.fixed and "self.fc2(F.relu(h))" in run.fixed


def test_the_comment_over_an_added_init_names_the_initializer_it_introduces():
    from nnlint.rulekit import reinit_fix

    def why(fix):
        return all_kinds()[fix.kind].inits(fix, lambda name: None)[0].spec.why

    assert why(reinit_fix(None, "fc", "relu")) == "Kaiming init for the relu that follows"
    assert why(reinit_fix(None, "fc", "tanh")) == "Xavier init for the tanh that follows"
    assert why(reinit_fix(None, "fc", "selu")) == "LeCun normal init for the selu that follows"
    # NN202's measured std is not Xavier, and the comment must not say it is
    loaded = load_target(str(CASES / "tanh_head.py"))
    [d] = nnlint.check(loaded.model, loaded.batch, select=["NN202"]).diagnostics
    assert d.fix.params.spec.initializer == "normal_"
    assert why(d.fix).startswith("std measured on the batch")


CONV_LOOP = '''
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, width=16, depth=3):
        super().__init__()
        layers = []
        for i in range(depth):
            layers += [nn.Conv2d(1 if i == 0 else width, width, 3, padding=1), nn.Dropout(0.5), nn.BatchNorm2d(width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width * 64, 4)
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.head(torch.flatten(self.body(x), 1))


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    return torch.randn(32, 1, 8, 8), torch.randint(0, 4, (32,))


loss_fn = F.cross_entropy
'''


def test_fixes_that_load_only_one_at_a_time_end_instead_of_retrying_forever(tmp_path):
    # three layers built by one line in a loop: each edit of it loads alone, the three together do
    # not; the fixer once retried them together without end (benchmarks/fixbench's cnn3x16_dropout)
    path = tmp_path / "model.py"
    path.write_text(CONV_LOOP)
    run = fix_file(path, unsafe=True)
    applied = {o.diagnostic.code for o in run.result.applied}
    assert "NN505" in applied and "nn.Identity()" in run.fixed
    assert {o.diagnostic.code for o in run.result.not_fixable + run.result.failed} >= {"NN707"}
    assert path.read_text() == CONV_LOOP
