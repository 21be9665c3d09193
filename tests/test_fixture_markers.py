"""Every bundled fixture, through the real command line: each `# expect: NNxxx` marker is a finding
on that line, every warning and error is marked, clean twins exit 0.

Marker forms: `# expect: NN202, NN201` (a list) or `# expect: NN202  # expect: NN201`; `# expect: clean`
in a file's docstring marks a healthy twin. Unmarked info findings are allowed (they never fail a check).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnlint.cli import main
from probe_args import cli_args

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ALL = sorted(p for p in FIXTURES.glob("*.py") if not p.name.startswith("_"))
MARKER = re.compile(r"#\s*expect:\s*([A-Za-z0-9_,\s]+)")


def expected_markers(path: Path) -> tuple[set[tuple[int, str]], bool]:
    marks: set[tuple[int, str]] = set()
    clean = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for group in MARKER.findall(line):
            codes = [c for c in re.split(r"[,\s]+", group) if c]
            if codes == ["clean"]:
                clean = True
            marks.update((number, c) for c in codes if re.fullmatch(r"NN\d{3}", c))
    return marks, clean


def test_every_fixture_is_marked():
    assert len(ALL) >= 40
    for path in ALL:
        marks, clean = expected_markers(path)
        assert marks or clean, f"{path.name} has neither an `# expect: NNxxx` nor an `# expect: clean` marker"
        assert not (marks and clean), f"{path.name} is marked both clean and faulty"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_fixture_markers_hold_through_the_cli(path):
    marks, clean = expected_markers(path)
    # a fixture of an opt-in probe says how it is checked: `# nnlint check FILE --steps 50`
    result = CliRunner().invoke(main, ["check", str(path), "--format", "json", *cli_args(path.read_text())])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    found = {(d["location"]["line"], d["code"]) for d in report["diagnostics"]
             if d["location"] and Path(d["location"]["file"]).resolve() == path.resolve()}
    loud = {(d["location"]["line"] if d["location"] else None, d["code"], d["module"], d["message"])
            for d in report["diagnostics"] if d["severity"] in ("error", "warning")}
    missing = marks - found
    assert not missing, f"marked but not found: {sorted(missing)}; found {sorted(found)}"
    unmarked = {x for x in loud if (x[0], x[1]) not in marks}
    assert not unmarked, f"warnings/errors without a marker: {sorted(unmarked, key=str)}"
    assert result.exit_code == (1 if loud else 0)
    if clean:
        assert result.exit_code == 0
