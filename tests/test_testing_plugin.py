"""`nnlint.testing.assert_healthy` and the pytest plugin, run through pytest itself (pytester)."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

# A faulty model and its healthy twin; the test files below import them from `models.py`.
MODELS = '''
import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, dead: bool):
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.head = nn.Linear(32, 4)
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")
        nn.init.constant_(self.fc.bias, -20.0 if dead else 0.0)   # -20: every unit of act is dead
        nn.init.xavier_normal_(self.head.weight)

    def forward(self, x):
        return self.head(self.act(self.fc(x)))


def faulty():
    torch.manual_seed(0)
    return MLP(dead=True)


def healthy():
    torch.manual_seed(0)
    return MLP(dead=False)


def batch():
    return torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
'''


# The files of one pytest session, run once for the tests below (each run imports torch afresh).
SESSION = {
    "test_assert.py": '''
from models import batch, faulty, healthy
from nnlint.testing import assert_healthy


def test_faulty():
    assert_healthy(faulty(), batch())


def test_healthy():
    assert_healthy(healthy(), batch())
''',
    # The dead layer also starves the layers around it of gradient: NN406 reports that consequence
    # under its own code, so the tests that silence the fault name both.
    "test_options.py": '''
import pytest
from models import batch, faulty
from nnlint.config import config_from_table
from nnlint.testing import assert_healthy


def test_ignored():
    assert assert_healthy(faulty(), batch(), ignore=["NN203", "NN406"]).ok


def test_demoted_to_info_passes_unless_fail_on_info():
    demoted = config_from_table({"severity": {"NN203": "info"}, "ignore": ["NN406"]})
    assert_healthy(faulty(), batch(), config=demoted)
    with pytest.raises(AssertionError, match="NN203"):
        assert_healthy(faulty(), batch(), config=demoted, fail_on="info")
''',
    "test_fixture.py": '''
import pytest
from models import batch, faulty, healthy

pytestmark = pytest.mark.nnlint(ignore=["NN4"])   # adds up with the function's own


@pytest.mark.nnlint(ignore=["NN203"])
def test_faulty_with_marker(nnlint_check):
    assert nnlint_check(faulty(), batch()).ok


def test_faulty_without_marker(nnlint_check):
    nnlint_check(faulty(), batch())


def test_healthy_with_fixture(nnlint_check):
    nnlint_check(healthy(), batch())
''',
}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The output of one pytest run over SESSION. In a subprocess, as pytester's runpytest_subprocess
    does (pytester itself is per test): an inline run restores sys.modules afterwards, and torch, with
    the submodules it loads lazily, cannot be imported a second time into one process."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "models.py").write_text(MODELS)
    for name, source in SESSION.items():
        (folder / name).write_text(source)
    return subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "--strict-markers"],
                          cwd=folder, capture_output=True, text=True, timeout=600).stdout


def outcome(out: str, test: str) -> str:
    [status] = re.findall(rf"^(PASSED|FAILED|ERROR) {re.escape(test)}\b", out, re.M) or ["not run"]
    return status


def test_assert_healthy_fails_with_the_report_table_and_passes_on_the_healthy_twin(session):
    assert outcome(session, "test_assert.py::test_faulty") == "FAILED"
    assert outcome(session, "test_assert.py::test_healthy") == "PASSED"
    failure = session.split("_ test_faulty _")[1].split("\n_")[0]
    assert re.search(r"AssertionError: nnlint: \d+ finding\(s\) at or above 'warning'", failure)
    # The table names the module, the code and the measured number.
    assert any("act" in line and "NN203" in line and "100%" in line for line in failure.splitlines()), failure
    # The failure points at the user's line; assert_healthy's own frame is hidden.
    assert "assert_healthy(faulty(), batch())" in failure
    assert "def assert_healthy" not in failure and "__tracebackhide__" not in failure


def test_assert_healthy_ignore_and_fail_on(session):
    assert outcome(session, "test_options.py::test_ignored") == "PASSED"
    assert outcome(session, "test_options.py::test_demoted_to_info_passes_unless_fail_on_info") == "PASSED"


def test_fixture_and_marker(session):
    # --strict-markers: the plugin registers the marker.
    assert outcome(session, "test_fixture.py::test_faulty_with_marker") == "PASSED"
    assert outcome(session, "test_fixture.py::test_healthy_with_fixture") == "PASSED"
    assert outcome(session, "test_fixture.py::test_faulty_without_marker") == "FAILED"
    failure = session.split("_ test_faulty_without_marker _")[1].split("\n_")[0]
    assert "NN203" in failure
    assert "def check(model, batch" not in failure   # the fixture's frame is hidden too


def test_project_configuration_applies(pytester):
    pytester.makepyfile(models=MODELS)
    pytester.makefile(".toml", pyproject='''
        [tool.nnlint]
        ignore = ["NN406"]
        [tool.nnlint.per-module-ignores]
        "act" = ["NN203"]
    ''')
    pytester.makepyfile(test_configured='''
        from models import batch, faulty
        from nnlint.testing import assert_healthy

        def test_faulty_but_configured_away():
            assert_healthy(faulty(), batch())
    ''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_marker_is_listed(pytester):
    pytester.runpytest("--markers").stdout.fnmatch_lines(["@pytest.mark.nnlint(*"])


def test_plugin_is_registered_through_the_pytest11_entry_point():
    assert "nnlint.pytest_plugin" in {e.value for e in entry_points(group="pytest11") if e.name == "nnlint"}


def test_plugin_imports_no_torch():
    # Every pytest run in the environment imports the plugin: it must not cost a torch import.
    code = textwrap.dedent("""
        import sys
        import nnlint.pytest_plugin
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "tabulate", "libcst"))
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_pytest_run_loads_the_plugin_without_torch(pytester):
    pytester.makepyfile(test_plain='''
        import sys

        def test_no_torch(request):
            assert request.config.pluginmanager.has_plugin("nnlint")
            assert "torch" not in sys.modules
    ''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
