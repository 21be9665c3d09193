"""Where a finding lives, as CI services want it: a path relative to the repository root.

GitHub code scanning (SARIF) and workflow annotations both resolve paths against the checkout, so an
absolute path from the runner's disk would match no file. The root is the git top-level above the
current directory (found by looking for `.git`, no subprocess), or the current directory outside git.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Optional

from nnlint.diagnostics import Diagnostic, Location


def repo_root(start: Optional[str] = None) -> Path:
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():   # a folder, or a file in a worktree / submodule
            return folder
    return here


def relative_path(file: str, root: Path) -> Optional[str]:
    """`file` relative to `root` with forward slashes; None when it lies outside the root."""
    try:
        rel = Path(file).resolve().relative_to(root)
    except ValueError:
        return None
    return str(PurePosixPath(*rel.parts))


def finding_location(diagnostic: Diagnostic, report) -> Optional[Location]:
    """The diagnostic's own location; else the checked model file's first line (findings on the input
    or the whole model have no line of their own, but a CI annotation needs a file)."""
    if diagnostic.location is not None:
        return diagnostic.location
    if getattr(report, "source_file", None):
        return Location(report.source_file, 1)
    return None

