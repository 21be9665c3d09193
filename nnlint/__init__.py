"""nnlint: audit a PyTorch model and a sample batch for a bad training setup, and fix it.

    report = nnlint.check(model, batch)
    result = nnlint.fix(model, batch)
    nnlint.guard(model, optimizer)

Importing nnlint does not import torch; the entry points do, when called.
"""
from __future__ import annotations

import os as _os

from nnlint._version import __version__

# The rule catalog lives in the top-level rules/ folder and is installed as nnlint.rules (pyproject's
# package-dir mapping). When nnlint is imported straight from a source checkout (the checkout on
# sys.path ahead of the installed package, as under pytest), that mapping is not in play: let the
# package also look beside itself, so that nnlint.rules resolves to the same rules/ folder.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "rules", "__init__.py")) and not _os.path.isdir(
        _os.path.join(_os.path.dirname(__file__), "rules")):
    __path__.append(_checkout)  # type: ignore[name-defined]

__all__ = ["check", "fix", "guard", "Report", "Diagnostic", "Fix", "Location", "NNLintError", "__version__"]


def __getattr__(name):
    if name == "check":
        from nnlint.api import check

        return check
    if name == "fix":
        from nnlint.fix.api import fix

        return fix
    if name == "guard":
        from nnlint.guard import guard

        return guard
    if name == "Report":
        from nnlint.report import Report

        return Report
    if name in ("Diagnostic", "Fix", "Location"):
        from nnlint import diagnostics

        return getattr(diagnostics, name)
    if name == "NNLintError":
        from nnlint.errors import NNLintError

        return NNLintError
    if name == "integrations":
        import importlib

        return importlib.import_module("nnlint.integrations")
    raise AttributeError(f"module 'nnlint' has no attribute {name!r}")
