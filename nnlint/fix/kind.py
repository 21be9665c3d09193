"""A fix kind is one unit: its typed parameters, its safety, the parameter inits it asks for, the runtime
half that changes the model in memory and the source half that edits the user's file.

    @register
    class ZeroInit(FixKind):
        name = "zero_init"
        Params = ZeroInitParams
        safe = True
        def inits(self, fix, std_of): ...          # the ParamInits both halves apply
        def apply(self, fix, ctx): ...             # runtime: RuntimeContext -> Applied
        def edit(self, fix, diagnostic, ctx): ...  # source: SourceContext -> what the edit does

A rule builds its fix with `ZeroInit.make(target, description, ZeroInitParams(...))`. The registry
refuses a second kind of the same name, a kind whose Params is not a dataclass, and a kind missing
either half, so the runtime and the source fixer always know the same kinds. Nothing here imports torch
or libcst: the rules, and `nnlint rules`, import the kinds' parameter types without paying for them.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

from nnlint.diagnostics import Diagnostic, Fix


class CannotFix(Exception):
    """The runtime half cannot apply the fix to this model; the message says why and what to do."""


class CannotPlace(Exception):
    """The source half cannot put this edit in the file; the message says what to change by hand."""


@dataclass(frozen=True)
class CallSite:
    """A torch call in the user's forward, where a finding about a functional op points."""

    file: Optional[str]
    line: Optional[int]
    func: str = ""                # the torch function called there: "sigmoid", "dropout"
    functional: bool = True       # False when a torch.nn module made the call (its own module is swapped)


@dataclass
class Applied:
    """What a runtime half did, and the parameter inits it asks the round to apply."""

    detail: str
    inits: list = field(default_factory=list)     # specs.ParamInit


class FixKind:
    """The base of every kind; see the module docstring. `init_priority` decides which kind's init wins
    when two fixes of one round name one parameter: the re-init that comes with an activation swap
    matches the new activation, a zero-init is a deliberate choice, a plain re-init comes last."""

    name: ClassVar[str]
    Params: ClassVar[type]
    safe: ClassVar[bool]                  # True: the architecture is unchanged (re-inits, modes)
    init_priority: ClassVar[int] = 0      # which kind's init wins when two name one parameter (higher)
    order: ClassVar[int] = 1              # fixes of a lower order are planned first in a round
    # The most invasive repairs (a norm inserted after every layer of a chain) wait for a round in which
    # nothing less invasive is left to try: a swapped activation or a re-init elsewhere often makes them
    # unnecessary.
    last_resort: ClassVar[bool] = False

    @classmethod
    def make(cls, target: str, description: str, params: Any) -> Fix:
        if not isinstance(params, cls.Params):
            raise TypeError(f"{cls.name} fix needs {cls.Params.__name__} params, not {type(params).__name__}")
        return Fix(kind=cls.name, target=target, description=description, params=params, safe=cls.safe)

    def modules(self, fix: Fix) -> set[str]:
        """The modules the fix changes (a module built together with others in a loop can be edited
        only when the round changes all of them alike)."""
        return {fix.target}

    def inits(self, fix: Fix, std_of: Callable[[str], Optional[float]]) -> list:
        """The ParamInits this fix asks for (both halves apply them, one per parameter a round)."""
        return []

    def apply(self, fix: Fix, ctx) -> Applied:          # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def edit(self, fix: Fix, diagnostic: Diagnostic, ctx) -> str:   # pragma: no cover - likewise
        raise NotImplementedError


KINDS: dict[str, FixKind] = {}


def register(cls: type) -> type:
    """Add a kind to the registry, after checking it is whole."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no name")
    if name in KINDS:
        raise ValueError(f"fix kind {name!r} is registered twice ({type(KINDS[name]).__name__}, {cls.__name__})")
    if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
        raise TypeError(f"fix kind {name!r}: Params must be a dataclass")
    if not isinstance(getattr(cls, "safe", None), bool):
        raise TypeError(f"fix kind {name!r} must say whether it is safe")
    for half in ("apply", "edit"):
        if getattr(cls, half) is getattr(FixKind, half):
            raise TypeError(f"fix kind {name!r} has no {'runtime' if half == 'apply' else 'source'} half ({half})")
    KINDS[name] = cls()
    return cls


def all_kinds() -> dict[str, FixKind]:
    """Every fix kind, by name (importing nnlint.fix.kinds registers them)."""
    package = importlib.import_module("nnlint.fix.kinds")
    for info in pkgutil.iter_modules(package.__path__, prefix="nnlint.fix.kinds."):
        importlib.import_module(info.name)
    return KINDS


def kind_of(fix: Fix) -> FixKind:
    return all_kinds()[fix.kind]
