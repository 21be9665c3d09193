"""The JSON report (`nnlint check model.py --format json`): one object, for scripts and CI.

Schema, version 1 (a field is added only with a new version; existing fields never change meaning):

    {
      "version": 1,                          # this schema's version
      "nnlint_version": "0.1.0",
      "file": "models/net.py" | null,        # the checked file as given on the command line
      "model": "Net",                        # the model's class name
      "batch": "64x784",                     # the batch's shape(s), as in the text header
      "seconds": 0.412,                      # time the traced passes took
      "diagnostics": [                       # in the model's execution order
        {
          "code": "NN203", "name": "dead-relu", "severity": "error" | "warning" | "info",
          "module": "layer3.1.relu",         # "" for the model's input or the model as a whole
          "message": "...",
          "location": {"file": "/abs/path/net.py", "line": 14} | null,
          "evidence": {...},                 # the measured numbers, rule-specific
          "fix": {"kind": "reinit", "target": "fc1", "description": "...", "params": {...},
                  "safe": true} | null
        }
      ],
      "summary": {"errors": 1, "warnings": 0, "infos": 0, "total": 1, "fixable": 1, "ok": false}
    }

The output is strict JSON: non-finite numbers in the evidence (a NaN activation, an infinite gradient
ratio) are written as the strings "nan", "inf" and "-inf", since JSON has no such numbers and many
parsers reject Python's bare NaN. Values JSON cannot hold (tuples, sets, objects) become lists or
their text.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

SCHEMA_VERSION = 1


def render(report) -> str:
    return json.dumps(document(report), indent=2, allow_nan=False) + "\n"


def document(report) -> dict[str, Any]:
    from nnlint._version import __version__

    return jsonable({
        "version": SCHEMA_VERSION,
        "nnlint_version": __version__,
        "file": report.source_file,
        "model": report.model_name,
        "batch": report.batch_description,
        "seconds": round(report.seconds, 3),
        "diagnostics": [d.to_dict() for d in report.sorted()],
        "summary": report.summary(),
    })


def jsonable(value: Any) -> Any:
    """`value` with every part made strict JSON (see the module docstring)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "tolist"):          # a tensor or numpy value that reached the evidence
        return jsonable(value.tolist())
    return str(value)
