"""The data a rule produces: diagnostics, their locations and the fixes attached to them.

Plain dataclasses with no torch import, so that emitters, the CLI and the pytest plugin can use them
without paying for torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

SEVERITIES = ("error", "warning", "info")
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Fix:
    """What to do about a diagnostic, as data: the runtime and source fixers both read it.

    kind: a fix kind's name (nnlint.fix.kinds: "reinit", "zero_init", "swap_activation", ...).
    target: the qualified module name the fix applies to ("" for the model or its input).
    params: the kind's own params dataclass (its `Params`): what the fix needs.
    safe: True when the architecture is unchanged (re-init, modes); False when it changes (the kind's).
    Rules build fixes with the kind's `make`, which checks the params and sets `safe`.
    """

    kind: str
    target: str
    description: str
    params: Any = None
    safe: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Diagnostic:
    code: str
    name: str
    severity: str
    module: str
    message: str
    location: Optional[Location] = None
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: Optional[Fix] = None
    # What the fixer tries when `fix` does not hold, from the least to the most invasive (a re-init,
    # then an activation swap, then an inserted normalization): the escalation ladder.
    escalation: list[Fix] = field(default_factory=list)

    @property
    def ladder(self) -> list[Fix]:
        return ([self.fix] if self.fix is not None else []) + list(self.escalation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "module": self.module,
            "message": self.message,
            "location": None if self.location is None else {"file": self.location.file, "line": self.location.line},
            "evidence": dict(self.evidence),
            "fix": None if self.fix is None else self.fix.to_dict(),
            "escalation": [f.to_dict() for f in self.escalation],
        }
