"""The result of a check: the diagnostics plus what was checked, for the emitters."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from nnlint.diagnostics import SEVERITY_RANK, Diagnostic


@dataclass
class Report:
    diagnostics: list[Diagnostic]
    model_name: str = "model"
    batch_description: str = ""
    seconds: float = 0.0
    source_file: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    # The trace the diagnostics were computed from (nnlint.trace.records.Trace), for the HTML report
    # and the fixer; None when the report was built by hand.
    trace: Any = field(default=None, repr=False, compare=False)
    # Seconds per phase of the check (setup, train forward, backward, eval forward, reading the
    # statistics back, probes, rules): where its cost goes (benchmarks/overhead.py prints it).
    phases: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when there is no error or warning (info findings do not fail a check)."""
        return not any(d.severity in ("error", "warning") for d in self.diagnostics)

    @property
    def counts(self) -> Counter:
        return Counter(d.severity for d in self.diagnostics)

    @property
    def fixable(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.fix is not None]

    def sorted(self) -> list[Diagnostic]:
        """Diagnostics in execution order of their module, then by severity and code."""
        order = getattr(self.trace, "module_order", None) or {}
        return sorted(
            self.diagnostics,
            key=lambda d: (order.get(d.module, -1 if d.module == "" else 10**9), d.module,
                           SEVERITY_RANK.get(d.severity, 9), d.code),
        )

    def by_code(self, code: str) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.code == code]

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the HTML report (findings table, charts, input, rules) inline."""
        from nnlint.output.notebook import render

        return render(self)

    def summary(self) -> dict[str, Any]:
        c = self.counts
        return {
            "errors": c.get("error", 0),
            "warnings": c.get("warning", 0),
            "infos": c.get("info", 0),
            "total": len(self.diagnostics),
            "fixable": len(self.fixable),
            "ok": self.ok,
        }
