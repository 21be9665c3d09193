"""Real architectures in CI: a fast subset of the benchmark corpus (benchmarks/corpus, the same
builders benchmarks/zoo.py sweeps), each checked at its library's own init on a realistic batch.

Every case must: run without nnlint crashing, leave the model bit-identical (parameters, buffers,
training flags, requires_grad, .grad, hooks, RNG; benchmarks/corpus/snapshot.py), and get no warning
or error, in training mode and after model.eval(). A failure here is a false alarm (or a crash) on a
healthy library model: benchmarks/TRIAGE.md says which rule misjudges it.

Hugging Face models are built from tiny configs (no download) and need `transformers`; the
torchvision and timm cases need those packages. Each library's cases skip, with the reason, when it
is not installed.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import corpus                                             # noqa: E402
from corpus.runner import check_case                      # noqa: E402


def _params(library: str):
    """The library's fast cases, or one skipped placeholder saying why there are none."""
    if importlib.util.find_spec(library) is None:
        return [pytest.param(None, id=f"{library}-not-installed",
                             marks=pytest.mark.skip(reason=f"{library} is not installed"))]
    try:
        cases = corpus.select(corpus.all_cases([library]), fast=True)
    except Exception as exc:   # a library version whose API the corpus does not know
        return [pytest.param(None, id=f"{library}-unusable", marks=pytest.mark.skip(reason=f"{library}: {exc}"))]
    return [pytest.param(c, id=c.name) for c in cases]


def _assert_healthy(case):
    row = check_case(case, compile=False)
    assert row.build_error is None, row.build_error
    problems = []
    for check in row.checks:
        if check.crash is not None:
            problems.append(f"[{check.mode}] crash ({check.crash_kind}): {check.crash}\n{check.traceback}")
        if check.mutation:
            problems.append(f"[{check.mode}] the model was changed: {'; '.join(check.mutation)}")
        problems += [f"[{check.mode}] {f.code} {f.severity} {f.module or '<input>'}: {f.message}" for f in check.alarms]
    assert not problems, f"{case.name} ({case.note}):\n" + "\n".join(problems)


@pytest.mark.parametrize("case", _params("transformers"))
def test_hugging_face_tiny_config_is_healthy(case):
    _assert_healthy(case)


@pytest.mark.parametrize("case", _params("torchvision"))
def test_torchvision_model_is_healthy(case):
    _assert_healthy(case)


@pytest.mark.parametrize("case", _params("timm"))
def test_timm_model_is_healthy(case):
    _assert_healthy(case)
