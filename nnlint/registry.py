"""The rule base class and the catalog: every rule module under nnlint.rules, found by walking it.

Importing rules never imports torch (rules read a Trace of plain numbers), so `nnlint rules` and
`nnlint rule CODE` stay fast.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, ClassVar, Iterable, Iterator, Optional

from nnlint.diagnostics import Diagnostic, Fix, Location


class Rule:
    """Base class of every rule. A subclass sets the class attributes and implements `check`.

    The subclass docstring is the rule's documentation (ruff's shape: What it does / Why is this bad? /
    Example / Use instead / Options / Fix safety / References); `nnlint rule CODE` prints it.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[str]                      # default severity
    summary: ClassVar[str]                       # one line for `nnlint rules`
    options: ClassVar[dict[str, Any]] = {}       # documented thresholds and their defaults
    fixable: ClassVar[str] = "none"              # "safe" | "unsafe" | "none"

    def __init__(self, options: Optional[dict[str, Any]] = None, severity: Optional[str] = None):
        merged = dict(self.options)
        for key, value in (options or {}).items():
            if key not in merged:
                raise KeyError(f"{self.code} has no option {key!r}; its options are: {', '.join(sorted(merged)) or 'none'}")
            merged[key] = value
        self.opts = merged
        self.severity_override = severity

    def check(self, trace) -> Iterable[Diagnostic]:  # pragma: no cover - abstract
        raise NotImplementedError

    def diagnostic(self, module: str, message: str, *, severity: Optional[str] = None,
                   location: Optional[Location] = None, evidence: Optional[dict] = None,
                   fix: Optional[Fix] = None) -> Diagnostic:
        """Build a Diagnostic carrying this rule's code and name, with any configured severity override."""
        return Diagnostic(
            code=self.code,
            name=self.name,
            severity=self.severity_override or severity or self.severity,
            module=module,
            message=message,
            location=location,
            evidence=evidence or {},
            fix=fix,
        )

    @classmethod
    def documentation(cls) -> str:
        # cleandoc, not dedent: the docstring's first line starts right after the quotes, unindented,
        # and dedent would then leave every later line indented (a code block, in markdown).
        return inspect.cleandoc(cls.__doc__ or "").strip()


_catalog: Optional[dict[str, type[Rule]]] = None


def _walk_rule_modules() -> Iterator[Any]:
    package = importlib.import_module("nnlint.rules")
    for info in pkgutil.walk_packages(package.__path__, prefix="nnlint.rules."):
        yield importlib.import_module(info.name)


def all_rules() -> dict[str, type[Rule]]:
    """Every rule class by code, sorted by code."""
    global _catalog
    if _catalog is None:
        found: dict[str, type[Rule]] = {}
        for module in _walk_rule_modules():
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, Rule) and obj is not Rule and obj.__module__ == module.__name__:
                    if obj.code in found:
                        raise RuntimeError(f"rule code {obj.code} is defined twice")
                    found[obj.code] = obj
        _catalog = dict(sorted(found.items()))
    return _catalog


def matches(code: str, patterns: Iterable[str]) -> bool:
    """True when `code` is selected by any pattern: a full code (NN203), a prefix (NN2, NN20) or ALL."""
    for p in patterns:
        p = p.strip().upper()
        if p == "ALL" or code.startswith(p):
            return True
    return False


def validate_codes(patterns: Iterable[str]) -> list[str]:
    """Return the patterns that select no rule at all (typos the user should hear about)."""
    codes = list(all_rules())
    return [p for p in patterns if p.strip() and not any(matches(c, [p]) for c in codes)]


def select_rules(select: Optional[Iterable[str]] = None, ignore: Optional[Iterable[str]] = None) -> list[type[Rule]]:
    chosen = []
    for code, cls in all_rules().items():
        if select and not matches(code, select):
            continue
        if ignore and matches(code, ignore):
            continue
        chosen.append(cls)
    return chosen
