"""Training-framework callbacks built on nnlint.guard's pieces; each imports its library only when used.

    trainer = L.Trainer(callbacks=[nnlint.integrations.lightning.NNLintCallback()])
    trainer = transformers.Trainer(..., callbacks=[nnlint.integrations.transformers.NNLintCallback()])
"""
from __future__ import annotations

import importlib

__all__ = ["lightning", "transformers"]


def __getattr__(name):
    # `nnlint.integrations.lightning` works without an explicit import of the submodule.
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
