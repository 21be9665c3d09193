"""The real-model corpus: library models at their own init, each with a realistic batch.

One concept, one place: `benchmarks/zoo.py`, `benchmarks/mutations.py` and `tests/test_real_models.py`
all take their models from here. A case is a name, a family and a builder; the builder returns the
model at its library's own init and the batch it is fed. Libraries that are not installed contribute
no cases (and `missing_libraries()` says which), so the corpus runs on whatever the machine has.
"""
from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

# Each library's builders live in their own module; a module whose library is absent is skipped.
LIBRARY_MODULES = {
    "torchvision": "corpus.torchvision_cases",
    "timm": "corpus.timm_cases",
    "transformers": "corpus.hf_cases",
}


@dataclass(frozen=True)
class Case:
    """One model of the corpus."""

    name: str                                   # "torchvision/resnet18", "timm/vit_tiny", "hf/llama"
    library: str                                # "torchvision" | "timm" | "transformers"
    family: str                                 # "resnet", "vit", "decoder", "moe", "ssm", ...
    build: Callable[[], tuple[Any, Any]]        # -> (model at the library's init, batch)
    note: str = ""                              # how it is fed, when that is not obvious
    compile: bool = False                       # also checked under torch.compile
    fast: bool = False                          # in the CI subset (tests/test_real_models.py)
    tags: tuple[str, ...] = field(default=())   # "detection", "video", "moe", "gpt2-conv1d" ...

    @property
    def short(self) -> str:
        return self.name.split("/", 1)[1]


def _library_cases(library: str) -> Optional[list[Case]]:
    """The cases of one library, or None when the library (or a dependency) is not importable."""
    try:
        module = importlib.import_module(LIBRARY_MODULES[library])
    except ImportError:
        return None
    return list(module.cases())


def all_cases(libraries: Iterable[str] = tuple(LIBRARY_MODULES)) -> list[Case]:
    out: list[Case] = []
    for library in libraries:
        out.extend(_library_cases(library) or [])
    return out


def missing_libraries() -> list[str]:
    return [lib for lib in LIBRARY_MODULES if _library_importable(lib) is False]


def _library_importable(library: str) -> bool:
    try:
        importlib.import_module(library)
    except ImportError:
        return False
    return True


def select(cases: list[Case], only: Optional[list[str]] = None, family: Optional[list[str]] = None,
           library: Optional[list[str]] = None, fast: bool = False) -> list[Case]:
    """Cases matching every given filter. `only` takes names or glob patterns, matched against the
    full name (`timm/resnet18`) and the short one (`resnet18`); `family` and `library` exact values."""
    def named(c: Case) -> bool:
        return any(fnmatch.fnmatchcase(c.name, p) or fnmatch.fnmatchcase(c.short, p) for p in only)

    return [c for c in cases
            if (not only or named(c)) and (not family or c.family in family)
            and (not library or c.library in library) and (not fast or c.fast)]


def seeded(make: Callable[[], Any], seed: int = 0) -> Any:
    """Build with the global RNG seeded (the same init on every run) and then put back as it was,
    so building a case never changes the caller's RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()
