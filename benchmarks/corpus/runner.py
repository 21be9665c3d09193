"""Check one corpus model the way a user would, and record what happened.

For each mode (the model as built, i.e. training mode; then after `model.eval()`; optionally wrapped
in `torch.compile`) it snapshots the model, runs `nnlint.check`, and records the time, the findings,
any exception, and every change to the model (snapshot.Snapshot). An exception is classified: when
the same model and batch also fail outside nnlint, the corpus fed it wrongly ("corpus"); otherwise
nnlint broke it ("nnlint"). Only the latter is a crash of nnlint.
"""
from __future__ import annotations

import gc
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch

from corpus import Case
from corpus.optim import DEFAULT as DEFAULT_OPTIMIZER, OPTIMIZERS, state_of
from corpus.snapshot import Snapshot

MODES = ("train", "eval")
COMPILED_PREFIX = "_orig_mod."


@dataclass
class Finding:
    code: str
    severity: str
    module: str
    message: str
    evidence: dict = field(default_factory=dict)

    @classmethod
    def of(cls, d) -> "Finding":
        return cls(d.code, d.severity, d.module, d.message, _plain(d.evidence))


@dataclass
class CheckResult:
    mode: str                         # "train" | "eval" | "compile"
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    crash: Optional[str] = None       # the exception, one line
    crash_kind: Optional[str] = None  # "nnlint" | "corpus"
    traceback: Optional[str] = None
    mutation: list[str] = field(default_factory=list)
    # Changes a plain forward of the model makes too (lazy hooks, caches): the model's, not nnlint's.
    model_side_effects: list[str] = field(default_factory=list)
    note: str = ""

    def codes(self, severities=("error", "warning")) -> Counter:
        return Counter(f.code for f in self.findings if f.severity in severities)

    @property
    def alarms(self) -> list[Finding]:
        """Warnings and errors: what fails `nnlint check` (exit 1)."""
        return [f for f in self.findings if f.severity in ("error", "warning")]


@dataclass
class Row:
    name: str
    library: str
    family: str
    note: str = ""
    params: int = 0
    build_seconds: float = 0.0
    build_error: Optional[str] = None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def crashed(self) -> bool:
        return any(c.crash_kind == "nnlint" for c in self.checks)

    @property
    def mutated(self) -> bool:
        return any(c.mutation for c in self.checks)

    @property
    def alarms(self) -> list[Finding]:
        return [f for c in self.checks for f in c.alarms]

    def to_dict(self) -> dict:
        return asdict(self)


def plain_step(model, batch) -> None:
    """A plain forward + backward, no nnlint: does the model run on this batch at all?"""
    out = call(model, batch)
    floats = [t for t in tensors(out) if t.is_floating_point() and t.requires_grad]
    if floats:
        sum(t.float().mean() for t in floats).backward()


def call(model, batch):
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def tensors(obj, depth: int = 0):
    """Every tensor inside an output (tensor, tuple, list, dict, ModelOutput)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 6 and isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v, depth + 1)
    elif depth < 6 and isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v, depth + 1)


def run_check(model, batch, mode: str, optimizer: str = DEFAULT_OPTIMIZER, **check_kwargs) -> CheckResult:
    """One nnlint.check on the model as it stands, with its snapshot before and after; `optimizer`
    names the one built for it (corpus/optim.py; "none": no optimizer), whose state is compared too."""
    import nnlint

    result = CheckResult(mode)
    make = OPTIMIZERS[optimizer]
    opt = make(model) if make is not None else None
    before, opt_before = Snapshot.take(model), state_of(opt)
    started = time.perf_counter()
    try:
        report = nnlint.check(model, batch, optimizer=opt, **check_kwargs)
        result.findings = [Finding.of(d) for d in report.diagnostics]
    except Exception as exc:   # recorded and classified; the sweep goes on
        result.crash = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        result.traceback = traceback.format_exc(limit=12)
    result.seconds = time.perf_counter() - started
    result.mutation = before.differences(model)
    if state_of(opt) != opt_before:
        result.mutation.append("optimizer state: param_groups or state changed")
    return result


def _set_mode(model, mode: str) -> None:
    model.train(mode != "eval")


def classify_crash(case: Case, result: CheckResult) -> None:
    """nnlint's crash, or the corpus's: rebuild and run it without nnlint, in training mode with a
    backward and in eval mode without grad, as the check itself does whatever the model's mode."""
    if result.crash is None:
        return
    try:
        model, batch = case.build()
        model.train()
        plain_step(model, batch)
        model.eval()
        with torch.no_grad():
            call(model, batch)
    except Exception as exc:
        result.crash_kind = "corpus"
        result.note = f"fails without nnlint too: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return
    result.crash_kind = "nnlint"


# Kinds of change a plain forward + backward cannot help making (statistics, gradients, the RNG):
# when nnlint leaves one of these behind, it is nnlint's. The other kinds (hooks, added buffers or
# modules) a model may make itself on its first forward; those are attributed by running it plainly.
VALUE_KINDS = ("parameter values", "buffer values", ".grad", "RNG state")


def attribute_mutation(case: Case, result: CheckResult) -> None:
    """Move the changes that a plain run of a fresh copy makes too out of `mutation`."""
    structural = [m for m in result.mutation if not m.startswith(VALUE_KINDS)]
    if not structural:
        return
    try:
        model, batch = case.build()
        model.train(result.mode != "eval")
        before = Snapshot.take(model)
        plain_step(model, batch)
        with torch.no_grad():
            model.eval()
            call(model, batch)
        plain = {line.split(":", 1)[0] for line in before.differences(model)}
    except Exception:
        return
    own = [m for m in structural if m.split(":", 1)[0] in plain]
    result.model_side_effects = own
    result.mutation = [m for m in result.mutation if m not in own]


def check_case(case: Case, modes=MODES, compile: bool = False, optimizer: str = DEFAULT_OPTIMIZER) -> Row:
    """Build the case once and check it in each mode (and under torch.compile when asked)."""
    row = Row(case.name, case.library, case.family, case.note)
    started = time.perf_counter()
    try:
        model, batch = case.build()
    except Exception as exc:
        row.build_error = f"{type(exc).__name__}: {exc}"
        return row
    row.build_seconds = time.perf_counter() - started
    row.params = sum(p.numel() for p in model.parameters())
    for mode in modes:
        _set_mode(model, mode)
        result = run_check(model, batch, mode, optimizer)
        classify_crash(case, result)
        attribute_mutation(case, result)
        row.checks.append(result)
    if compile and case.compile:
        row.checks.append(check_compiled(model, batch, row.checks[0] if row.checks else None, optimizer))
    del model, batch
    gc.collect()
    return row


def check_compiled(model, batch, eager: Optional[CheckResult], optimizer: str = DEFAULT_OPTIMIZER) -> CheckResult:
    """The same model wrapped in torch.compile, in training mode: nnlint runs it eagerly (force_eager
    stance), so the findings must be the eager ones, named without the wrapper's `_orig_mod.`."""
    model.train()
    compiled = torch.compile(model)
    result = run_check(compiled, batch, "compile", optimizer)
    for f in result.findings:
        f.module = f.module[len(COMPILED_PREFIX):] if f.module.startswith(COMPILED_PREFIX) else f.module
    if result.crash is not None:
        result.crash_kind = "nnlint"
    elif eager is not None and eager.crash is None:
        same = _keys(result.findings) == _keys(eager.findings)
        result.note = "same findings as eager" if same else (
            f"differs from eager: only compiled {sorted(_keys(result.findings) - _keys(eager.findings))}, "
            f"only eager {sorted(_keys(eager.findings) - _keys(result.findings))}")
    return result


def _keys(findings: list[Finding]) -> set[tuple[str, str, str]]:
    return {(f.code, f.severity, f.module) for f in findings}


def _plain(value: Any, depth: int = 0) -> Any:
    """Evidence as JSON-safe data (numbers, strings, lists, dicts)."""
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if depth < 4 and isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, (list, tuple)):
        items = [_plain(v, depth + 1) for v in value[:64]]
        return items + [f"... {len(value) - 64} more"] if len(value) > 64 else items
    return str(value)
