"""The arms a model is trained in, each built from its model file:

- before:  the model exactly as the file builds it;
- fix:     `nnlint.fix(model, batch, target=..., loss_fn=...)`, safe fixes only;
- unsafe:  the same with `unsafe=True` (what `--unsafe-fixes` allows);
- naive:   the naive hand fix, the reference to beat: every hidden activation ReLU, every Linear/Conv
           `kaiming_normal_(nonlinearity="relu")` with a zero bias, nothing else (a generated model's is
           its rendered file, models.NAIVE; a fixture's is made in memory, naive_in_memory);
- source:  the source fixer, `nnlint fix FILE --unsafe-fixes` (nnlint.fix.filefix.fix_file, what the
           command line runs), the fixed text written beside the file and loaded from there.

The in-memory fixes are made on the first training batch (what a user fixes on), with its labels and
the task's loss; the source fixer uses the file's own `sample_batch()` and `loss_fn` - for a generated
model that is the same batch, for a fixture its own sample batch.
"""
from __future__ import annotations

import contextlib
import io
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import nnlint
from nnlint.loader import load_target

ROOT = Path(__file__).resolve().parents[2]

ARMS = ("before", "fix", "unsafe", "naive", "source")


@dataclass
class Arm:
    name: str
    model: Any = None                     # None when it could not be built (error says why)
    applied: list[str] = field(default_factory=list)    # "NN201 body.1" per applied fix
    log: list[str] = field(default_factory=list)        # compact summary lines
    left: str = "-"                       # error/warning codes the re-check still reports
    error: str = ""


def load(path: Path):
    """The file's model, built with the RNG seeded first: every arm of a model starts from the same
    weights even where the file does not seed its own init (13 fixtures build with torch's default init
    unseeded: loop_*, optimizer_*, mode_adam_l2_weight_decay; unseeded, each arm got its own draw and a
    fix that applied nothing still "changed" the model)."""
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return load_target(str(path))


def codes(report, infos: bool = False) -> str:
    """The error/warning codes of a report (`infos`: and its info codes, in parentheses)."""
    found = sorted({d.code for d in report.diagnostics if d.severity in ("error", "warning")})
    text = ",".join(found) or "-"
    if infos:
        info = sorted({d.code for d in report.diagnostics if d.severity == "info"} - set(found))
        text += f" ({','.join(info)})" if info else ""
    return text


def compact(result, width: int = 120) -> list[str]:
    """result.summary() in a few short lines, one per status and rule: + applied, x failed, u skipped
    (unsafe), - not fixable; the modules it was on, and the first one's detail."""
    lines = []
    for mark, outcomes in (("+", result.applied), ("x", result.failed), ("u", result.skipped_unsafe),
                           ("-", result.not_fixable)):
        by_code: dict[str, list] = {}
        for o in outcomes:
            if mark == "-" and o.diagnostic.severity == "info":
                continue
            by_code.setdefault(o.diagnostic.code, []).append(o)
        for code, group in by_code.items():
            where = " ".join(o.diagnostic.module or "-" for o in group)
            count = f" x{len(group)}" if len(group) > 1 else ""
            text = f"{mark} {code}{count} [{where}]: {group[0].detail}"
            lines.append(text if len(text) <= width else text[:width - 3] + "...")
    return lines


def grouped(applied: list[str]) -> str:
    """["NN103 body.0", "NN103 body.2", "NN201 body.1"] -> "NN103 x2, NN201"."""
    counts: dict[str, int] = {}
    for item in applied:
        code = item.split()[0]
        counts[code] = counts.get(code, 0) + 1
    return ", ".join(f"{c} x{n}" if n > 1 else c for c, n in counts.items()) or "nothing"


def _applied(result) -> list[str]:
    return sorted({f"{o.diagnostic.code} {o.diagnostic.module or '-'}" for o in result.applied})


def fixed_in_memory(path: Path, batch, target, loss_fn, unsafe: bool) -> Arm:
    loaded = load(path)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            result = nnlint.fix(loaded.model, batch, target=target, loss_fn=loss_fn, unsafe=unsafe,
                                source_origins=loaded.origins)
    except Exception as exc:    # the fixer itself failed: report it, train nothing in its name
        return Arm("unsafe" if unsafe else "fix", None, error=f"{type(exc).__name__}: {exc}"[:200])
    return Arm("unsafe" if unsafe else "fix", loaded.model, _applied(result), compact(result), codes(result.report))


def fixed_in_source(path: Path) -> Arm:
    from nnlint.fix.filefix import fix_file

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run = fix_file(path, unsafe=True)
    except Exception as exc:
        return Arm("source", None, error=f"{type(exc).__name__}: {exc}"[:200])
    fixed = path.with_name(f"{path.stem}_srcfix.py")
    if fixed.parent == ROOT / "fixtures":    # never beside a fixture: in a folder of its own, same imports
        import tempfile

        fixed = Path(tempfile.mkdtemp(prefix="fixbench-src-")) / fixed.name
    fixed.write_text(run.fixed)
    try:
        model = load(fixed).model
    except Exception as exc:
        return Arm("source", None, _applied(run.result), compact(run.result), error=f"the fixed file does not load: {exc}"[:200])
    arm = Arm("source", model, _applied(run.result), compact(run.result), codes(run.result.report))
    arm.log.insert(0, f"  {sum(1 for line in run.diff().splitlines() if line[:1] in '+-' and line[:3] not in ('+++', '---'))} "
                      f"changed line(s) in the file")
    return arm


# ---------------------------------------------------------------------------------------------
# The naive hand fix of a model in memory (the fixtures: their files are not templates)

SWAP_MODULES = (nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.ELU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Softplus,
                nn.Hardtanh, nn.Mish, nn.SELU, nn.CELU)
SWAP_FUNCTIONS = {torch.sigmoid, torch.tanh, torch.exp, torch.softmax, torch.log_softmax, F.sigmoid, F.tanh,
                  F.softmax, F.log_softmax, F.gelu, F.elu, F.silu, F.leaky_relu, F.softplus, F.selu, F.mish}
GATES = {operator.mul, torch.mul, "mul", "mul_"}
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _hidden(node) -> bool:
    """An activation node is hidden when its value is not the model's output and does not gate (multiply)
    another value: x * sigmoid(g) stays, as a hand fix would leave it."""
    return all(u.op != "output" and u.target not in GATES for u in node.users)


def naive_in_memory(model, batch, activation: str = "relu", slope: float = 0.1):
    """Every hidden activation ReLU (LeakyReLU(slope) with activation="leaky_relu", the ReLUs too),
    every Linear/Conv Kaiming normal for it with a zero bias. Hidden-ness is read from a torch.fx trace
    (the output and gates stay); a model fx cannot trace gets only its activation modules swapped, those
    whose output is not the model's output."""
    leaky = activation == "leaky_relu"
    swap = SWAP_MODULES + ((nn.ReLU,) if leaky else ())
    new_module = (lambda: nn.LeakyReLU(slope)) if leaky else nn.ReLU
    try:
        import torch.fx

        graph_module = torch.fx.symbolic_trace(model)
    except Exception:
        graph_module = None
    if graph_module is None:
        outputs = {}
        hooks = [m.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
                 for name, m in model.named_modules() if isinstance(m, swap)]
        with torch.no_grad():
            model.eval()
            out = model(batch)
        for h in hooks:
            h.remove()
        for name, value in outputs.items():
            if value is not out:
                _set(model, name, new_module())
    else:
        functional = False
        for node in graph_module.graph.nodes:
            if node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), swap) and _hidden(node):
                _set(model, node.target, new_module())
            elif node.op == "call_function" and (node.target in SWAP_FUNCTIONS or (leaky and node.target in (torch.relu, F.relu))) \
                    and _hidden(node):
                functional = True
        if functional:     # a functional call has to be rewritten in the graph: the model becomes the graph
            graph_module = torch.fx.symbolic_trace(model)
            for node in graph_module.graph.nodes:
                if node.op == "call_function" and (node.target in SWAP_FUNCTIONS or (leaky and node.target in (torch.relu, F.relu))) \
                        and _hidden(node):
                    node.target = F.leaky_relu if leaky else torch.relu
                    node.args, node.kwargs = (node.args[0],) + ((slope,) if leaky else ()), {}
            graph_module.recompile()
            model = graph_module
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, WEIGHT_LAYERS):
            if leaky:
                nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _set(model, name: str, module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def naive_arm(model, batch, activation: str = "relu") -> Arm:
    try:
        return Arm("naive", naive_in_memory(model, batch, activation))
    except Exception as exc:
        return Arm("naive", None, error=f"{type(exc).__name__}: {exc}"[:200])


def loss_for(objective, y):
    """The loss and target the fixer is given: the task's, on the first batch."""
    if objective.targets is None:
        return F.cross_entropy, y
    return F.mse_loss, objective.targets[y]

