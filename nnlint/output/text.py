"""The console report: what `nnlint check` prints by default, and what `nnlint.testing` asserts with.

    fixtures/tanh_mlp.py: Net on a batch of 64x784 (train + eval pass, 0.4 s)

      module  code   severity  line  finding
      fc1     NN103  warning     14  weight std 0.50, expected 0.036 for tanh (Xavier): 14x too large
      act1    NN202  error       15  71% of tanh inputs are in the flat region (|z| > 2.2); gradients
                                     vanish
              NN201  warning     15  tanh is a hidden-layer nonlinearity ...

    3 problems (1 error, 2 warnings, 0 info); 2 fixable with `nnlint fix fixtures/tanh_mlp.py`

Rows follow the model's execution order (Report.sorted()); a module's name is printed once, on its
first row. Findings that share a rule and a cause are one row (output.grouping): the modules they are
on, compacted, and the numbers that differ as ranges; `verbose=True` prints every finding instead. The finding column wraps to fit the terminal (at most 120 columns: longer lines are harder
to read, not easier). Severities are colored only when asked (`color=True`): the CLI asks when stdout
is a terminal and NO_COLOR is not set.
"""
from __future__ import annotations

import os
import shutil
import textwrap
from collections import Counter
from typing import Optional

import click
from tabulate import tabulate

from nnlint.diagnostics import Diagnostic
from nnlint.output import module_label
from nnlint.output.grouping import Group, groups

MAX_WIDTH = 120
MIN_FINDING_WIDTH = 30
MODULE_WIDTH = 32          # longer qualified names wrap rather than squeeze the finding
INDENT = "  "
HEADERS = ("module", "code", "severity", "line", "finding")
SEVERITY_STYLE = {"error": {"fg": "red", "bold": True}, "warning": {"fg": "yellow"}, "info": {"fg": "cyan"}}


def render(report, *, color: bool = False, width: Optional[int] = None, fix_command: Optional[str] = None,
           verbose: bool = False) -> str:
    """The report as text. `fix_command` (`nnlint fix model.py`, from the CLI when it has that command)
    is named in the summary as the way to apply the fixes; `verbose` gives every finding its own row."""
    width = width or terminal_width()
    what = _what_was_checked(report)
    where = f"{report.source_file}: " if report.source_file else ""
    if not report.diagnostics:
        lines = [f"{where}no problems found ({what})"]
    else:
        found = groups(report.sorted()) if not verbose else [Group([d]) for d in report.sorted()]
        lines = [f"{where}{what}", "", _table(report, found, width, color), "",
                 *_summary(report, found, color, width, fix_command)]
    lines += [textwrap.fill(f"note: {note}", width, subsequent_indent="      ") for note in report.notes]
    return "\n".join(lines) + "\n"


def terminal_width() -> int:
    """The terminal's width, at most MAX_WIDTH; 100 when stdout is not a terminal (and COLUMNS unset)."""
    return min(shutil.get_terminal_size((100, 24)).columns, MAX_WIDTH)


def _what_was_checked(report) -> str:
    """`Net on a batch of 64x784 (train + eval pass, 0.4 s)` over a table; `Net on a batch of 64x784,
    0.4 s` inside the clean line's parenthesis. The passes are known only from a trace."""
    text = report.model_name + (f" on a batch of {report.batch_description}" if report.batch_description else "")
    if not report.diagnostics:
        return f"{text}, {_seconds(report.seconds)}"
    trace = report.trace
    passes = "" if trace is None else ("train + eval pass, " if getattr(trace, "eval_ran", False) else "train pass, ")
    return f"{text} ({passes}{_seconds(report.seconds)})"


def _seconds(seconds: float) -> str:
    return "<0.1 s" if seconds < 0.05 else f"{seconds:.1f} s"


def _table(report, found: list[Group], width: int, color: bool) -> str:
    # Gather rows by the module column in the order they first appear: the findings without a module
    # sort together, but some are about the input and some about the whole model.
    known = frozenset(report.trace.modules) if report.trace is not None else frozenset()
    by_label: dict[str, list[Group]] = {}
    for g in found:
        by_label.setdefault(g.label if g.first.module else module_label(g.first), []).append(g)
    rows = [[label if i == 0 else "", g.code, _severity(g.severity, color), _line(g.first, report.source_file),
             g.message(known)] for label, gs in by_label.items() for i, g in enumerate(gs)]
    return table(HEADERS, rows, width, color=color, colalign=("left", "left", "left", "right", "left"))


def table(headers, rows: list, width: int, *, color: bool = False, colalign=None) -> str:
    """A plain, indented table whose last column wraps to keep the whole within `width`; the others
    keep their width (the first is capped at MODULE_WIDTH and wraps beyond it)."""
    header = [click.style(h, bold=True) if color else h for h in headers]
    fixed = [max(len(click.unstyle(str(r[i]))) for r in rows + [list(headers)]) for i in range(len(headers) - 1)]
    fixed[0] = min(fixed[0], MODULE_WIDTH)
    last = max(MIN_FINDING_WIDTH, width - len(INDENT) - sum(fixed) - 2 * len(fixed))
    wrapped = [[_wrap(r[0], fixed[0]), *r[1:-1], _wrap(r[-1], last)] for r in rows]
    # The header goes in as a row: tabulate pads real headers by two spaces in the plain format,
    # which would widen every narrow column for nothing.
    text = tabulate([header] + wrapped, tablefmt="plain", colalign=colalign, disable_numparse=True)
    return "\n".join(INDENT + line.rstrip() for line in text.splitlines())


def _wrap(value: str, width: int) -> str:
    """Wrap at spaces only: a hyphen in `pre-activation` or `-1e-3` is no place to break a line."""
    return "\n".join(line for paragraph in str(value).splitlines() or [""]
                     for line in textwrap.wrap(paragraph, width, break_on_hyphens=False) or [""])


def _severity(severity: str, color: bool) -> str:
    return click.style(severity, **SEVERITY_STYLE.get(severity, {})) if color else severity


def _line(d: Diagnostic, source_file: Optional[str]) -> str:
    """The line number alone in the checked file; `blocks.py:7` for a module built in another file
    (its path from the checked file's folder when it lies below it, else its name: the column stays
    narrow, and the JSON output has the full path)."""
    if d.location is None:
        return "-"
    file = os.path.abspath(d.location.file)
    if source_file and file == os.path.abspath(source_file):
        return str(d.location.line)
    folder = os.path.dirname(os.path.abspath(source_file)) if source_file else os.getcwd()
    shown = os.path.relpath(file, folder) if file.startswith(folder + os.sep) else os.path.basename(file)
    return f"{shown}:{d.location.line}"


def _summary(report, found: list[Group], color: bool, width: int, fix_command: Optional[str]) -> list[str]:
    """`4 problems (2 errors, 1 warning, 1 info); 3 fixable with `nnlint fix model.py``: one line, or
    two when the fix hint would run past the width. Problems are causes (rows); when a cause spans
    several modules, the findings are counted too."""
    count = Counter(g.severity for g in found)
    counts = f"{_plural(count['error'], 'error')}, {_plural(count['warning'], 'warning')}, {count['info']} info"
    spread = f" in {len(report.diagnostics)} findings" if len(found) < len(report.diagnostics) else ""
    problems = f"{_plural(len(found), 'problem')} ({counts}){spread}"
    fixes = _fixable(report, fix_command)
    shown = click.style(problems, bold=True) if color else problems
    if not fixes:
        return [shown]
    if len(problems) + 2 + len(fixes) > width:
        return [shown, fixes]
    return [f"{shown}; {fixes}"]


def _fixable(report, fix_command: Optional[str]) -> str:
    """`3 fixable with `nnlint fix model.py` (1 more with --unsafe-fixes)` when there is a command to
    name; else the count alone (each message already says what to do)."""
    fixes = [d.fix for d in report.fixable]
    if not fixes:
        return ""
    if fix_command is None:
        return f"{len(fixes)} with a suggested fix"
    safe = sum(1 for f in fixes if f.safe)
    unsafe = len(fixes) - safe
    if not safe:
        return f"{unsafe} fixable with `{fix_command} --unsafe-fixes`"
    return f"{safe} fixable with `{fix_command}`" + (f" ({unsafe} more with --unsafe-fixes)" if unsafe else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
