"""One finding per cause: the findings of a rule that share a cause are one group, one row in the text
and HTML reports (JSON keeps every finding).

A rule says what its cause is (`Rule.cause`, the evidence keys whose values make two findings the same
problem: NN103's nonlinearity, direction and initializer); without one, every finding is its own group.
A group's row names its modules compactly (`layers.0..4 (5)`) and its message is the first finding's,
with the numbers that differ across the group shown as ranges (`2.5-2.9x too large`) and the module
names that differ compacted the same way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from nnlint.diagnostics import Diagnostic
from nnlint.pyexpr import CODE_SPAN

# A number as messages print it (0.036, 2.9, 1.3e-05, 63%, 2.9x), not inside a name or a code span.
_NUMBER = re.compile(r"(?<![\w.\[])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:x|%)?(?![\w\]])")
CODE, MODULE, NUMBER = "\x01", "\x02", "\x03"


@dataclass
class Group:
    diagnostics: list[Diagnostic]

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]

    @property
    def code(self) -> str:
        return self.first.code

    @property
    def severity(self) -> str:
        return self.first.severity

    @property
    def modules(self) -> list[str]:
        return [d.module for d in self.diagnostics]

    @property
    def label(self) -> str:
        """The module column: one name, or the group's names compacted, with their count."""
        names = list(dict.fromkeys(self.modules))
        return names[0] if len(names) == 1 else f"{compact(names)} ({len(names)})"

    def message(self, known_modules: frozenset = frozenset()) -> str:
        if len(self.diagnostics) == 1:
            return self.first.message
        return merged_message([d.message for d in self.diagnostics], known_modules)


def groups(diagnostics: list[Diagnostic]) -> list[Group]:
    """The findings, in their order, gathered by rule, severity and cause (the group takes the place of
    its first finding)."""
    from nnlint.registry import rule_of

    out: dict[tuple, Group] = {}
    for i, d in enumerate(diagnostics):
        rule = rule_of(d.code)
        cause = rule.cause if rule is not None else None
        key = (d.code, d.severity, tuple(_hashable(d.evidence.get(k)) for k in cause)) if cause is not None and d.module \
            else (i,)
        out.setdefault(key, Group([])).diagnostics.append(d)
    return list(out.values())


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


# ---------------------------------------------------------------- names

def compact(names: list[str]) -> str:
    """`layers.0..4` for names that differ in one numbered component, `fc1, fc2, fc3` for a few others,
    `fc1, fc2, ... (+5)` for many."""
    split = [re.split(r"(\d+)", n) for n in names]
    if len({len(s) for s in split}) == 1 and len(split[0]) > 1:
        differing = [i for i in range(len(split[0])) if len({s[i] for s in split}) > 1]
        if len(differing) == 1 and differing[0] % 2 == 1:   # odd slots of re.split are the numbers
            i = differing[0]
            numbers = sorted(int(s[i]) for s in split)
            return "".join(split[0][:i]) + f"{numbers[0]}..{numbers[-1]}" + "".join(split[0][i + 1:])
    if len(names) <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:2])}, ... (+{len(names) - 2})"


# ---------------------------------------------------------------- messages

def merged_message(messages: list[str], known_modules: frozenset = frozenset()) -> str:
    """The first message, with what differs across the messages merged: numbers as `min-max`, module
    names compacted; code spans are the first message's. Messages of different shapes: the first, and
    how many others there are."""
    parsed = [_parse(m, known_modules) for m in messages]
    if len({p[0] for p in parsed}) != 1:
        return f"{messages[0]} (and {len(messages) - 1} more like it; --verbose lists them)"
    skeleton = parsed[0][0]
    slots = list(zip(*(p[1] for p in parsed)))
    # the note that a code span differs goes after the last such span only: a fix of two calls reads
    # "a(...) and b(...) (for the first; ...)", not the note twice
    kinds = [ch for ch in skeleton if ch in (CODE, MODULE, NUMBER)]
    differing_codes = [j for j, (kind, values) in enumerate(zip(kinds, slots)) if kind == CODE and len(set(values)) > 1]
    out, k = [], 0
    for ch in skeleton:
        if ch not in (CODE, MODULE, NUMBER):
            out.append(ch)
            continue
        values = slots[k]
        k += 1
        if ch == CODE:
            out.append(values[0] + (" (for the first; likewise for the others)"
                                    if differing_codes and k - 1 == differing_codes[-1] else ""))
        elif ch == MODULE:
            names = list(dict.fromkeys(values))
            out.append(names[0] if len(names) == 1 else compact(names))
        elif known_modules and all(v in known_modules for v in values):
            out.append(compact(list(dict.fromkeys(values))))   # numbered modules of a Sequential: `0..10`
        else:
            out.append(_range(values))
    return "".join(out)


def _parse(message: str, known_modules: frozenset) -> tuple[str, list[str]]:
    """(skeleton, slot values): code spans, module names and numbers replaced by placeholders."""
    values: list[tuple[int, str, str]] = []
    masked = list(message)

    def take(pattern: re.Pattern, kind: str) -> None:
        text = "".join(masked)
        for m in pattern.finditer(text):
            if any(c in (CODE, MODULE, NUMBER, "\x00") for c in text[m.start():m.end()]):
                continue
            values.append((m.start(), kind, message[m.start():m.end()]))
            masked[m.start()] = kind
            for j in range(m.start() + 1, m.end()):
                masked[j] = "\x00"

    take(CODE_SPAN, CODE)
    if known_modules:
        names = sorted((n for n in known_modules if n and not n.isdigit()), key=len, reverse=True)
        if names:
            take(re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, names)) + r")(?![\w])"), MODULE)
    take(_NUMBER, NUMBER)
    skeleton = "".join(c for c in masked if c != "\x00")
    return skeleton, [v for _, _, v in sorted(values)]


def _range(values: tuple[str, ...]) -> str:
    """`2.8-2.9x` from 2.8x, 2.9x, 2.85x; the unit (x, %) once, at the end."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return distinct[0]
    unit = distinct[0][-1] if distinct[0][-1] in "x%" and all(v.endswith(distinct[0][-1]) for v in distinct) else ""
    numbers = sorted((v[:-1] if unit else v for v in distinct), key=_as_float)
    return f"{numbers[0]}-{numbers[-1]}{unit}"


def _as_float(text: str) -> float:
    try:
        return float(text.rstrip("x%"))
    except ValueError:
        return 0.0


def group_count(diagnostics: list[Diagnostic]) -> Optional[int]:
    """How many groups the findings make (None when grouping changes nothing)."""
    n = len(groups(diagnostics))
    return n if n < len(diagnostics) else None
