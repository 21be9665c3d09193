"""`[tool.nnlint]` in pyproject.toml and inline `# nnlint: ignore[...]` comments."""
from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest
import torch

import nnlint
from nnlint.config import Config, config_from_table, load_config
from nnlint.errors import ConfigError

MODEL_SOURCE = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleDict({{"fc": nn.Linear(16, 32)}})
        self.act = nn.ReLU(){act_comment}
        self.head = nn.Linear(32, 4)
        nn.init.kaiming_normal_(self.encoder.fc.weight, nonlinearity="relu")
        nn.init.constant_(self.encoder.fc.bias, -5.0)   # every unit of act is dead

    def forward(self, x):
        h = self.act(self.encoder["fc"](x))
        return self.head(F.dropout(h, 0.5)){dropout_comment}
'''


def load_net(tmp_path, act_comment="", dropout_comment="", name="net_model"):
    path = tmp_path / f"{name}.py"
    path.write_text(MODEL_SOURCE.format(act_comment=act_comment, dropout_comment=dropout_comment))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # inspect finds a class's source through sys.modules
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.Net(), torch.randn(64, 16)


def codes(report):
    return sorted((d.code, d.module) for d in report.diagnostics)


def write_pyproject(folder, body):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(textwrap.dedent(body))
    return folder / "pyproject.toml"


# ---------------------------------------------------------------------------------------------
# Finding and reading the table


def test_nearest_pyproject_with_a_nnlint_table_wins(tmp_path):
    write_pyproject(tmp_path, """
        [tool.nnlint]
        ignore = ["NN302"]
        [tool.nnlint.per-module-ignores]
        "encoder.*.attn" = ["NN201"]
        [tool.nnlint.severity]
        nn203 = "error"
        [tool.nnlint.options.NN203]
        warning_fraction = 0.3
    """)
    # A sub-package's pyproject.toml without [tool.nnlint] does not hide the project's (ruff's rule).
    write_pyproject(tmp_path / "pkg", """
        [project]
        name = "pkg"
    """)
    (tmp_path / "pkg" / "model.py").write_text("")
    cfg = load_config(str(tmp_path / "pkg" / "model.py"))
    assert cfg.source == str(tmp_path / "pyproject.toml")
    assert cfg.ignore == ["NN302"]
    assert cfg.per_module_ignores == {"encoder.*.attn": ["NN201"]}
    assert cfg.severity == {"NN203": "error"}
    assert cfg.rule_options == {"NN203": {"warning_fraction": 0.3}}


def test_no_pyproject_means_defaults(tmp_path):
    assert load_config(str(tmp_path)) == Config()


@pytest.mark.parametrize("table, names", [
    ({"selct": ["NN2"]}, "'selct'"),
    ({"select": ["NN999"]}, "'NN999'"),
    ({"ignore": ["XX1"]}, "'XX1'"),
    ({"ignore": "NN203 NN201"}, "'NN203 NN201'"),
    ({"ignore": [203]}, "ignore must be a list of rule codes"),
    ({"per-module-ignores": {"encoder.*": ["NN777"]}}, "per-module-ignores.'encoder.*'"),
    ({"per-module-ignores": ["encoder.*"]}, "per-module-ignores must be a table"),
    ({"severity": {"NN999": "error"}}, "'NN999'"),
    ({"severity": {"NN203": "fatal"}}, "severity.NN203"),
    ({"options": {"NN999": {}}}, "'NN999'"),
    ({"options": {"NN203": {"dead_fraction": 0.3}}}, "'dead_fraction'"),
    ({"options": {"NN203": {"warning_fraction": "0.3"}}}, "options.NN203.warning_fraction must be a number"),
    ({"options": {"NN203": 0.3}}, "options.NN203 must be a table"),
])
def test_bad_configuration_is_an_error_naming_the_key(table, names):
    with pytest.raises(ConfigError) as err:
        config_from_table(table, "/p/pyproject.toml")
    assert names in str(err.value)
    assert str(err.value).startswith("/p/pyproject.toml [tool.nnlint]: ")


def test_unknown_key_in_a_pyproject_names_the_file_and_key(tmp_path):
    write_pyproject(tmp_path, """
        [tool.nnlint]
        per_module_ignores = {}
    """)
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.nnlint\]: unknown key 'per_module_ignores'"):
        load_config(str(tmp_path))


def test_invalid_toml_is_a_config_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.nnlint\nselect = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(tmp_path))


def test_prefixes_and_lower_case_codes_are_accepted():
    cfg = config_from_table({"select": ["nn2", "NN30"], "ignore": ["ALL"]})
    assert cfg.select == ["NN2", "NN30"] and cfg.ignore == ["ALL"]


# ---------------------------------------------------------------------------------------------
# What the configuration does to a real check


def test_per_module_ignore_glob_silences_only_matching_modules(tmp_path):
    model, batch = load_net(tmp_path)
    assert ("NN203", "act") in codes(nnlint.check(model, batch))
    quiet = config_from_table({"per-module-ignores": {"ac*": ["NN2"]}})
    assert ("NN203", "act") not in codes(nnlint.check(model, batch, config=quiet))
    elsewhere = config_from_table({"per-module-ignores": {"encoder.*": ["NN203"]}})
    assert ("NN203", "act") in codes(nnlint.check(model, batch, config=elsewhere))


def test_severity_override_and_rule_options(tmp_path):
    model, batch = load_net(tmp_path)
    [dead] = nnlint.check(model, batch).by_code("NN203")
    assert dead.severity == "error"
    [demoted] = nnlint.check(model, batch, config=config_from_table({"severity": {"NN203": "info"}})).by_code("NN203")
    assert demoted.severity == "info"
    # All 32 units are dead: a threshold above 100% can never be crossed.
    lenient = config_from_table({"options": {"NN203": {"warning_fraction": 1.0}}})
    assert nnlint.check(model, batch, config=lenient).by_code("NN203") == []


def test_select_and_ignore_from_config(tmp_path):
    model, batch = load_net(tmp_path)
    assert {c for c, _ in codes(nnlint.check(model, batch))} >= {"NN203", "NN501"}
    only_mode = nnlint.check(model, batch, config=config_from_table({"select": ["NN5"]}))
    assert {c for c, _ in codes(only_mode)} == {"NN501"}
    no_mode = nnlint.check(model, batch, config=config_from_table({"ignore": ["NN501"]}))
    assert "NN501" not in {c for c, _ in codes(no_mode)}


# ---------------------------------------------------------------------------------------------
# Inline suppressions


@pytest.mark.parametrize("comment, silenced", [
    ("  # nnlint: ignore[NN203]", True),
    ("  # nnlint: ignore[nn201, NN2]", True),
    ("  # nnlint: ignore", True),
    ("  # nnlint:ignore[NN203]  (units are revived by warm-up)", True),
    ("  # nnlint: ignore[NN201]", False),
    ("  # nnlint: ignored for now", False),
    ("  # see nnlint docs", False),
])
def test_inline_ignore_on_the_line_that_builds_the_module(tmp_path, comment, silenced):
    model, batch = load_net(tmp_path, act_comment=comment, name=f"net_{abs(hash(comment))}")
    found = ("NN203", "act") in codes(nnlint.check(model, batch))
    assert found is not silenced


def test_inline_ignore_on_a_functional_call_line(tmp_path):
    model, batch = load_net(tmp_path, dropout_comment="  # nnlint: ignore[NN501]", name="net_dropout_ignored")
    assert "NN501" not in {c for c, _ in codes(nnlint.check(model, batch))}
    model, batch = load_net(tmp_path, name="net_dropout_plain")
    assert "NN501" in {c for c, _ in codes(nnlint.check(model, batch))}
