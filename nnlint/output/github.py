"""GitHub Actions workflow commands: one annotation per finding in the job log and on the diff.

    ::error file=models/net.py,line=12,title=NN203 dead-relu (act)::100% of units never activate ...

Values are escaped exactly as GitHub's own toolkit (@actions/core, command.ts) escapes them: in the
message `%`, CR and LF; in properties also `:` and `,`, which would otherwise end the property.
"""
from __future__ import annotations

from typing import Optional

from nnlint.output import module_label
from nnlint.output.locations import finding_location, relative_path, repo_root

COMMAND = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def render(report, *, root: Optional[str] = None) -> str:
    base = repo_root(root)
    lines = []
    for d in report.sorted():
        props = {}
        loc = finding_location(d, report)
        if loc is not None:
            props["file"] = relative_path(loc.file, base) or loc.file
            props["line"] = str(max(int(loc.line), 1))
        props["title"] = f"{d.code} {d.name} ({module_label(d)})"
        message = d.message + (f"\nFix: {d.fix.description}" if d.fix is not None else "")
        fields = ",".join(f"{k}={escape_property(v)}" for k, v in props.items())
        lines.append(f"::{COMMAND.get(d.severity, 'warning')} {fields}::{escape_data(message)}")
    return "".join(line + "\n" for line in lines)
