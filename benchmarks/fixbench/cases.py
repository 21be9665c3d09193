"""One case = one model on one task: build its arms, train each on the grid, diagnose where a fix loses.

A case runs in a worker process and returns plain data (CaseResult): no model crosses back. Arms with
the same fingerprint (a fix that applied nothing, an unsafe run that applied only the safe fixes) are
trained once and marked `same_as`.
"""
from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

import nnlint
from benchmarks.fixbench import arms as A
from benchmarks.fixbench.diagnose import diagnose_case
from benchmarks.fixbench.models import NAIVE, Spec, write
from benchmarks.fixbench.tasks import TASKS, Dataset, Objective, Split, generated_inputs, shaped_like
from benchmarks.fixbench.train import Grid, Protocol, fingerprint, train_grid

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    task: str
    spec: Optional[Spec] = None           # a generated model
    fixture: Optional[str] = None         # or a fixture's file name (fixtures/<name>.py)
    twin: bool = False                    # the healthy twin of a generated shape: checked, trained as built
    source: bool = True                   # measure the source fixer too

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else Path(self.fixture).stem

    @property
    def kind(self) -> str:
        return "twin" if self.twin else ("generated" if self.spec else "fixture")


@dataclass
class ArmResult:
    name: str
    grid: Optional[Grid] = None
    applied: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    left: str = "-"
    error: str = ""
    same_as: str = ""                     # trained once with that arm: the same model


@dataclass
class CaseResult:
    case: Case
    task_title: str = ""
    chance: float = 0.0
    objective: str = "classify"
    findings: str = "-"                   # error/warning codes of the check before any fix
    arms: dict[str, ArmResult] = field(default_factory=dict)
    diagnosis: list[str] = field(default_factory=list)
    alternatives: dict[str, Grid] = field(default_factory=dict)
    skipped: str = ""
    seconds: float = 0.0


_DATA: dict[str, Dataset] = {}


def dataset(task: str) -> Dataset:
    if task not in _DATA:
        _DATA[task] = TASKS[task]()
    return _DATA[task]


def run_case(case: Case, folder: Path, p: Protocol, diagnose: bool = True) -> CaseResult:
    started = time.time()
    data = dataset(case.task)
    result = CaseResult(case, data.title)
    try:
        built = _build(case, folder, data, result)
    except Exception as exc:    # a fixture this task does not fit (token inputs, an unbounded regression)
        result.skipped = f"{type(exc).__name__}: {exc}"[:120]
        return result
    path, split, naive = built
    result.chance = split.objective.chance
    result.objective = split.objective.name
    x, y = split.first_batch()
    loss_fn, target = A.loss_for(split.objective, y)
    before = A.load(path).model
    with contextlib.redirect_stderr(io.StringIO()):
        report = nnlint.check(before, x, target=target, loss_fn=loss_fn)
    result.findings = A.codes(report, infos=True)
    arms = [A.Arm("before", before)]
    arms.append(A.fixed_in_memory(path, x, target, loss_fn, unsafe=False))
    arms.append(A.fixed_in_memory(path, x, target, loss_fn, unsafe=True))
    if not case.twin:
        arms.append(naive() if callable(naive) else naive)
        if case.source:
            arms.append(A.fixed_in_source(path))
    trained: dict[str, tuple[str, Grid]] = {}
    for arm in arms:
        r = ArmResult(arm.name, applied=arm.applied, log=arm.log, left=arm.left, error=arm.error)
        result.arms[arm.name] = r
        if arm.model is None:
            continue
        key = fingerprint(arm.model)
        if key in trained:
            r.same_as, r.grid = trained[key]
            continue
        if case.twin and arm.name != "before" and not arm.applied:
            continue
        r.grid = train_grid(arm.model, split, p)
        trained[key] = (arm.name, r.grid)
    if diagnose and not case.twin:
        diagnose_case(result, arms, case, path, split, p, folder)
    result.seconds = time.time() - started
    return result


def _build(case: Case, folder: Path, data: Dataset, result: CaseResult):
    """The model file, the model's data split and its naive hand fix (an Arm, or a function making one)."""
    if case.spec is not None:
        spec = case.spec.twin() if case.twin else case.spec
        x_all = generated_inputs(data, spec.flat, spec.mutation.raw)
        split = Split.of(data, x_all, Objective(data.classes))
        path = write(folder, spec, case.task, data.classes, split.first_batch())
        naive_path = write(folder, spec, case.task, data.classes, split.first_batch(), NAIVE)
        return path, split, lambda: A.Arm("naive", A.load(naive_path).model)
    path = ROOT / "fixtures" / case.fixture
    loaded = A.load(path)
    example = loaded.batch
    if not isinstance(example, torch.Tensor) or not example.is_floating_point() or example.dim() not in (2, 4):
        raise ValueError("its batch is not a float (N, F) or (N, C, H, W) tensor")
    outputs = _outputs_of(loaded.model, example)
    objective = Objective.regression(data.classes, outputs) if _bounded(loaded.model, example) else \
        Objective(min(data.classes, outputs))
    side = _training_side(loaded.model, data.images, example, outputs)
    split = Split.of(data, shaped_like(data.images, example, side), objective)
    return path, split, lambda: A.naive_arm(A.load(path).model, split.first_batch()[0])


def _training_side(model, images: torch.Tensor, example: torch.Tensor, outputs: int) -> Optional[int]:
    """The smallest image side (8, then 16) at which an image fixture still runs and its check, on the
    benchmark's own training batch, finds the same faults as at its full size; None: keep its size.
    The task's images are 8x8, so a 32x32 input only costs 16x the compute (the image fixtures would
    take hours on two cores), while the fault - an init, an activation, a mode - does not depend on the
    side. Flat inputs and models that need their size (a Flatten + Linear head) keep it."""
    if example.dim() != 4:
        return None

    def found(x: torch.Tensor) -> str:
        with contextlib.redirect_stderr(io.StringIO()):
            return A.codes(nnlint.check(model, x[:64]))

    wanted = found(shaped_like(images, example))
    for side in (8, 16):
        if side >= min(example.shape[2:]):
            break
        x = shaped_like(images, example, side)
        try:
            if _outputs_of(model, x[:2]) == outputs and found(x) == wanted:
                return side
        except Exception:   # the model needs its own size
            continue
    return None


def _outputs_of(model, example: torch.Tensor) -> int:
    model.eval()
    with torch.no_grad():
        out = model(example[:2])
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
        raise ValueError("the output is not (batch, classes) or (batch, actions)")
    return out.shape[1]


def _bounded(model, example: torch.Tensor) -> bool:
    """True for a model whose output comes out of a tanh (a policy's actions), read from the check's
    own trace (the op that makes the model's output), not guessed from output values."""
    from nnlint.trace.graph import Graph

    with contextlib.redirect_stderr(io.StringIO()):
        graph = Graph.of(nnlint.check(model, example[:16]).trace)
    return any(graph.is_model_output(op) and op.kind == "tanh" for op in graph.ops)


def faulty_fixtures(only: list[str] = ()) -> list[str]:
    names = []
    for path in sorted((ROOT / "fixtures").glob("*.py")):
        if not re.search(r"#\s*expect:\s*NN\d", path.read_text()):
            continue
        if only and not any(o in path.stem for o in only):
            continue
        names.append(path.name)
    return names
