"""Configuration: `[tool.nnlint]` in the nearest pyproject.toml, and inline `# nnlint: ignore[...]`.

    [tool.nnlint]
    select = ["NN1", "NN2"]            # codes or prefixes; default: all
    ignore = ["NN303"]
    [tool.nnlint.per-module-ignores]
    "encoder.*.attn" = ["NN201"]       # fnmatch globs on qualified module names
    [tool.nnlint.severity]
    NN203 = "error"
    [tool.nnlint.options.NN203]
    dead_fraction_warning = 0.3

Unknown keys, unknown codes and unknown options are errors that name the key.
"""
from __future__ import annotations

import fnmatch
import linecache
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nnlint.errors import ConfigError

KNOWN_KEYS = {"select", "ignore", "per-module-ignores", "severity", "options"}
_INLINE = re.compile(r"#\s*nnlint:\s*ignore(?:\[([A-Za-z0-9_,\s]*)\])?")


@dataclass
class Config:
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    per_module_ignores: dict[str, list[str]] = field(default_factory=dict)
    severity: dict[str, str] = field(default_factory=dict)
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Optional[str] = None   # the pyproject.toml it came from

    def is_ignored(self, diagnostic, trace=None) -> bool:
        from nnlint.registry import matches

        for pattern, codes in self.per_module_ignores.items():
            if fnmatch.fnmatchcase(diagnostic.module, pattern) and matches(diagnostic.code, codes):
                return True
        return inline_ignored(diagnostic)


def inline_ignored(diagnostic) -> bool:
    """`# nnlint: ignore` or `# nnlint: ignore[NN203, NN2]` on the line the diagnostic points at."""
    from nnlint.registry import matches

    loc = diagnostic.location
    if loc is None:
        return False
    m = _INLINE.search(linecache.getline(loc.file, loc.line))
    if m is None:
        return False
    codes = [c for c in re.split(r"[,\s]+", m.group(1) or "") if c]
    return not codes or matches(diagnostic.code, codes)


def find_pyproject(start: str) -> Optional[Path]:
    path = Path(start).resolve()
    if path.is_file():
        path = path.parent
    for folder in (path, *path.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - older Pythons
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
    table = _load_toml(path).get("tool", {}).get("nnlint")
    if table is None:
        return Config()
    return config_from_table(table, str(path))


def config_from_table(table: dict[str, Any], source: str = "[tool.nnlint]") -> Config:
    from nnlint.registry import all_rules, validate_codes

    where = f"{source} [tool.nnlint]" if source.endswith(".toml") else source
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(KNOWN_KEYS))}")

    def codes(value, key) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of rule codes, e.g. [\"NN203\"]")
        bad = validate_codes(value)
        if bad:
            raise ConfigError(f"{where}: {key} names unknown rule code {bad[0]!r}; `nnlint rules` lists them")
        return [v.upper() for v in value]

    cfg = Config(source=source)
    cfg.select = codes(table.get("select", []), "select")
    cfg.ignore = codes(table.get("ignore", []), "ignore")
    pmi = table.get("per-module-ignores", {})
    if not isinstance(pmi, dict):
        raise ConfigError(f"{where}: per-module-ignores must be a table of glob = [codes]")
    cfg.per_module_ignores = {g: codes(v, f"per-module-ignores.{g!r}") for g, v in pmi.items()}
    rules = all_rules()
    for code, level in table.get("severity", {}).items():
        if code.upper() not in rules:
            raise ConfigError(f"{where}: severity names unknown rule code {code!r}")
        if level not in ("error", "warning", "info"):
            raise ConfigError(f"{where}: severity.{code} must be \"error\", \"warning\" or \"info\", not {level!r}")
        cfg.severity[code.upper()] = level
    for code, opts in table.get("options", {}).items():
        cls = rules.get(code.upper())
        if cls is None:
            raise ConfigError(f"{where}: options names unknown rule code {code!r}")
        if not isinstance(opts, dict):
            raise ConfigError(f"{where}: options.{code} must be a table of option = value")
        for key in opts:
            if key not in cls.options:
                known = ", ".join(sorted(cls.options)) or "none"
                raise ConfigError(f"{where}: options.{code} has unknown option {key!r}; {code}'s options: {known}")
        cfg.rule_options[code.upper()] = dict(opts)
    return cfg
