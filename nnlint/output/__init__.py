"""Output emitters: one module per format, each exposing render(report) -> str.

`--format NAME` (and `--html`) look the emitter up by name: the module `nnlint.output.NAME` and its
`render` function. A new format is a new module here plus its name in FORMATS; nothing else changes.
None of these modules imports torch: they read the Report and its Trace of plain numbers.
"""
from __future__ import annotations

import importlib
from typing import Callable

from nnlint.errors import ConfigError

# The names `--format` accepts, in the order `--help` lists them. html has a flag of its own (--html
# PATH), since a page is written beside the console output, not instead of it.
FORMATS = ("text", "json", "sarif", "github")


def emitter(name: str) -> Callable[..., str]:
    """`nnlint.output.<name>.render`; a ConfigError when this installation has no such emitter yet."""
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise   # the emitter exists but something it imports is missing: a real bug, not "not yet"
        raise ConfigError(f"the {name} output is not available yet in nnlint; use --format text or json") from None
    render = getattr(module, "render", None)
    if render is None:
        raise ConfigError(f"the {name} output is not available yet in nnlint (nnlint.output.{name} has no render)")
    return render


def module_label(diagnostic) -> str:
    """The module column of a finding: its qualified name, or what an unnamed one is about, as its rule
    says (`about`): the model's input, or the model as a whole. A finding whose evidence names an input
    is about the input, whatever rule made it."""
    if diagnostic.module:
        return diagnostic.module
    if "input" in diagnostic.evidence:
        return "input"
    from nnlint.registry import rule_of

    rule = rule_of(diagnostic.code)
    return "input" if rule is not None and rule.about == "input" else "model"
