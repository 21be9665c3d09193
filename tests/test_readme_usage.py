"""Every way-of-using-nnlint section of the README runs as written: its code blocks are taken from
README.md and run against a small healthy model file (`model.py`, with build_model() and sample_batch())
in a scratch project folder."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

MODEL = '''
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(256, 10)
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc1.bias)
        nn.init.xavier_normal_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    return torch.randn(64, 784, generator=torch.Generator().manual_seed(1))
'''


def blocks(heading: str, language: str) -> list[str]:
    """The fenced `language` blocks of the README's `## heading...` section."""
    sections = re.split(r"^(?=## )", README.read_text(), flags=re.M)
    [section] = [s for s in sections if s.startswith(f"## {heading}")] or [None]
    assert section, f"README.md has no section {heading!r}"
    found = re.findall(rf"^```{language}\n(.*?)^```", section, re.M | re.S)
    assert found, f"README section {heading!r} has no {language} block"
    return found


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("model", None)
    yield tmp_path
    sys.modules.pop("model", None)


def run(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_pytest_section(project):
    for i, block in enumerate(blocks("In your tests", "python")):
        (project / f"test_readme_{i}.py").write_text(block)
    result = run(f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider", project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_guard_section(project):
    [block] = blocks("Before training", "python")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    guard = namespace["guard"]
    assert guard.report is not None and guard.report.ok   # it checked the first batch
    assert not guard.active and not namespace["model"]._forward_pre_hooks   # and left


def test_lightning_section(project, lightning):
    L = lightning
    import torch
    import torch.nn.functional as F
    from model import build_model, sample_batch

    class LitModel(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = build_model()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(sample_batch(), torch.randint(0, 10, (64,)))
    namespace = {"LitModel": LitModel, "train_loader": torch.utils.data.DataLoader(data, batch_size=32)}
    [block] = blocks("Lightning", "python")
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["trainer"].callbacks[0].report.ok


def test_hugging_face_section(project, hf_trainer):
    import torch
    import torch.nn.functional as F
    from model import build_model, sample_batch

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_model()

        def forward(self, pixels, labels=None):
            logits = self.net(pixels)
            return {"logits": logits} if labels is None else {"loss": F.cross_entropy(logits, labels), "logits": logits}

    x, y = sample_batch()[:16], torch.randint(0, 10, (16,))
    namespace = {"model": Classifier(), "train_dataset": [{"pixels": x[i], "labels": y[i]} for i in range(16)]}
    [block] = blocks("Hugging Face", "python")
    exec(compile(block, "README.md", "exec"), namespace)
    [callback] = [c for c in namespace["trainer"].callback_handler.callbacks if type(c).__name__ == "NNLintCallback"]
    assert callback.report.ok and "pixels" in callback.report.batch_description


def test_ci_section(project, yaml):
    [commands] = blocks("In CI", "bash")
    for line in commands.strip().splitlines():
        command = line.split("#")[0].strip().replace("nnlint ", f"{shlex.quote(sys.executable)} -m nnlint ", 1)
        result = run(command, project)
        assert result.returncode == 0, (line, result.stdout, result.stderr)
    log = json.loads((project / "nnlint.sarif").read_text())
    assert log["version"] == "2.1.0" and log["runs"][0]["results"] == []
    [workflow] = blocks("In CI", "yaml")
    steps = yaml.safe_load(workflow)
    sarif_step = next(step["run"] for step in steps if "run" in step)
    assert sarif_step == "nnlint check model.py --format sarif > nnlint.sarif"
    assert any(step.get("with", {}).get("sarif_file") == "nnlint.sarif" for step in steps)


def test_configuration_section(project):
    import tomllib

    from nnlint.config import _INLINE, config_from_table

    [toml] = blocks("Configuration", "toml")
    cfg = config_from_table(tomllib.loads(toml)["tool"]["nnlint"], "README.md")
    assert cfg.per_module_ignores == {"encoder.*.attn": ["NN201"]} and cfg.severity == {"NN203": "error"}
    [inline] = blocks("Configuration", "python")
    assert _INLINE.search(inline).group(1) == "NN201"


def test_pre_commit_section(project, yaml):
    [config] = blocks("pre-commit", "yaml")
    [hook] = yaml.safe_load(config)["repos"][0]["hooks"]
    assert hook["language"] == "system" and hook["pass_filenames"] is False
    command = hook["entry"].replace("nnlint", f"{shlex.quote(sys.executable)} -m nnlint", 1)
    result = run(" ".join([command, *hook["args"]]), project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout
