"""The parameters the user declares frozen (`frozen=` in nnlint.check, `--frozen`, a model file's
`frozen = [...]`): globs or module prefixes, matched against parameter names. No model run: the
rules compare the declaration with `requires_grad` and the optimizer, and the training probe with
what changed."""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Iterable

from nnlint.probes.base import Probe, ProbeContext, probe


def declared_frozen(names: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The parameter names a declaration covers: `backbone` covers `backbone.0.weight`, `*.bias` every bias."""
    patterns = [p for p in patterns if p]
    return [n for n in names
            if any(n == p or n.startswith(p.rstrip(".") + ".") or fnmatchcase(n, p) for p in patterns)]


@probe
class Frozen(Probe):
    name = "frozen"
    summary = "which parameters the user declares frozen"

    def wanted(self, options) -> bool:
        return bool(options.frozen)

    def run(self, ctx: ProbeContext) -> dict[str, Any]:
        names = list(ctx.trace.params)
        patterns = list(ctx.options.frozen)
        unmatched = [p for p in patterns if not declared_frozen(names, [p])]
        if unmatched:
            ctx.trace.notes.append(f"frozen= {', '.join(map(repr, unmatched))} matches no parameter of the model "
                                   "(names look like " + ", ".join(names[:3]) + ")")
        return {"patterns": patterns, "params": declared_frozen(names, patterns)}
