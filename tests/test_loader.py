"""The loader: the conventions a model file may follow, and one clear error for each way it can fail."""
from __future__ import annotations

import re
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from nnlint.errors import ConfigError, LoadError, ModelRaised
from nnlint.loader import binding_line, load_target, parse_input_shape, parse_model_spec


def write(folder, name: str, source: str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
"""


def line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# ---------------------------------------------------------------------------------------------
# Conventions


def test_build_model_and_sample_batch_with_exact_construction_lines(tmp_path):
    path = write(tmp_path, "net.py", NET + """
def build_model():
    return Net()


def sample_batch():
    return torch.randn(32, 8)
""")
    loaded = load_target(str(path))
    assert type(loaded.model).__name__ == "Net"
    assert loaded.batch.shape == (32, 8)
    assert loaded.target is None and loaded.loss_fn is None and loaded.optimizer is None
    assert loaded.path == path.resolve()
    assert loaded.origins[id(loaded.model.fc1)].line == line_of(path, "self.fc1 =")
    assert loaded.origins[id(loaded.model.fc2)].line == line_of(path, "self.fc2 =")
    assert loaded.origins[id(loaded.model.fc1)].file == str(path.resolve())
    # the batch points at the line that returns it
    assert loaded.origins[id(loaded.batch)].line == line_of(path, "return torch.randn(32, 8)")


def test_module_level_model_and_batch_with_training_setup(tmp_path):
    path = write(tmp_path, "setup.py", NET + """
model = Net()
batch = torch.randn(16, 8)
target = torch.randint(0, 3, (16,))
loss_fn = nn.CrossEntropyLoss()
train_transform = object()


def optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)
""")
    loaded = load_target(str(path))
    assert loaded.batch.shape == (16, 8) and loaded.target.shape == (16,)
    assert isinstance(loaded.loss_fn, nn.CrossEntropyLoss)
    assert isinstance(loaded.optimizer, torch.optim.SGD)
    # the optimizer was built for this very model
    assert {id(p) for p in loaded.optimizer.param_groups[0]["params"]} == {id(p) for p in loaded.model.parameters()}
    assert loaded.origins[id(loaded.optimizer)].line == line_of(path, "return torch.optim.SGD")
    assert loaded.origins[id(loaded.train_transform)].line == line_of(path, "train_transform = object()")
    args = loaded.check_arguments()
    assert set(args) == {"target", "loss_fn", "optimizer", "train_transform", "source_origins", "frozen", "loop"}


def test_a_pair_batch_is_inputs_and_target_only_when_a_loss_is_given(tmp_path):
    body = NET + """
def build_model():
    return Net()


def sample_batch():
    return torch.randn(16, 8), torch.randint(0, 3, (16,))
"""
    without_loss = load_target(str(write(tmp_path, "pair.py", body)))
    assert isinstance(without_loss.batch, tuple) and without_loss.target is None   # model(*batch)
    with_loss = load_target(str(write(tmp_path, "pair_loss.py", body + "\nloss_fn = nn.CrossEntropyLoss()\n")))
    assert with_loss.batch.shape == (16, 8) and with_loss.target.shape == (16,)


def test_local_imports_resolve_and_sys_path_is_restored(tmp_path):
    write(tmp_path, "blocks_for_loader_test.py", NET)
    path = write(tmp_path, "main_model.py", """
        import torch
        from blocks_for_loader_test import Net

        def build_model():
            return Net()

        def sample_batch():
            return torch.randn(4, 8)
        """)
    before = list(sys.path)
    loaded = load_target(str(path))
    assert type(loaded.model).__name__ == "Net"
    assert sys.path == before
    # a layer built in the imported file points there
    assert loaded.origins[id(loaded.model.fc1)].file == str((tmp_path / "blocks_for_loader_test.py").resolve())


def test_files_with_the_same_name_do_not_replace_each_other(tmp_path):
    a = write(tmp_path / "a", "model.py", "import torch\nmodel = torch.nn.Linear(2, 2)\nbatch = torch.randn(4, 2)\n")
    b = write(tmp_path / "b", "model.py", "import torch\nmodel = torch.nn.Linear(3, 3)\nbatch = torch.randn(4, 3)\n")
    assert load_target(str(a)).model.in_features == 2
    assert load_target(str(b)).model.in_features == 3


def test_factory_with_input_shape_makes_a_random_batch_in_the_models_dtype(tmp_path):
    path = write(tmp_path, "factory.py", NET + """
def make_double():
    return Net().double()
""")
    loaded = load_target(str(path), factory="make_double", input_shape=(5, 8))
    assert loaded.batch.shape == (5, 8) and loaded.batch.dtype == torch.float64
    # standard normal, from a fixed seed: the same report twice
    assert torch.equal(loaded.batch, load_target(str(path), factory="make_double", input_shape=(5, 8)).batch)
    as_class = load_target(str(path), factory="Net", input_shape=(2, 8))
    assert type(as_class.model).__name__ == "Net"


def test_input_shape_replaces_the_files_batch(tmp_path):
    path = write(tmp_path, "replace.py", NET + "\nmodel = Net()\nbatch = torch.randn(64, 8)\n")
    assert load_target(str(path), input_shape=(3, 8)).batch.shape == (3, 8)


def test_device_cpu_moves_nothing_visible_and_unknown_cuda_is_a_clear_error(tmp_path):
    path = write(tmp_path, "dev.py", NET + "\nmodel = Net()\nbatch = [torch.randn(4, 8)]\n")
    loaded = load_target(str(path), device="cpu")
    assert loaded.batch[0].device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_target(str(path), device="cuda")


# ---------------------------------------------------------------------------------------------
# Command-line values


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6))
def test_input_shape_round_trips(dims):
    assert parse_input_shape(",".join(map(str, dims))) == tuple(dims)
    assert parse_input_shape("x".join(map(str, dims))) == tuple(dims)
    assert parse_input_shape(str(tuple(dims))) == tuple(dims)


@pytest.mark.parametrize("bad", ["", "8,a", "8,0,3", "-1,3", "8;3", "8.5,3"])
def test_malformed_input_shape(bad):
    with pytest.raises(ConfigError, match="--input-shape .*comma-separated positive integers.*8,3,224,224"):
        parse_input_shape(bad)


def test_model_spec():
    assert parse_model_spec("net.py:make").file == "net.py"
    assert parse_model_spec("dir/net.py:models.make").factory == "models.make"
    assert parse_model_spec("make").file is None
    for bad in ("net.py", "net.py:", "net.py:1abc"):
        with pytest.raises(ConfigError, match="expected file.py:factory"):
            parse_model_spec(bad)


def test_binding_line_finds_defs_assignments_and_imports():
    import ast

    tree = ast.parse("import torch as optimizer\nx = 1\ndef f():\n    if x:\n        return 1\n    return 2\n")
    assert binding_line(tree, "optimizer") == 1
    assert binding_line(tree, "x") == 2
    assert binding_line(tree, "f") == 6
    assert binding_line(tree, "missing") is None


# ---------------------------------------------------------------------------------------------
# Could not load: one clear message each


def test_missing_file_folder_and_not_python(tmp_path):
    with pytest.raises(LoadError, match="nope.py: no such file"):
        load_target(str(tmp_path / "nope.py"))
    with pytest.raises(LoadError, match="is a folder"):
        load_target(str(tmp_path))
    with pytest.raises(LoadError, match="not a Python file"):
        load_target(str(write(tmp_path, "model.txt", "x = 1")))


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "broken.py", "import torch\n\ndef build_model(:\n    pass\n")
    with pytest.raises(LoadError) as info:
        load_target(str(path))
    assert str(info.value).startswith(f"{path}:3: SyntaxError")
    assert "def build_model(:" in str(info.value)


def test_syntax_error_in_an_imported_local_module(tmp_path):
    write(tmp_path, "broken_helper_for_loader.py", "def f(:\n")
    path = write(tmp_path, "uses_broken.py", "import broken_helper_for_loader\n")
    with pytest.raises(LoadError, match=r"broken_helper_for_loader.py:1: SyntaxError"):
        load_target(str(path))


@pytest.mark.parametrize("where", ["import", "build_model", "sample_batch", "optimizer"])
def test_user_code_raising_shows_the_users_frames_only(tmp_path, where):
    raising = "raise ValueError('no weights at /data/w.pt')"
    body = {
        "import": f"{raising}\n",
        "build_model": f"def build_model():\n    {raising}\n\ndef sample_batch():\n    return torch.randn(2, 2)\n",
        "sample_batch": f"def build_model():\n    return nn.Linear(2, 2)\n\ndef sample_batch():\n    {raising}\n",
        "optimizer": "model = nn.Linear(2, 2)\nbatch = torch.randn(2, 2)\n\n"
                     f"def optimizer(model):\n    {raising}\n",
    }[where]
    path = write(tmp_path, f"raises_{where}.py", "import torch\nfrom torch import nn\n" + body)
    with pytest.raises(ModelRaised) as info:
        load_target(str(path))
    message = str(info.value)
    assert "raised ValueError: no weights at /data/w.pt" in message
    assert f'File "{path.resolve()}", line {line_of(path, raising)}' in message
    assert "nnlint/" not in message and "importlib" not in message


def test_nothing_usable_says_what_to_define(tmp_path):
    path = write(tmp_path, "nothing.py", "import torch\nx = 1\n")
    with pytest.raises(LoadError) as info:
        load_target(str(path))
    message = str(info.value)
    assert "build_model()" in message and "sample_batch()" in message and "`model` and `batch`" in message
    assert "def build_model():" in message and "def sample_batch():" in message
    assert "--model" in message and "--input-shape" in message


@pytest.mark.parametrize("source, expected", [
    ("def build_model():\n    return nn.Linear(2, 2)\n", "defines build_model() but no sample_batch()"),
    ("model = nn.Linear(2, 2)\n", "defines `model` but no `batch`"),
    ("def sample_batch():\n    return torch.randn(2, 2)\n", "defines sample_batch() but no build_model()"),
])
def test_half_a_convention_names_the_missing_half(tmp_path, source, expected):
    path = write(tmp_path, "half.py", "import torch\nfrom torch import nn\n" + source)
    with pytest.raises(LoadError, match=re.escape(expected)):
        load_target(str(path))


@pytest.mark.parametrize("returned, expected", [
    ("3", r"build_model\(\) returned 3 \(type int\), not a torch.nn.Module"),
    ("nn.Linear", r"the class Linear, not a model: build one, e.g. `Linear\(\)`"),
    ("(nn.Linear(2, 2), None)", r"a tuple of 2 items; give the model alone"),
])
def test_factory_returning_a_non_module(tmp_path, returned, expected):
    path = write(tmp_path, "nonmodule.py", f"import torch\nfrom torch import nn\ndef build_model():\n"
                 f"    return {returned}\ndef sample_batch():\n    return torch.randn(2, 2)\n")
    with pytest.raises(LoadError, match=expected):
        load_target(str(path))


def test_unknown_factory_lists_what_the_file_defines(tmp_path):
    path = write(tmp_path, "defs.py", NET + "\ndef make_net():\n    return Net()\n")
    with pytest.raises(LoadError, match=r"has no 'make_nte'.*it defines: Net, make_net"):
        load_target(str(path), factory="make_nte", input_shape=(2, 8))
    with pytest.raises(LoadError, match="needs a batch: pass --input-shape"):
        load_target(str(path), factory="make_net")


def test_sys_exit_at_import_and_a_loss_class(tmp_path):
    path = write(tmp_path, "script.py", "import sys\nsys.exit(3)\n")
    with pytest.raises(LoadError, match=r"called sys.exit\(3\).*if __name__ == \"__main__\""):
        load_target(str(path))
    path = write(tmp_path, "lossclass.py", "import torch\nfrom torch import nn\nmodel = nn.Linear(2, 2)\n"
                 "batch = torch.randn(2, 2)\nloss_fn = nn.MSELoss\n")
    with pytest.raises(LoadError, match=r"loss_fn = MSELoss\(\)"):
        load_target(str(path))
