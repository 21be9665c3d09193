"""One finding per cause: findings of a rule that share a cause are one row of the text report, with the
modules compacted and the numbers that differ as ranges; JSON keeps every finding; verbose lists them."""
from __future__ import annotations

import json

import torch
from torch import nn

import nnlint
from nnlint.output import json as json_output
from nnlint.output import text
from nnlint.output.grouping import compact, groups, merged_message
from nnlint.rulekit import fmt


def tanh_mlp_drawn_at(std: float, depth: int = 6) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(64, 64), nn.Tanh()]
        nn.init.normal_(layers[-2].weight, std=std)
    return nn.Sequential(*layers, nn.Linear(64, 10))


def report():
    return nnlint.check(tanh_mlp_drawn_at(0.6), torch.randn(64, 64, generator=torch.Generator().manual_seed(1)))


def test_six_layers_with_one_wrong_init_are_three_rows_not_eighteen():
    r = report()
    assert len(r.diagnostics) == 18                      # NN103 x6, NN202 x6, NN201 x6
    found = groups(r.sorted())
    assert [(g.code, g.label) for g in found] == [("NN103", "0..10 (6)"), ("NN202", "1..11 (6)"), ("NN201", "1..11 (6)")]
    shown = text.render(r, width=120)
    rows = [line for line in shown.splitlines() if line.strip().startswith(("0..10", "1..11", "NN20"))]
    assert len(rows) == 3
    assert "3 problems (1 error, 2 warnings, 0 info) in 18 findings" in shown
    nn103 = found[0].message(frozenset(r.trace.modules))
    assert "expected 0.21 for tanh (Xavier)" in nn103 and "x too large" in nn103
    ratios = [fmt(d.evidence["ratio"]) for d in found[0].diagnostics]
    stds = sorted({fmt(d.evidence["std"]) for d in found[0].diagnostics}, key=float)
    shown_ratio = nn103.split("x too large")[0].rsplit(" ", 1)[1]
    assert shown_ratio == (ratios[0] if len(set(ratios)) == 1 else f"{min(ratios, key=float)}-{max(ratios, key=float)}")
    assert nn103.startswith(f"weight std {stds[0]}-{stds[-1]}, ")


def test_json_keeps_every_module_and_verbose_lists_every_finding():
    r = report()
    assert len(json.loads(json_output.render(r))["diagnostics"]) == 18
    shown = text.render(r, width=120, verbose=True)
    assert "18 problems (6 errors, 12 warnings, 0 info)" in shown
    assert sum(1 for line in shown.splitlines() if "NN103" in line) == 6


def test_findings_of_different_causes_stay_apart():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    nn.init.normal_(model[0].weight, std=0.6)           # too large before tanh
    nn.init.normal_(model[2].weight, std=0.6)           # too large before ReLU: another nonlinearity, another cause
    r = nnlint.check(model, torch.randn(64, 64), select=["NN103"])
    assert [g.label for g in groups(r.sorted())] == ["0", "2"]


def test_names_are_compacted_along_the_one_number_that_differs():
    assert compact(["layers.0.fc", "layers.1.fc", "layers.4.fc"]) == "layers.0..4.fc"
    assert compact(["fc1", "fc2", "fc3"]) == "fc1..3"
    assert compact(["encoder.q", "decoder.k"]) == "encoder.q, decoder.k"
    assert compact(["a", "b", "c", "d", "e"]) == "a, b, ... (+3)"


def test_messages_of_another_shape_are_not_merged_into_nonsense():
    merged = merged_message(["dead: 60% of units", "the model is on the meta device"])
    assert merged == "dead: 60% of units (and 1 more like it; --verbose lists them)"
    assert merged_message(["std 2.9x, 63%", "std 2.8x, 59%"]) == "std 2.8-2.9x, 59-63%"


def test_a_fix_of_two_calls_that_differ_per_module_says_so_once_after_the_last():
    merged = merged_message([
        "run nn.init.zeros_(model.blocks[0].w) and nn.init.constant_(model.blocks[0].b, 0.01), so",
        "run nn.init.zeros_(model.blocks[1].w) and nn.init.constant_(model.blocks[1].b, 0.01), so",
    ])
    assert merged == ("run nn.init.zeros_(model.blocks[0].w) and nn.init.constant_(model.blocks[0].b, 0.01) "
                      "(for the first; likewise for the others), so")
    # a call that is the same in every message gets no note
    assert merged_message(["call torch.f() at 2", "call torch.f() at 3"]) == "call torch.f() at 2-3"
