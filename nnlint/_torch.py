"""Import torch lazily and quietly: commands that do not need it (`nnlint --help`, `nnlint rules`, the
pytest plugin's import) must not pay for it. A torch without numpy warns, at import and again when some
of its submodules load, about numpy, which nnlint never uses; that one message is silenced."""
from __future__ import annotations

import warnings


def import_torch():
    warnings.filterwarnings("ignore", message=r".*Failed to initialize NumPy.*")
    import torch

    return torch
