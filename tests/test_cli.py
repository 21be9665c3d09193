"""The command line, end to end: exit codes, the could-not-run messages, formats, selection, colors,
and that the commands which need no model never import torch.

Most tests run in-process with click's CliRunner; a few run the installed console script in a real
subprocess (a pipe, and a pseudo-terminal for colors), as a user would.
"""
from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cli_run import assert_could_not_run, run
from nnlint.cli import main, use_color
from nnlint.registry import all_rules

HAS_NN101 = "NN101" in all_rules()
needs_nn101 = pytest.mark.skipif(not HAS_NN101, reason="rule NN101 (zero-weights) is not in the catalog yet")

# A hidden layer with an all-zero weight (NN101's planted fault), built on line 7.
ZERO_NET = """
import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(model[2].weight)
    return model


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 16)
"""

# A model built by a factory (no convention), that announces itself on stdout while it is built.
FACTORY = """
from torch import nn


def make_net(width=32):
    print("building the net")
    return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 4))
"""

MISMATCH = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc1(x)


model = Net()
batch = torch.randn(8, 100)
"""

RAISES_IN_FORWARD = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) / self.scale(x)

    def scale(self, x):
        raise RuntimeError("scale table not loaded")


model = Net()
batch = torch.randn(8, 4)
"""


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def codes_reported(result) -> set[str]:
    return {d["code"] for d in json.loads(result.stdout)["diagnostics"]}


# ---------------------------------------------------------------------------------------------
# Exit codes


@needs_nn101
def test_findings_exit_1_and_the_text_report(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    result = run("check", str(path))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{path}: Sequential on a batch of 64x16 (train")
    row = next(line for line in lines if "NN101" in line)
    assert row.split()[:4] == ["2", "NN101", "error", "7"]     # module 2, built on line 7 of the file
    assert re.search(r"^\d+ problems? \(\d+ errors?, \d+ warnings?, \d+ info\)", result.stdout, re.M)
    assert "\x1b[" not in result.stdout


@needs_nn101
def test_the_fix_command_is_named_once_the_cli_has_one(tmp_path, monkeypatch):
    import click

    path = write(tmp_path, "zero.py", ZERO_NET)
    if "fix" not in main.commands:
        assert "nnlint fix" not in run("check", str(path), "--select", "NN101").stdout
        monkeypatch.setitem(main.commands, "fix", click.Command("fix"))
    assert f"fixable with `nnlint fix {path}`" in run("check", str(path), "--select", "NN101").stdout


@needs_nn101
def test_clean_exits_0_with_one_line(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET.replace("    nn.init.zeros_(model[2].weight)\n", ""))
    result = run("check", str(path), "--select", "NN101")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(rf"{re.escape(str(path))}: no problems found \(Sequential on a batch of 64x16, [<\d.]+ s\)\n",
                        result.stdout)


@needs_nn101
def test_info_findings_alone_exit_0(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    (tmp_path / "pyproject.toml").write_text('[tool.nnlint]\nselect = ["NN101"]\n[tool.nnlint.severity]\nNN101 = "info"\n')
    result = run("check", str(path))
    assert result.exit_code == 0, result.output
    assert "NN101" in result.stdout and "info" in result.stdout


def test_every_result_exits_0_or_1_and_json_is_valid(tmp_path):
    """Whatever the catalog holds today, a model that runs gives exit 0 or 1 and a valid JSON report."""
    path = write(tmp_path, "zero.py", ZERO_NET)
    result = run("check", str(path), "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == (0 if doc["summary"]["ok"] else 1)
    assert doc["file"] == str(path) and doc["model"] == "Sequential" and doc["batch"] == "64x16"
    assert isinstance(doc["diagnostics"], list) and isinstance(doc["seconds"], (int, float))
    if HAS_NN101:
        assert any(d["code"] == "NN101" and d["module"] == "2" and d["location"]["line"] == 7
                   for d in doc["diagnostics"])


# ---------------------------------------------------------------------------------------------
# Could not run: exit 2, one message, no traceback


def test_missing_file(tmp_path):
    assert_could_not_run(run("check", str(tmp_path / "nope.py")), "nope.py: no such file")


def test_file_defines_nothing_usable(tmp_path):
    path = write(tmp_path, "empty.py", "import torch\nx = 1\n")
    assert_could_not_run(run("check", str(path)), "build_model()", "sample_batch()", "def build_model():")


def test_user_code_raises_shows_the_users_frames(tmp_path):
    path = write(tmp_path, "raises.py", RAISES_IN_FORWARD)
    message = assert_could_not_run(run("check", str(path)), "RuntimeError: scale table not loaded")
    raise_line = path.read_text().splitlines().index('        raise RuntimeError("scale table not loaded")') + 1
    assert f'File "{path}", line {raise_line}, in scale' in message
    assert "nnlint/" not in message and "torch/" not in message


def test_batch_does_not_fit_names_the_layer(tmp_path):
    path = write(tmp_path, "mismatch.py", MISMATCH)
    assert_could_not_run(run("check", str(path)), "fc1 (Linear) expects inputs whose last dimension is 784")


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "broken.py", "import torch\ndef build_model(:\n")
    assert_could_not_run(run("check", str(path)), f"{path}:2: SyntaxError")


def test_unknown_codes_are_named(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    assert_could_not_run(run("check", str(path), "--select", "NN1,NN999"), "--select: unknown rule code NN999")
    assert_could_not_run(run("check", str(path), "--ignore", "XY1", "--ignore", "NN998"),
                         "--ignore: unknown rule codes XY1, NN998")


def test_malformed_input_shape_and_model_spec(tmp_path):
    path = write(tmp_path, "factory.py", FACTORY)
    assert_could_not_run(run("check", "--model", f"{path}:make_net", "--input-shape", "8,a"),
                         "--input-shape '8,a'", "8,3,224,224")
    assert_could_not_run(run("check", "--model", str(path), "--input-shape", "8,16"), "expected file.py:factory")


def test_bad_configuration(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    (tmp_path / "pyproject.toml").write_text('[tool.nnlint]\nselct = ["NN1"]\n')
    assert_could_not_run(run("check", str(path)), "unknown key 'selct'")


def test_no_file_at_all_is_a_usage_error():
    result = run("check")
    assert result.exit_code == 2 and "nnlint check model.py" in result.output


def test_html_not_available_yet_is_said_before_loading(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nnlint.output.html", None)   # as if html.py did not exist
    path = write(tmp_path, "zero.py", ZERO_NET)
    assert_could_not_run(run("check", str(path), "--html", str(tmp_path / "r.html")),
                         "html output is not available yet")


def test_html_into_a_missing_folder_is_said_before_loading(tmp_path):
    path = write(tmp_path, "empty.py", "x = 1\n")   # would fail to load: the --html problem comes first
    assert_could_not_run(run("check", str(path), "--html", str(tmp_path / "no" / "r.html")),
                         f"--html {tmp_path / 'no' / 'r.html'}: the folder {tmp_path / 'no'} does not exist")


def test_unexpected_exception_asks_for_a_bug_report(tmp_path, monkeypatch):
    import nnlint.api

    def broken(*args, **kwargs):
        raise KeyError("stats")

    monkeypatch.setattr(nnlint.api, "check", broken)
    path = write(tmp_path, "zero.py", ZERO_NET)
    result = run("check", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith("nnlint: internal error: KeyError: 'stats'")
    assert "bug in nnlint" in result.stderr and "Traceback" not in result.stderr
    debug = run("check", str(path), env={"NNLINT_DEBUG": "1"})
    assert debug.exit_code == 2 and "Traceback (most recent call last)" in debug.stderr


# ---------------------------------------------------------------------------------------------
# Options


@needs_nn101
def test_select_and_ignore_by_prefix(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    assert codes_reported(run("check", str(path), "--format", "json", "--select", "NN10")) == {"NN101"}
    assert "NN101" in codes_reported(run("check", str(path), "--format", "json", "--select", "nn1"))
    assert not any(c.startswith("NN1") for c in codes_reported(run("check", str(path), "--format", "json",
                                                                       "--ignore", "NN1")))
    assert "NN101" not in codes_reported(run("check", str(path), "--format", "json", "--ignore", "NN2,NN101"))


@needs_nn101
def test_config_applies_and_flags_go_on_top(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    (tmp_path / "pyproject.toml").write_text('[tool.nnlint]\nignore = ["NN101"]\n')
    assert "NN101" not in codes_reported(run("check", str(path), "--format", "json"))
    (tmp_path / "pyproject.toml").write_text('[tool.nnlint]\nselect = ["NN3"]\n')
    assert codes_reported(run("check", str(path), "--format", "json", "--select", "NN101")) == {"NN101"}


def test_factory_with_input_shape_and_prints_kept_off_stdout(tmp_path):
    path = write(tmp_path, "factory.py", FACTORY)
    result = run("check", "--model", f"{path}:make_net", "--input-shape", "8,16", "--format", "json")
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(result.stdout)            # the user's print went to stderr
    assert doc["batch"] == "8x16" and doc["model"] == "Sequential" and doc["file"] == str(path)
    assert "building the net" in result.stderr
    # FILE given and --model naming the factory alone
    assert run("check", str(path), "--model", "make_net", "--input-shape", "8,16").exit_code in (0, 1)


def test_html_report_is_written(tmp_path):
    pytest.importorskip("nnlint.output.html")
    path = write(tmp_path, "zero.py", ZERO_NET)
    out = tmp_path / "report.html"
    result = run("check", str(path), "--html", str(out))
    assert result.exit_code in (0, 1)
    assert out.read_text().startswith("<!DOCTYPE html>") and f"wrote the HTML report to {out}" in result.stderr


def test_other_formats_are_looked_up_by_name(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    for name in ("sarif", "github"):
        result = run("check", str(path), "--format", name)
        assert result.exit_code in (0, 1, 2)
        if result.exit_code == 2:
            assert "not available yet" in result.stderr


# ---------------------------------------------------------------------------------------------
# rules / rule


def test_rules_lists_the_catalog():
    result = run("rules")
    assert result.exit_code == 0
    assert result.stdout.split()[:5] == ["code", "name", "severity", "fixable", "summary"] or not all_rules()
    for code, cls in all_rules().items():
        assert re.search(rf"^  {code}\s+{cls.name}\s+{cls.severity}\s+{cls.fixable}\s", result.stdout, re.M)


def test_rule_prints_its_documentation():
    if not all_rules():
        pytest.skip("no rules in the catalog yet")
    code, cls = next(iter(all_rules().items()))
    for key in (code, code.lower(), cls.name):
        result = run("rule", key)
        assert result.exit_code == 0
        assert result.stdout.startswith(f"# {code} {cls.name}\n")
        assert cls.documentation() in result.stdout


def test_unknown_rule_exits_2_with_a_suggestion():
    result = run("rule", "NN9999")
    assert result.exit_code == 2 and result.stderr.startswith("nnlint: error: unknown rule 'NN9999'")
    if "NN203" in all_rules():
        assert "did you mean dead-relu" in run("rule", "dead-rlu").stderr


# ---------------------------------------------------------------------------------------------
# Real processes: the console script, pipes, terminals, import cost


def console_script() -> str:
    found = shutil.which("nnlint", path=os.path.dirname(sys.executable)) or shutil.which("nnlint")
    if found is None:
        pytest.skip("the nnlint console script is not installed (pip install -e .)")
    return found


def test_torch_is_not_imported_by_help_rules_and_rule():
    code = textwrap.dedent("""
        import sys
        from nnlint.cli import main
        for args in (["--help"], ["check", "--help"], ["rules"], ["rule", sys.argv[1]], ["rule", "NN9999"]):
            try:
                main(args)
            except SystemExit:
                pass
        assert "torch" not in sys.modules, "torch was imported"
        """)
    first = next(iter(all_rules()), "NN203")
    proc = subprocess.run([sys.executable, "-c", code, first], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@needs_nn101
def test_console_script_piped_is_plain_and_exits_1(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    proc = subprocess.run([console_script(), "check", str(path)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "NO_COLOR"})
    assert proc.returncode == 1, proc.stderr
    assert "NN101" in proc.stdout and "\x1b[" not in proc.stdout


def run_in_terminal(args: list[str], env: dict) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal (isatty() is True there), as in an interactive shell."""
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(args, stdout=child_fd, stderr=subprocess.PIPE, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:   # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    return proc.wait(timeout=120), b"".join(chunks).decode()


@needs_nn101
def test_colors_on_a_terminal_unless_no_color(tmp_path):
    path = write(tmp_path, "zero.py", ZERO_NET)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    code, out = run_in_terminal([console_script(), "check", str(path), "--select", "NN101"], env)
    assert code == 1 and "\x1b[31m" in out
    code, out = run_in_terminal([console_script(), "check", str(path), "--select", "NN101"], {**env, "NO_COLOR": "1"})
    assert code == 1 and "NN101" in out and "\x1b[" not in out


def test_use_color(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(Stream(True)) and not use_color(Stream(False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Stream(True))
    monkeypatch.setenv("NO_COLOR", "")          # no-color.org: set but empty does not count
    assert use_color(Stream(True))


def test_python_dash_m_version():
    proc = subprocess.run([sys.executable, "-m", "nnlint", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "nnlint, version" in proc.stdout
