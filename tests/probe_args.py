"""The command line a model file says it is checked with, in a comment such as
`# nnlint check example.py --steps 50`: the opt-in probes' options (a rule's example, a fixture), read
by the tests that run those files."""
from __future__ import annotations

import re

LINE = re.compile(r"^\s*#\s*nnlint check \S+(?P<args>(?:\s+--[\w-]+(?:\s+[^\s#-]\S*)?)+)", re.MULTILINE)


def cli_args(source: str) -> list[str]:
    """`["--steps", "50"]` from the file's `# nnlint check FILE --steps 50` line (none: [])."""
    match = LINE.search(source)
    return match.group("args").split() if match else []


def check_kwargs(source: str) -> dict:
    """The same options as nnlint.check's keywords: {"steps": 50, "frozen": ("0",)}."""
    args = cli_args(source)
    out: dict = {}
    for flag, value in zip(args[::2], args[1::2]):
        if flag == "--steps":
            out["steps"] = int(value)
        elif flag == "--frozen":
            out["frozen"] = tuple(out.get("frozen", ())) + tuple(v for v in value.split(",") if v)
    return out
