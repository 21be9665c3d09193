"""Where things are in the user's source: the line that called an op, the line that built a module."""
from __future__ import annotations

import ast
import inspect
import os
import sys
import sysconfig
from functools import lru_cache
from typing import Any, Optional

from nnlint.diagnostics import Location
from nnlint.trace.wrappers import user_class

_NNLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STDLIB_DIRS = tuple(
    os.path.abspath(p) for p in {sysconfig.get_paths().get("stdlib", ""), sysconfig.get_paths().get("platstdlib", "")} if p
)


@lru_cache(maxsize=4096)
def _torch_dir() -> str:
    import torch  # only called while tracing, when torch is loaded already

    return os.path.dirname(os.path.abspath(torch.__file__))


@lru_cache(maxsize=8192)
def is_user_file(filename: str) -> bool:
    """False for torch, nnlint, the standard library and synthetic files (`<frozen ...>`, `<string>`)."""
    if not filename or filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    if path.startswith(_torch_dir() + os.sep) or path.startswith(_NNLINT_DIR + os.sep):
        return False
    if "site-packages" not in path and any(path.startswith(d + os.sep) for d in _STDLIB_DIRS):
        return False
    return True


def user_location(frame=None) -> Optional[Location]:
    """The innermost user-code frame on the stack, as file:line (cheap: no traceback objects)."""
    f = frame if frame is not None else sys._getframe(1)
    while f is not None:
        name = f.f_code.co_filename
        if is_user_file(name):
            return Location(name, f.f_lineno)
        f = f.f_back
    return None


# ---------------------------------------------------------------------------------------------
# Construction sites. The loader records them exactly while it builds the model (see
# track_module_origins); for a model built elsewhere, read the classes' source with ast.


class _ClassSource:
    """`self.<attr> = <expr>` assignments in a module class's source, by attribute name."""

    def __init__(self, cls: type):
        self.file: Optional[str] = None
        self.assignments: dict[str, ast.expr] = {}
        try:
            self.file = inspect.getsourcefile(cls)
            lines, start = inspect.getsourcelines(cls)
        except (OSError, TypeError):
            return
        try:
            tree = ast.parse(inspect.cleandoc("\n" + "".join(lines)) if lines and lines[0][:1].isspace() else "".join(lines))
        except SyntaxError:
            return
        offset = start - 1
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                        self.assignments.setdefault(target.attr, _shift(node.value, offset))
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                t = node.target
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    self.assignments.setdefault(t.attr, _shift(node.value, offset))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("add_module", "register_module"):
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) and len(node.args) > 1:
                    self.assignments.setdefault(node.args[0].value, _shift(node.args[1], offset))


def _shift(node: ast.expr, offset: int) -> ast.expr:
    for n in ast.walk(node):
        if hasattr(n, "lineno"):
            n.lineno += offset
            if getattr(n, "end_lineno", None) is not None:
                n.end_lineno += offset
    return node


@lru_cache(maxsize=512)
def _class_source(cls: type) -> _ClassSource:
    return _ClassSource(cls)


def construction_sites(model: Any, origins: Optional[dict[int, Location]] = None) -> dict[str, Location]:
    """Map qualified module names to the line that constructed each module.

    `origins` (id(module) -> Location) comes from the loader and is exact; names it lacks are found by
    reading `self.x = ...` in the parent class's source, descending into `nn.Sequential(...)` /
    `nn.ModuleList([...])` literals element by element.
    """
    origins = origins or {}
    nodes: dict[str, tuple[Optional[str], Optional[ast.expr]]] = {"": (None, None)}
    sites: dict[str, Location] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) in origins:
            sites[name] = origins[id(module)]
        if not name:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        file, node = _child_node(parent, attr, nodes.get(parent_name, (None, None)))
        nodes[name] = (file, node)
        if name not in sites and node is not None and file is not None:
            sites[name] = Location(file, node.lineno)
        elif name not in sites and parent_name in sites and _is_container(parent):
            sites[name] = sites[parent_name]
    return sites


def _is_container(module: Any) -> bool:
    return user_class(module).__name__ in ("Sequential", "ModuleList", "ModuleDict")


def _child_node(parent: Any, attr: str, parent_node: tuple[Optional[str], Optional[ast.expr]]):
    file, node = parent_node
    if _is_container(parent):
        if node is None:
            return None, None
        elements = _container_elements(node)
        if attr.isdigit() and elements is not None and int(attr) < len(elements):
            return file, elements[int(attr)]
        if isinstance(node, ast.Call):  # ModuleDict / OrderedDict literal: find the key
            for kw in ast.walk(node):
                if isinstance(kw, ast.Dict):
                    for k, v in zip(kw.keys, kw.values):
                        if isinstance(k, ast.Constant) and k.value == attr:
                            return file, v
        return file, node
    for cls in user_class(parent).__mro__:
        if cls.__module__.startswith("torch.") or cls is object:
            break
        source = _class_source(cls)
        if attr in source.assignments:
            return source.file, source.assignments[attr]
    return None, None


def _container_elements(node: ast.expr) -> Optional[list[ast.expr]]:
    if isinstance(node, ast.Call):
        if len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
            return list(node.args[0].elts)
        if node.args and not any(isinstance(a, ast.Starred) for a in node.args):
            return list(node.args)
    if isinstance(node, (ast.List, ast.Tuple)):
        return list(node.elts)
    return None


class track_module_origins:
    """While active, record the line that constructs every nn.Module: `with track_module_origins() as o:`.

    It wraps `nn.Module.__init__` for the duration of the block only. The recorded line is the caller of
    the outermost `__init__` of that object, i.e. `nn.Linear(784, 256)` in the user's file, not the
    `super().__init__()` inside a custom module.
    """

    def __init__(self):
        self.origins: dict[int, Location] = {}
        self._original = None

    def __enter__(self) -> dict[int, Location]:
        import torch.nn as nn

        original = nn.Module.__init__
        origins = self.origins

        def __init__(module, *args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is module:
                frame = frame.f_back
            location = user_location(frame) if frame is not None else None
            if location is not None:
                origins[id(module)] = location
            original(module, *args, **kwargs)

        self._original = original
        nn.Module.__init__ = __init__
        return origins

    def __exit__(self, *exc) -> None:
        import torch.nn as nn

        nn.Module.__init__ = self._original
