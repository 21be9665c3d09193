"""`--steps 50` on every fixture: the healthy ones' loss falls (no NN805/NN806), the broken ones are still
named by their own rules, and the probe leaves the model, the optimizer state and the RNG as found."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import nnlint
from nnlint.loader import load_target
from test_fixture_markers import ALL, expected_markers

PROBE_CODES = {"NN805", "NN806"}


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_steps_50_on_every_fixture(path: Path):
    marks, clean = expected_markers(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_target(str(path))
        arguments = loaded.check_arguments()
        before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
        state = loaded.optimizer.state_dict() if loaded.optimizer is not None else None
        rng = torch.get_rng_state()
        report = nnlint.check(loaded.model, loaded.batch, steps=50, **arguments)
    data = report.trace.probes.get("train_steps")
    assert data is not None and (data["ran"] >= 1 or data["nonfinite"]), report.notes
    codes = {(d.location.line if d.location else None, d.code) for d in report.diagnostics}
    if clean:
        loud = [(d.code, d.message) for d in report.diagnostics if d.severity in ("error", "warning")]
        assert loud == [], loud
        if not data["loss_is_surrogate"]:
            assert data["losses"][-1] < data["losses"][0], data["losses"]   # the loss falls
    else:
        missing = {m for m in marks if m not in codes and m[1] not in PROBE_CODES}
        assert not missing, f"marked but not found with --steps 50: {sorted(missing)}"
    for n, p in loaded.model.named_parameters():
        assert torch.equal(p, before[n]), n
    if state is not None:
        assert repr(loaded.optimizer.state_dict()["param_groups"]) == repr(state["param_groups"])
    assert torch.equal(torch.get_rng_state(), rng)
