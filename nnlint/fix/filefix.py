"""`nnlint fix FILE` as a whole: load and check the file, plan the edits, verify them on a re-check of the
edited text, repeat for what the fixes reveal; and write the result atomically.

Nothing is written unless the edited file parses and a re-check of it (the edited text loaded and checked
again, from a temporary copy beside the file so that its local imports resolve) no longer reports the
fixed findings and finds the model better as a whole (result.regression: no new error, fewer
severity-weighted findings); a fix whose finding survives is dropped and reported as failed, and the
rest verified again without it; when the model got worse, the fixes are verified one at a time. A
failed finding gets its ladder's next step (an activation swap after a re-init) in the next round, as
in the runtime fixer. A finding keeps its identity across edits by its rule, module and line, the line mapped
back to the original file (line_key).
"""
from __future__ import annotations

import contextlib
import difflib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from nnlint.diagnostics import Diagnostic, Location
from nnlint.fix.cstfile import SourceFile, SourceSyntaxError
from nnlint.fix.placement import RootScope, root_scope_of
from nnlint.fix.result import (APPLIED, FAILED, NOT_FIXABLE, FixOutcome, FixResult, Ledger, diagnostic_key,
                               regression, triage)
from nnlint.fix.sites import WriteLog, record_writes
from nnlint.fix.kind import all_kinds
from nnlint.fix.source import plan_edits


@dataclass
class SourceFixRun:
    path: Path
    original: str
    fixed: str
    result: FixResult

    @property
    def changed(self) -> bool:
        return self.fixed != self.original

    def diff(self, shown: Optional[str] = None) -> str:
        name = shown or str(self.path)
        return "".join(difflib.unified_diff(self.original.splitlines(keepends=True), self.fixed.splitlines(keepends=True),
                                            fromfile=f"a/{name}", tofile=f"b/{name}"))


@dataclass
class Checked:
    loaded: Any
    log: WriteLog
    report: Any
    key: Callable = diagnostic_key   # a finding's key, its line mapped back to the original file


def line_key(original: str, text: str, path: str) -> Callable[[Diagnostic], tuple]:
    """Keys for the findings of an edited version of the file: their lines mapped back to the original's
    (a finding on an unchanged or rewritten line is the same finding; one on an added line is new)."""
    back: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, original.splitlines(), text.splitlines(), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace"):
            for k in range(min(i2 - i1, j2 - j1)):
                back[j1 + k + 1] = i1 + k + 1
    path = os.path.abspath(path)

    def key(d: Diagnostic) -> tuple:
        line = d.location.line if d.location is not None else None
        if line is not None and os.path.abspath(d.location.file) == path:
            line = back.get(line, ("added", line))
        return (d.code, d.module, line)

    return key


class FileChecker:
    """Loads a version of the model file (the file itself, or edited text in a temporary copy beside it,
    so that its local imports resolve) with the write recorder on, and checks it."""

    def __init__(self, path: Path, *, factory=None, input_shape=None, device=None, select=None, ignore=None,
                 config=None):
        self.path = path
        self.factory, self.input_shape, self.device = factory, input_shape, device
        self.select, self.ignore, self.config = select, ignore, config

    def load(self, file: Path):
        from nnlint.loader import load_target

        with contextlib.redirect_stdout(sys.stderr):
            return load_target(str(file), factory=self.factory, input_shape=self.input_shape, device=self.device)

    def check_file(self, file: Path) -> Checked:
        from nnlint.api import check
        from nnlint.loader import load_target

        previous = sys.dont_write_bytecode
        sys.dont_write_bytecode = True   # no __pycache__ entry for the temporary copy
        try:
            with contextlib.redirect_stdout(sys.stderr):
                with record_writes() as log:
                    loaded = load_target(str(file), factory=self.factory, input_shape=self.input_shape,
                                         device=self.device)
                report = check(loaded.model, loaded.batch, select=self.select, ignore=self.ignore, config=self.config,
                               **loaded.check_arguments())
        finally:
            sys.dont_write_bytecode = previous
        return Checked(loaded, log, report)

    def check_text(self, text: str) -> Checked:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.nnlint-fix-", suffix=".py", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            checked = self.check_file(Path(tmp))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _relocate(checked.report, tmp, str(self.path))
        return checked


def _relocate(report, old: str, new: str) -> None:
    """Findings of the temporary copy point at the real file (same lines: it is the fixed text)."""
    for d in report.diagnostics:
        if d.location is not None and os.path.abspath(d.location.file) == os.path.abspath(old):
            d.location = Location(new, d.location.line)


def read_source(path: Path) -> SourceFile:
    from nnlint.errors import LoadError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: cannot read it: {exc}") from None
    try:   # Python's own message first: it names the line the way the user's editor does
        compile(text, str(path), "exec")
        return SourceFile(text, str(path))
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        raise LoadError(f"{where}: syntax error: {exc.msg}\n    {(exc.text or '').strip()}\n"
                        "fix it by hand first; nnlint fix changed nothing") from None
    except SourceSyntaxError as exc:
        raise LoadError(f"{exc}\nfix it by hand first; nnlint fix changed nothing") from None


def fix_file(path, *, factory: Optional[str] = None, input_shape=None, device=None, unsafe: bool = False,
             select=None, ignore=None, config=None, max_rounds: int = 6,
             verify_steps: Optional[int] = None) -> SourceFixRun:
    """Plan and verify the source fixes of the model file; writes nothing (see write_atomically).
    `verify_steps=N`: the original file's setup and the edited one's are trained N steps on the batch
    (nnlint.fix.verify) and compared in `run.result.verification`."""
    path = Path(path).resolve()
    source = read_source(path)
    original = source.text
    checker = FileChecker(path, factory=factory, input_shape=input_shape, device=device, select=select,
                          ignore=ignore, config=config)
    current = checker.check_file(path)
    root = root_scope_of(source, factory)
    ledger = Ledger()
    rounds = 0
    while rounds < max_rounds:
        ledger.key_of = current.key
        todo = triage(current.report.diagnostics, ledger, unsafe=unsafe, known_kinds=all_kinds())
        if not todo:
            break
        rounds += 1
        # a round that keeps nothing still counts: its failed findings try their ladder's next step
        accepted = _verified_round(source, path, current, root, todo, checker, ledger, original)
        if accepted is not None:
            source, current = accepted
    result = ledger.result(current.report, rounds, key_of=current.key)
    if verify_steps and source.text != original:
        from nnlint.fix.verify import first_update_advice, verify

        before = checker.load(path)   # the file as it is, built afresh (no check: only trained)
        result.verification = verify(_setup(before), _setup(current.loaded), verify_steps,
                                     lr_advice=lambda setup: first_update_advice(setup, current.report))
    return SourceFixRun(path, original, source.text, result)


def _setup(loaded):
    from nnlint.fix.verify import Setup

    return Setup(loaded.model, loaded.batch, loaded.target, loaded.loss_fn, loaded.optimizer)


def _verified_round(source: SourceFile, path: Path, current: Checked, root: RootScope, todo: list[Diagnostic],
                    checker: FileChecker, ledger: Ledger, original: str):
    """Plan the fixes of `todo`, re-check the edited text, drop the fixes whose finding survives (or
    whose edit breaks the file) and try again without them. Returns (source, checked) when some fixes
    were verified, else None."""
    candidates = list(todo)
    while candidates:
        plan = plan_edits(source, str(current.loaded.path), current.loaded, current.log, current.report.trace, root,
                          candidates)
        for i, reason in plan.failed.items():
            d = candidates[i]
            ledger.record(FixOutcome(d, NOT_FIXABLE, f"cannot place it in this file: {reason}; by hand: {d.fix.description}"))
        kept = [candidates[i] for i in sorted(plan.applied)]
        if not kept or plan.text == source.text:
            for i in plan.applied:
                ledger.record(FixOutcome(candidates[i], FAILED, f"{plan.applied[i]}: produced no edit"))
            return None
        try:
            edited = SourceFile(plan.text, str(path))
            compile(plan.text, str(path), "exec")
        except (SourceSyntaxError, SyntaxError) as exc:   # a bug in an applier: never write such a file
            raise RuntimeError(f"the edited file does not parse ({exc}); nothing was written") from None
        from nnlint.errors import NNLintError

        try:
            checked = checker.check_text(plan.text)
        except NNLintError as exc:
            if len(kept) == 1:
                ledger.record(FixOutcome(kept[0], FAILED, f"the edited file fails to load or run: {exc}"))
                return None
            # find the culprit: verify each fix alone, keep those that survive
            survivors = []
            for d in kept:
                alone = plan_edits(source, str(current.loaded.path), current.loaded, current.log, current.report.trace,
                                   root, [d])
                try:
                    checker.check_text(alone.text)
                    survivors.append(d)
                except NNLintError as single:
                    ledger.record(FixOutcome(d, FAILED, f"the edited file fails to load or run: {single}"))
            if len(survivors) == len(kept):
                # each loads alone, together they do not (two edits of one call built in a loop): apply
                # them one after another, each on the text the last left; retrying them together would
                # never end
                return _one_at_a_time(source, path, current, root, kept, checker, ledger, original)
            candidates = survivors
            continue
        checked.key = line_key(original, plan.text, str(path))
        remaining = {checked.key(x): x for x in checked.report.diagnostics}
        survived = [d for d in kept if current.key(d) in remaining]
        if survived:
            for d in survived:
                still = remaining[current.key(d)]
                index = candidates.index(d)
                ledger.record(FixOutcome(d, FAILED, f"{plan.applied[index]}; the re-check still reports: {still.message}",
                                         why_failed="its finding was still reported"))
            candidates = [d for d in kept if d not in survived]
            continue
        worse = regression(current.report, checked.report, current.key, checked.key)
        if worse is not None:
            if len(kept) > 1:    # which of them made it worse: each alone, on top of those kept before it
                return _one_at_a_time(source, path, current, root, kept, checker, ledger, original)
            index = candidates.index(kept[0])
            ledger.record(FixOutcome(kept[0], FAILED, f"{plan.applied[index]}; {worse}, so it was not written",
                                     why_failed=worse))
            return None
        for i, d in enumerate(candidates):
            if i in plan.applied:
                ledger.record(FixOutcome(d, APPLIED, plan.applied[i]))
        return edited, checked
    return None


def _one_at_a_time(source, path, current, root, fixes, checker, ledger, original):
    """Verify each fix alone, in turn, on the text the previous ones left; (source, checked) of the last
    kept, or None when none was."""
    accepted = None
    for d in fixes:
        kept = _verified_round(source, path, current, root, [d], checker, ledger, original)
        if kept is not None:
            accepted = kept
            source, current = kept
    return accepted


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it over the original: a reader
    (or a crash) sees the old file or the new one, never half of it. Keeps the file's permissions."""
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
