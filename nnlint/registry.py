"""The rule base class and the catalog: every rule module under nnlint.rules, found by walking it.

Importing rules never imports torch (rules read a Trace of plain numbers), so `nnlint rules` and
`nnlint rule CODE` stay fast.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Optional

from nnlint.diagnostics import Diagnostic, Fix, Location

# What a rule may read of a trace, besides the model's structure: the training forward's ops and
# statistics, the gradients of the backward, the eval-mode pass, the batch's inputs, the loss and
# targets, the optimizer, the train transform; and what a probe (nnlint.probes) measured, by the
# probe's name. The guard re-runs the rules that read "gradients" on a real step's gradients; a probe
# runs only when a selected rule reads it.
TRACE_PARTS = frozenset({"forward", "gradients", "eval", "inputs", "loss", "optimizer", "transform", "modules"})
# What an unnamed finding (module "") is about: reports label it "input" or "model".
SUBJECTS = ("module", "input", "model")


@dataclass(frozen=True)
class Chart:
    """A plot a rule contributes to the HTML report: the series of nnlint.output.depth it draws (through
    depth: "activations", "dead", "saturated", "gradients", "residual"; per input channel: "input_mean",
    "input_std"), its words, and which of the rule's options are reference lines on it.

    `references` pairs an option with its label ("warning_fraction", "warning" draws `warning > 0.2`);
    `nested` counts findings on modules inside or around a point (a block's branch layer); `flag(options,
    mean, std)` says which input channels a finding of the rule is about.
    """

    series: str
    title: str
    caption: str
    x_label: str = ""
    y_label: str = ""
    empty: str = ""
    log_y: bool = False
    y_range: Optional[tuple[float, float]] = None
    references: tuple[tuple[str, str], ...] = ()
    nested: bool = False
    primary: str = ""
    secondary: str = ""
    flag: Optional[Callable[[dict, float, float], bool]] = None


# What every example's code starts with: it is a model file of the module-level convention (`model` and
# `batch`, optionally `loss_fn`, `target`, `optimizer(model)`), run as it is shown.
EXAMPLE_PREAMBLE = "import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n"


@dataclass(frozen=True)
class Example:
    """A small model file a rule carries (Fixit style): a faulty one it must fire on, on `module` ("" for
    the input or the model), and a healthy twin it must stay quiet on. The test suite is generated from
    them, and `nnlint rule CODE` shows them as the rule's Example and Use instead."""

    code: str
    module: Optional[str] = None      # faulty: the module the finding names
    faulty: bool = True
    fixed: bool = True                # faulty, fixable rule: nnlint.fix clears the finding
    note: str = ""                    # healthy: other remedies, said after the code

    @property
    def source(self) -> str:
        """The example as a file that runs: the imports, then its code."""
        return EXAMPLE_PREAMBLE + inspect.cleandoc(self.code) + "\n"


def Faulty(code: str, module: str, *, fixed: bool = True) -> Example:
    return Example(code, module, True, fixed)


def Healthy(code: str, note: str = "") -> Example:
    return Example(code, None, False, note=note)


class Rule:
    """Base class of every rule. A subclass sets the class attributes and implements `check`.

    The subclass docstring is the rule's documentation (ruff's shape: What it does / Why is this bad? /
    Example / Use instead / Options / Fix safety / References); `nnlint rule CODE` prints it.
    `reads` names the parts of the trace it reads (TRACE_PARTS), `about` what its unnamed findings are
    about, `chart` the plot it adds to the HTML report, `cause` which findings are one problem.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[str]                      # default severity
    summary: ClassVar[str]                       # one line for `nnlint rules`
    options: ClassVar[dict[str, Any]] = {}       # documented thresholds and their defaults
    fixable: ClassVar[str] = "none"              # "safe" | "unsafe" | "none"
    reads: ClassVar[frozenset[str]] = frozenset({"forward"})
    about: ClassVar[str] = "module"
    chart: ClassVar[Optional[Chart]] = None
    examples: ClassVar[tuple[Example, ...]] = ()
    # The evidence keys whose values make two of its findings one cause (one row in the reports: the
    # same wrong init in a loop over five layers); None: every finding is its own.
    cause: ClassVar[Optional[tuple[str, ...]]] = None

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
                   fix: Optional[Fix] = None, escalation: Iterable[Optional[Fix]] = ()) -> Diagnostic:
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
            escalation=[f for f in escalation if f is not None],
        )

    @classmethod
    def documentation(cls) -> str:
        """The docstring, with the rule's own examples as its Example and Use instead sections, before
        its Options: the code a user reads is code the test suite runs."""
        # cleandoc, not dedent: the docstring's first line starts right after the quotes, unindented,
        # and dedent would then leave every later line indented (a code block, in markdown).
        doc = inspect.cleandoc(cls.__doc__ or "").strip()
        shown = [("Example", [e for e in cls.examples if e.faulty][:1]),
                 ("Use instead", [e for e in cls.examples if not e.faulty][:1])]
        sections = "".join(f"## {title}\n```python\n{e.source}```\n" + (f"{inspect.cleandoc(e.note)}\n" if e.note else "")
                           + "\n" for title, found in shown for e in found)
        if not sections:
            return doc
        at = doc.find("## Options")
        return (doc[:at] + sections + doc[at:]) if at >= 0 else f"{doc}\n\n{sections.rstrip()}"


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
                    _validate(obj)
                    found[obj.code] = obj
        _catalog = dict(sorted(found.items()))
    return _catalog


def _validate(cls: type[Rule]) -> None:
    """A rule that describes itself wrongly is a bug to hear about at once, not in a report."""
    from nnlint.probes.base import all_probes

    known = TRACE_PARTS | set(all_probes())
    unknown = set(cls.reads) - known
    if unknown:
        raise RuntimeError(f"{cls.code} reads unknown trace parts {sorted(unknown)}; known: {sorted(known)}")
    if cls.about not in SUBJECTS:
        raise RuntimeError(f"{cls.code}: about must be one of {SUBJECTS}, not {cls.about!r}")
    if cls.fixable not in ("safe", "unsafe", "none"):
        raise RuntimeError(f"{cls.code}: fixable must be safe, unsafe or none, not {cls.fixable!r}")
    if cls.examples and "## Example" in (cls.__doc__ or ""):
        raise RuntimeError(f"{cls.code}: its docstring has an Example section; its examples are shown instead")
    for option, _ in cls.chart.references if cls.chart is not None else ():
        if option not in cls.options:
            raise RuntimeError(f"{cls.code}'s chart draws option {option!r}, which the rule does not have")


def rule_of(code: str) -> Optional[type[Rule]]:
    """The rule class of a code, or None (a diagnostic built by hand, a rule no longer installed)."""
    return all_rules().get(code)


def rules_reading(part: str) -> list[str]:
    """The codes of the rules that read this part of the trace ("gradients", "eval" ...)."""
    return [code for code, cls in all_rules().items() if part in cls.reads]


def charts() -> list[tuple[type[Rule], Chart]]:
    """Every rule's chart, in code order."""
    return [(cls, cls.chart) for cls in all_rules().values() if cls.chart is not None]


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
