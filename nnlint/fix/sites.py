"""Which line of the user's code last wrote each parameter, recorded while the model file builds the model.

The source fixer must put an init call where it takes effect: after the last code that writes the
parameter (a constructor's own reset_parameters, the user's `nn.init.normal_(conv.weight, std=0.3)` in
a loop, a parent's `for m in self.modules(): ...`), in a scope that can name the module. Reading the
source cannot tell which of those runs last; watching the build can. While `record_writes()` is active,
a TorchFunctionMode sees every torch call: in-place writes (`normal_`, `fill_`, `kaiming_uniform_`,
`zero_` ...) are logged with the stack of user frames that made them (file, line, function, `self`),
and tensor creations are logged so that a freed temporary whose memory a parameter later reuses is
not mistaken for that parameter.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional

from nnlint.trace.source import is_user_file

_THIS_FILE = os.path.abspath(__file__)


@dataclass(frozen=True)
class UserFrame:
    file: str
    line: int                 # the line being executed in that frame
    function: str             # co_name: "__init__", "build_model", "<module>"
    first_line: int           # co_firstlineno: identifies the function
    self_id: Optional[int]    # id(self) when the frame is a method of an nn.Module

    @property
    def code_key(self) -> tuple[str, int, str]:
        return (os.path.abspath(self.file), self.first_line, self.function)


@dataclass(frozen=True)
class Write:
    order: int
    storage: int
    via: str                          # "nn.init.normal_" | "tensor.fill_" | "call:__init__" (a constructor)
    frames: tuple[UserFrame, ...]     # user frames, innermost first

    @property
    def site(self) -> UserFrame:
        return self.frames[0]

    def inside(self, code_key: tuple[str, int, str], self_id: int) -> bool:
        """Did this write happen during that function's run for that `self`?"""
        return any(f.code_key == code_key and f.self_id == self_id for f in self.frames)


@dataclass
class WriteLog:
    writes: list[Write] = field(default_factory=list)
    created: dict[int, int] = field(default_factory=dict)   # storage pointer -> order of its latest creation

    def last_write(self, tensor) -> Optional[Write]:
        ptr = _storage(tensor)
        if ptr is None:
            return None
        born = self.created.get(ptr, -1)
        found = None
        for w in self.writes:
            if w.storage == ptr and w.order > born:
                found = w
        return found

    def last_writes(self, model) -> dict[str, Write]:
        """The last recorded write of every parameter of the model, by qualified name."""
        by_ptr: dict[int, list[Write]] = {}
        for w in self.writes:
            by_ptr.setdefault(w.storage, []).append(w)
        out = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            ptr = _storage(p)
            born = self.created.get(ptr, -1) if ptr is not None else -1
            candidates = [w for w in by_ptr.get(ptr, ()) if w.order > born]
            if candidates:
                out[name] = candidates[-1]
        return out


def _storage(tensor) -> Optional[int]:
    try:
        ptr = tensor.untyped_storage().data_ptr()
    except Exception:   # meta tensors, sparse, tensor subclasses without storage
        return None
    return ptr or None


def _first_tensor(args, kwargs):
    import torch

    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, torch.Tensor):
            return a
    return None


def _user_frames(start) -> tuple[tuple[UserFrame, ...], str]:
    """The user frames above `start` (innermost first) and what the innermost one called."""
    import torch

    frames = []
    callee = None
    f = start
    while f is not None:
        filename = f.f_code.co_filename
        if is_user_file(filename):
            obj = f.f_locals.get("self") if "self" in f.f_code.co_varnames[:1] else None
            frames.append(UserFrame(filename, f.f_lineno, f.f_code.co_name, f.f_code.co_firstlineno,
                                    id(obj) if isinstance(obj, torch.nn.Module) else None))
        elif not frames:
            callee = f
        f = f.f_back
    return tuple(frames), _via(callee)


def _via(callee) -> str:
    if callee is None:
        return "call:?"
    filename = os.path.abspath(callee.f_code.co_filename)
    if filename == _THIS_FILE:
        return "tensor"
    if filename.replace(os.sep, "/").endswith("torch/nn/init.py"):
        return f"nn.init.{callee.f_code.co_name}"
    return f"call:{callee.f_code.co_name}"


def _recorder_class():
    from torch.overrides import TorchFunctionMode

    class _WriteRecorder(TorchFunctionMode):
        def __init__(self, log: WriteLog):
            super().__init__()
            self.log = log
            self.order = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            import torch

            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            self.order += 1
            if name.endswith("_") and not name.startswith("_"):
                target = _first_tensor(args, kwargs)
                ptr = _storage(target) if target is not None else None
                if ptr is not None:
                    frames, via = _user_frames(sys._getframe(1))
                    if frames:
                        via = f"tensor.{name}" if via == "tensor" else via
                        self.log.writes.append(Write(self.order, ptr, via, frames))
            elif isinstance(out, torch.Tensor):
                ptr = _storage(out)
                if ptr is not None and all(_storage(a) != ptr for a in args if isinstance(a, torch.Tensor)):
                    self.log.created[ptr] = self.order
            return out

    return _WriteRecorder


@contextmanager
def record_writes() -> Iterator[WriteLog]:
    """`with record_writes() as log: model = build()`: then `log.last_writes(model)`."""
    log = WriteLog()
    with _recorder_class()(log):
        yield log


def module_paths(model) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules(remove_duplicate=False)}


def init_code_keys(module) -> list[tuple[str, int, str]]:
    """The `__init__` functions that run when this module is built (its class and its bases')."""
    keys = []
    for cls in type(module).__mro__:
        init = cls.__dict__.get("__init__")
        code = getattr(init, "__code__", None)
        if code is not None:
            keys.append((os.path.abspath(code.co_filename), code.co_firstlineno, code.co_name))
    return keys


def describe_frames(frames: tuple[UserFrame, ...]) -> str:
    return " <- ".join(f"{os.path.basename(f.file)}:{f.line} in {f.function}" for f in frames[:4])


def any_user_frame_in(write: Write, path: str) -> bool:
    path = os.path.abspath(path)
    return any(os.path.abspath(f.file) == path for f in write.frames)

