"""How a message writes a module of the model as Python: `model.layers[0].fc.weight`, never
`self.layers.0.fc.weight` (not Python). Every piece of code nnlint prints names modules through this.

The root is called `model`, the name the user's model has in most training code and in nnlint's model
files. Children of a Sequential or ModuleList are numbered (`[0]`); a name that is not an identifier is
reached with `get_submodule`.
"""
from __future__ import annotations

import re

ROOT = "model"
# Code in a message: a torch call (nn.init.xavier_normal_(...), F.dropout(...)) or a module expression.
CODE_SPAN = re.compile(r"(?:\bnn|\btorch|\bF)\.[\w.]+\((?:[^()]|\([^()]*\))*\)|\bmodel(?:\.\w+|\[[^\]]+\])+")


def module_expr(module: str, attr: str = "", root: str = ROOT) -> str:
    """`model.layers[0].fc` for "layers.0.fc" (and `.weight` after it with attr="weight")."""
    out = root
    parts = module.split(".") if module else []
    for i, part in enumerate(parts):
        if part.isdigit():
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f'.get_submodule("{".".join(parts[i:])}")'
            break
    return f"{out}.{attr}" if attr else out


def code_in(message: str) -> list[str]:
    """The pieces of code a message quotes (the spans a test compiles and a report may highlight)."""
    return [m.group(0) for m in CODE_SPAN.finditer(message)]
