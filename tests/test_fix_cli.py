"""`nnlint fix FILE` end to end: the diff on stdout and nothing written by default, `--write` (atomic,
idempotent, and `nnlint check` passes afterwards), `--unsafe-fixes`, a syntax error, and every faulty
fixture of the project: fixed and written, it checks clean, or what is left is named as not fixable
automatically."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnlint.cli import main

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).parent / "fix_cases"


def nnlint(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def model_file(tmp_path):
    def copy(name: str) -> Path:
        path = tmp_path / f"{name}.py"
        shutil.copy(CASES / f"{name}.py", path)
        return path
    return copy


def test_the_default_is_a_diff_and_nothing_is_written(model_file):
    path = model_file("reinit_in_place")
    before = path.read_bytes()
    result = nnlint("fix", str(path))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"--- a/{path}\n+++ b/{path}\n")
    assert '+        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")' in result.stdout
    assert "would fix 2 finding(s)" in result.stderr and "nothing written" in result.stderr
    assert path.read_bytes() == before


def test_write_applies_it_and_then_the_check_passes_and_a_second_run_changes_nothing(model_file):
    path = model_file("deep_mlp")
    mode = 0o640
    os.chmod(path, mode)
    result = nnlint("fix", str(path), "--write")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert f"wrote {path}" in result.stderr
    assert "for layer in self.hidden:" in path.read_text()
    assert os.stat(path).st_mode & 0o777 == mode
    assert nnlint("check", str(path)).exit_code == 0
    written = path.read_bytes()
    again = nnlint("fix", str(path), "--write")
    assert again.exit_code == 0 and "nothing to fix" in again.stderr
    assert path.read_bytes() == written
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temporary file left behind


def test_unsafe_fixes_only_with_the_flag(model_file):
    path = model_file("sequential_sigmoid")
    safe = nnlint("fix", str(path))
    assert "nn.ReLU(), nn.Linear(64, 64)" not in safe.stdout
    assert re.search(r"not applied, unsafe.*\n  NN201 1:", safe.stderr)
    unsafe = nnlint("fix", str(path), "--unsafe-fixes")
    assert "+    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU()," in unsafe.stdout
    assert "apply with: nnlint fix" in unsafe.stderr and "--write --unsafe-fixes" in unsafe.stderr


def test_select_limits_the_fixes(model_file):
    path = model_file("conv_modes")
    result = nnlint("fix", str(path), "--unsafe-fixes", "--select", "NN503")
    assert "track_running_stats" in result.stdout and "Dropout2d" not in result.stdout


def test_a_syntax_error_exits_2_and_names_the_line(tmp_path):
    path = tmp_path / "broken.py"
    text = "import torch\n\n\ndef build_model():\n    return torch.nn.Linear(2, 2\n"
    path.write_text(text)
    result = nnlint("fix", str(path), "--write")
    assert result.exit_code == 2
    assert f"{path}:5" in result.stderr and "changed nothing" in result.stderr
    assert path.read_text() == text


def test_a_failed_write_leaves_the_file_whole(model_file, monkeypatch):
    path = model_file("reinit_in_place")
    before = path.read_bytes()

    def replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", replace)
    result = CliRunner().invoke(main, ["fix", str(path), "--write"])
    assert result.exit_code == 2
    assert "cannot write the fixed file (disk full); the file is unchanged" in result.stderr
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def faulty_fixtures() -> list[str]:
    names = []
    for path in sorted((ROOT / "fixtures").glob("*.py")):
        text = path.read_text()
        if re.search(r"#\s*expect:\s*NN\d", text):
            names.append(path.name)
    return names


@pytest.fixture(scope="module")
def fixtures_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fixtures") / "fixtures"
    shutil.copytree(ROOT / "fixtures", folder)
    return folder


@pytest.mark.parametrize("name", faulty_fixtures())
def test_every_faulty_fixture_is_fixed_or_says_what_is_left(name, fixtures_copy):
    path = fixtures_copy / name
    original = path.read_text()
    try:
        fixed = nnlint("fix", str(path), "--write", "--unsafe-fixes")
        assert fixed.exit_code in (0, 1), fixed.stderr
        after = nnlint("check", str(path), "--format", "json")
        import json

        left = {(d["code"], d["module"]) for d in json.loads(after.stdout)["diagnostics"]
                if d["severity"] in ("error", "warning")}
        if left:
            named = fixed.stderr.split("not fixable automatically:")[-1] if "not fixable automatically:" in fixed.stderr else ""
            for code, module in left:
                assert re.search(rf"^  {code} ", named, re.M), f"{code} {module} is left but not named:\n{fixed.stderr}"
        assert (after.exit_code == 0) == (not left)
    finally:
        path.write_text(original)   # siblings import each other: leave the copy as it was
