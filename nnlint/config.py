"""Configuration: `[tool.nnlint]` in the nearest pyproject.toml, and inline `# nnlint: ignore[...]`.

    [tool.nnlint]
    select = ["NN1", "NN2"]            # codes or prefixes; default: all
    ignore = ["NN303"]
    [tool.nnlint.per-module-ignores]
    "encoder.*.attn" = ["NN201"]       # fnmatch globs on qualified module names
    [tool.nnlint.severity]
    NN203 = "error"
    [tool.nnlint.options.NN203]
    warning_fraction = 0.3

The nearest pyproject.toml that has a `[tool.nnlint]` table wins, as with ruff: a pyproject.toml without
one (a sub-package's) does not hide the project's. Unknown keys, unknown codes, unknown options and
values of the wrong type are errors that name the key.

Inline: `# nnlint: ignore[NN203]` (or a bare `# nnlint: ignore`) on the line that builds the module, or
on the line of a functional call (`F.dropout(x, 0.5)  # nnlint: ignore[NN501]`).
"""
from __future__ import annotations

import fnmatch
import linecache
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nnlint.errors import ConfigError

KNOWN_KEYS = {"select", "ignore", "per-module-ignores", "severity", "options"}
SEVERITY_LEVELS = ("error", "warning", "info")
# `ignore` must end there or open a bracket: `# nnlint: ignored-for-now` is prose, not a suppression.
_INLINE = re.compile(r"#\s*nnlint:\s*ignore(?:\[([A-Za-z0-9_,\s]*)\]|(?![\w-]))")


@dataclass
class Config:
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    per_module_ignores: dict[str, list[str]] = field(default_factory=dict)
    severity: dict[str, str] = field(default_factory=dict)
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Optional[str] = None   # the pyproject.toml it came from

    def is_ignored(self, diagnostic, trace=None) -> bool:
        """Suppressed by a per-module glob, or by an inline comment (see `inline_ignored`)."""
        from nnlint.registry import matches

        for pattern, codes in self.per_module_ignores.items():
            if fnmatch.fnmatchcase(diagnostic.module, pattern) and matches(diagnostic.code, codes):
                return True
        return inline_ignored(diagnostic, trace)


def inline_ignored(diagnostic, trace=None) -> bool:
    """`# nnlint: ignore` or `# nnlint: ignore[NN203, NN2]` on the line the diagnostic points at, or on
    the line that built its module (a finding on a functional call inside `block.forward` points at the
    call, but the user may have silenced the whole module where it is constructed)."""
    lines = [diagnostic.location]
    if trace is not None and diagnostic.module:
        lines.append(trace.location_of(diagnostic.module))
    return any(_line_ignores(loc, diagnostic.code) for loc in lines if loc is not None)


def _line_ignores(loc, code: str) -> bool:
    from nnlint.registry import matches

    m = _INLINE.search(linecache.getline(loc.file, loc.line))
    if m is None:
        return False
    codes = [c for c in re.split(r"[,\s]+", m.group(1) or "") if c]
    return not codes or matches(code, codes)


def find_pyproject(start: str) -> Optional[Path]:
    """The nearest pyproject.toml at or above `start` that has a `[tool.nnlint]` table."""
    path = Path(start).resolve()
    if path.is_file():
        path = path.parent
    for folder in (path, *path.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "nnlint" in _load_toml(candidate).get("tool", {}):
            return candidate
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - older Pythons (pyproject requires tomli there)
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(start: str = ".") -> Config:
    """The `[tool.nnlint]` table of the nearest pyproject.toml at or above `start` (empty Config if none)."""
    path = find_pyproject(start)
    if path is None:
        return Config()
    return config_from_table(_load_toml(path)["tool"]["nnlint"], str(path))


def config_from_table(table: dict[str, Any], source: str = "[tool.nnlint]") -> Config:
    from nnlint.registry import all_rules, validate_codes

    where = f"{source} [tool.nnlint]" if source.endswith(".toml") else source

    def fail(message: str):
        raise ConfigError(f"{where}: {message}")

    def table_at(key: str) -> dict[str, Any]:
        value = table.get(key, {})
        if not isinstance(value, dict):
            fail(f"{key} must be a table, e.g. [tool.nnlint.{key}]")
        return value

    def codes(value, key) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(f"{key} must be a list of rule codes, e.g. [\"NN203\"]")
        bad = validate_codes(value)
        if bad:
            fail(f"{key} names unknown rule code {bad[0]!r}; `nnlint rules` lists them")
        return [v.strip().upper() for v in value]

    def rule_class(code: str, key: str):
        cls = rules.get(code.upper())
        if cls is None:
            fail(f"{key} names unknown rule code {code!r}; `nnlint rules` lists them")
        return cls

    if not isinstance(table, dict):
        fail("must be a table")
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        fail(f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(KNOWN_KEYS))}")
    rules = all_rules()
    cfg = Config(source=source)
    cfg.select = codes(table.get("select", []), "select")
    cfg.ignore = codes(table.get("ignore", []), "ignore")
    cfg.per_module_ignores = {g: codes(v, f"per-module-ignores.{g!r}") for g, v in table_at("per-module-ignores").items()}
    for code, level in table_at("severity").items():
        rule_class(code, "severity")
        if level not in SEVERITY_LEVELS:
            fail(f"severity.{code} must be \"error\", \"warning\" or \"info\", not {level!r}")
        cfg.severity[code.upper()] = level
    for code, opts in table_at("options").items():
        cls = rule_class(code, "options")
        if not isinstance(opts, dict):
            fail(f"options.{code} must be a table of option = value")
        for key, value in opts.items():
            if key not in cls.options:
                known = ", ".join(sorted(cls.options)) or "none"
                fail(f"options.{code} has unknown option {key!r}; {cls.code}'s options: {known}")
            problem = _type_problem(cls.options[key], value)
            if problem:
                fail(f"options.{code}.{key} {problem}")
        cfg.rule_options[code.upper()] = dict(opts)
    return cfg


def _type_problem(default: Any, value: Any) -> Optional[str]:
    """Why `value` cannot stand in for an option whose default is `default` (None when it can): a
    threshold given as the string "0.3" would otherwise fail deep inside a rule, mid-check."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "true or false"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        want = "a number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        want = "a string"
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, list)
        want = "a list"
    else:
        return None
    return None if ok else f"must be {want} (default {default!r}), not {value!r}"
