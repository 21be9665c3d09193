"""Models people name rather than write: `nnlint check --model package.module:callable --input-shape ...`
and `--model transformers:AutoModelForCausalLM --config config.json` (built from the file, nothing
downloaded). Every mistake is one `nnlint: error:` line that says what to do, exit 2.

torchvision is not installed in CI: its tests skip, and where it is absent the README's command must
say what to install. transformers is (CI's second pass): a tiny GPT-2 configuration written here."""
from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest

from cli_run import assert_could_not_run, run
from nnlint.loader import parse_model_spec

NETS = """
import torch
from torch import nn


def make_net(zero=True):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    for layer in (net[0], net[2]):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    if zero:
        nn.init.zeros_(net[2].weight)
    return net


def healthy_net():
    return make_net(zero=False)


answer = 42


def not_a_model():
    return answer
"""

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 128, "n_positions": 64,
        "bos_token_id": 0, "eos_token_id": 0}


def one_line_error(result, *fragments: str) -> str:
    message = assert_could_not_run(result, *fragments)
    assert len(message.strip().splitlines()) == 1, message
    return message


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package of the user's own in the current folder, importable as `mynets.models`."""
    (tmp_path / "mynets").mkdir()
    (tmp_path / "mynets" / "__init__.py").write_text("")
    (tmp_path / "mynets" / "models.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import sys

    for name in [n for n in sys.modules if n.split(".")[0] == "mynets"]:
        del sys.modules[name]


def write_config(folder, name="gpt2.json", **changes):
    path = folder / name
    path.write_text(json.dumps({**GPT2, **changes}))
    return str(path)


def test_model_specs_tell_files_from_modules():
    assert parse_model_spec("torchvision.models:resnet50").module == "torchvision.models"
    assert parse_model_spec("transformers:AutoModelForCausalLM").factory == "AutoModelForCausalLM"
    assert parse_model_spec("net.py:make").module is None and parse_model_spec("net.py:make").file == "net.py"
    assert parse_model_spec("models/net:make").file == "models/net"   # a path, even without .py
    assert parse_model_spec("make").file is None and parse_model_spec("make").module is None


def test_a_named_model_is_checked_and_its_planted_fault_found(package):
    result = run("check", "--model", "mynets.models:make_net", "--input-shape", "64,16", "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "Sequential" and report["batch"] == "64x16" and report["file"] is None
    assert [d["module"] for d in report["diagnostics"] if d["code"] == "NN101"] == ["2"]
    healthy = run("check", "--model", "mynets.models:healthy_net", "--input-shape", "64,16")
    assert healthy.exit_code == 0, healthy.output
    assert "nnlint fix" not in healthy.stdout   # there is no file of the user's to fix


def test_named_model_mistakes_say_what_to_do(package):
    one_line_error(run("check", "--model", "nosuchpkg.models:net", "--input-shape", "2,16"),
                   "no module named 'nosuchpkg'; install it (pip install nosuchpkg) or check the spelling")
    one_line_error(run("check", "--model", "mynets.models:make_nett", "--input-shape", "2,16"),
                   "mynets.models has no 'make_nett'; did you mean make_net?")
    one_line_error(run("check", "--model", "mynets.models:answer", "--input-shape", "2,16"),
                   "--model mynets.models:answer is a int, not a function or class that builds the model")
    one_line_error(run("check", "--model", "mynets.models:not_a_model", "--input-shape", "2,16"),
                   "returned 42 (type int), not a torch.nn.Module")
    one_line_error(run("check", "--model", "mynets.models:make_net"), "needs a batch shape: pass --input-shape")
    one_line_error(run("check", "model.py", "--model", "mynets.models:make_net", "--input-shape", "2,16"),
                   "no model file to give (model.py)")
    one_line_error(run("fix", "--model", "mynets.models:make_net", "--input-shape", "2,16"),
                   "check it with: nnlint check --model mynets.models:make_net")


def test_config_is_only_for_a_named_model_and_must_be_a_json_file_with_a_model_type(package, tmp_path):
    (tmp_path / "model.py").write_text("import torch\nmodel = torch.nn.Linear(4, 2)\nbatch = torch.randn(8, 4)\n")
    one_line_error(run("check", "model.py", "--config", write_config(tmp_path)), "a model file builds its own model")
    spec = ["check", "--model", "transformers:AutoModelForCausalLM", "--input-shape", "2,16", "--config"]
    one_line_error(run(*spec, str(tmp_path / "nope.json")), "nope.json: no such file; give the model's config.json")
    (tmp_path / "broken.json").write_text('{"model_type": "gpt2",')
    one_line_error(run(*spec, str(tmp_path / "broken.json")), "broken.json: not valid JSON (line 1")
    (tmp_path / "untyped.json").write_text('{"n_layer": 2}')
    one_line_error(run(*spec, str(tmp_path / "untyped.json")), 'has no "model_type" (e.g. "model_type": "gpt2")')


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None, reason="transformers is installed")
def test_a_config_without_transformers_says_what_to_install(tmp_path):
    one_line_error(run("check", "--model", "transformers:AutoModelForCausalLM", "--input-shape", "2,16",
                       "--config", write_config(tmp_path)), "is a Hugging Face configuration: install transformers")


# ---------------------------------------------------------------------------------------------
# torchvision (not installed in CI)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_the_readme_s_torchvision_command_without_torchvision_says_what_to_install():
    one_line_error(run("check", "--model", "torchvision.models:resnet50", "--input-shape", "2,3,224,224"),
                   "no module named 'torchvision'; install it (pip install torchvision)")


def test_the_readme_s_torchvision_command_checks_resnet50(torchvision):
    result = run("check", "--model", "torchvision.models:resnet50", "--input-shape", "2,3,224,224", "--format", "json")
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["model"] == "ResNet" and report["batch"] == "2x3x224x224"


# ---------------------------------------------------------------------------------------------
# transformers, from a config file


def check_gpt2(folder, *extra, **changes):
    config = write_config(folder, "-".join(["gpt2", *map(str, changes.values())]) + ".json", **changes)
    return run("check", "--model", "transformers:AutoModelForCausalLM", "--config", config, "--input-shape", "2,16",
               *extra)


def test_a_causal_lm_is_built_from_its_config_on_token_ids_and_checked(transformers, tmp_path):
    result = check_gpt2(tmp_path, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "GPT2LMHeadModel" and report["batch"] == "{input_ids: 2x16}"
    again = json.loads(check_gpt2(tmp_path, "--format", "json").stdout)   # built from a fixed seed
    assert again["diagnostics"] == report["diagnostics"]


def test_a_config_that_zeroes_the_init_is_found(transformers, tmp_path):
    result = check_gpt2(tmp_path, "--format", "json", initializer_range=0.0)   # every weight drawn at std 0
    assert result.exit_code == 1, result.output
    zeros = {d["module"] for d in json.loads(result.stdout)["diagnostics"] if d["code"] == "NN101"}
    assert {"transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"} <= zeros


def test_transformers_mistakes_say_what_to_do(transformers, tmp_path):
    config = write_config(tmp_path)
    one_line_error(run("check", "--model", "transformers:AutoModelForCausalLM", "--input-shape", "2,16"),
                   "builds a model from a configuration: pass --config config.json")
    one_line_error(run("check", "--model", "transformers:AutoModelForCasualLM", "--config", config,
                       "--input-shape", "2,16"), "transformers has no 'AutoModelForCasualLM'; did you mean "
                                                 "AutoModelForCausalLM")
    one_line_error(check_gpt2(tmp_path, model_type="gpt7"), "model_type 'gpt7' is not one this transformers",
                   "did you mean", "gpt2")
    one_line_error(run("check", "--model", "transformers:AutoModelForImageClassification", "--config", config,
                       "--input-shape", "2,16"), "cannot be built from --config", "(a gpt2 configuration)")


def test_the_readme_s_config_example_runs_as_written(transformers, tmp_path):
    import re
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [block] = re.findall(r"^```bash\n(cat > gpt2-config.json.*?)^```", readme, re.M | re.S)
    script = block.replace("nnlint check", f"{shlex.quote(sys.executable)} -m nnlint check")
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("no problems found (GPT2LMHeadModel on a batch of {input_ids: 2x16}") == 2
