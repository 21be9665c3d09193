"""Errors that mean "nnlint could not run" (exit code 2). Each carries a message a user can act on."""
from __future__ import annotations

import traceback
from typing import Optional


class NNLintError(Exception):
    """Base class: the check could not run. `str(e)` is the whole message for the user."""


class LoadError(NNLintError):
    """The model file is missing, does not import, or defines nothing nnlint knows how to use."""


class ConfigError(NNLintError):
    """A bad option, configuration key or rule code."""


class BatchMismatch(NNLintError):
    """The batch does not fit the model's first layer (or the layer that rejected it)."""


class ModelRaised(NNLintError):
    """The user's own code (model, loss, batch factory) raised. The message shows the user's frames."""

    def __init__(self, what: str, exc: BaseException):
        self.what = what
        self.original = exc
        super().__init__(f"{what} raised {type(exc).__name__}: {exc}\n{user_traceback(exc)}".rstrip())


def user_traceback(exc: BaseException, limit: Optional[int] = 8) -> str:
    """The traceback of `exc` restricted to the user's files (no nnlint or torch internals)."""
    from nnlint.trace.source import is_user_file

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if is_user_file(f.filename)]
    if limit is not None:
        frames = frames[-limit:]
    if not frames:
        return ""
    lines = ["Traceback (your code, most recent call last):"]
    for f in frames:
        lines.append(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line.strip()}")
    return "\n".join(lines)
