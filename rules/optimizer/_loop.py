"""What the loop rules (NN807-NN811) share: the watched steps of the training loop (trace.probes["loop"],
from nnlint.guard, the training callbacks, or the loop probe on a model file's `train`), where a finding
about the loop points (the user's line that called `optimizer.step()`), and the fixes placed there."""
from __future__ import annotations

from typing import Optional

from nnlint.diagnostics import Location
from nnlint.fix.loopsite import LoopSite
from nnlint.trace.records import Trace


def watched_steps(trace: Trace) -> list[dict]:
    data = trace.probes.get("loop")
    return list(data.get("steps", ())) if data else []


def step_location(step: dict) -> Optional[Location]:
    return Location(step["file"], int(step["line"])) if step.get("file") and step.get("line") else None


def loop_site(step: dict) -> LoopSite:
    return LoopSite(step.get("file"), step.get("line"), step.get("model_name"), step.get("optimizer_name"))


def where(step: dict) -> str:
    """`train() (model.py:31)`, for messages."""
    if not step.get("file"):
        return "the training loop"
    return f"{step.get('function') or 'the loop'}() at {step['file'].rsplit('/', 1)[-1]}:{step['line']}"
