"""Find the model and the sample batch in a user's model file, by convention.

In this order:
1. `build_model()` and `sample_batch()` functions;
2. module-level `model` and `batch`;
3. an explicit factory, `--model file.py:make_net`, with `--input-shape 8,3,224,224` for a random
   standard-normal batch (or the file's own `sample_batch()` / `batch`).

Or no file at all: a model people name rather than write, `--model torchvision.models:resnet50`
(an importable `module:callable`, built with no arguments) or `--model transformers:AutoModelForCausalLM
--config config.json` (a Hugging Face configuration, built with `from_config`: nothing is downloaded),
on a random batch of `--input-shape` (token ids below the config's vocabulary size for a model whose
input is `input_ids`). See nnlint.named.

Beside them the file may define `loss_fn` (called as `loss_fn(output, target)`), `target`,
`optimizer` (a function `optimizer(model)`, or an optimizer built at module level),
`train_transform`, `causal = True` (the model is autoregressive: nnlint checks that no output
sees a later token), `frozen` (parameter names or module prefixes meant to be frozen, e.g.
`frozen = ["backbone"]`) and `train(model, optimizer, batches)` (the training loop, which nnlint runs
for two steps on copies, on two batches of `(batch, target)` or `batch`, to watch the loop itself). When `loss_fn` is defined without a `target`, a batch that is a pair is read as
`(inputs, target)`. `--input-shape` replaces the file's batch when both are there.

The file is imported under a unique module name with its folder on sys.path (so `from mynet import
Net` next to it works), and everything that builds modules runs inside `track_module_origins()`, so
every diagnostic points at the exact line that built its layer. Whatever goes wrong raises one
NNLintError whose message says what to change; the user's own exceptions come back as ModelRaised
with the user's frames only.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import itertools
import re
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from nnlint.diagnostics import Location
from nnlint.errors import ConfigError, LoadError, ModelRaised, NNLintError

EXAMPLE = """\
    import torch
    from torch import nn

    def build_model():
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))

    def sample_batch():
        return torch.randn(64, 784)"""

_module_serial = itertools.count()


@dataclass
class LoadedTarget:
    """What the model file gave: the model, one batch and the optional training setup."""

    path: Optional[Path]                        # the model file, absolute (None for a named model)
    model: Any                                  # torch.nn.Module
    batch: Any
    target: Any = None
    loss_fn: Optional[Callable] = None
    optimizer: Any = None
    train_transform: Any = None
    causal: Optional[bool] = None               # `causal = True`: the model is autoregressive
    frozen: tuple[str, ...] = ()
    loop: Optional[Callable] = None             # train(model, optimizer, batches)
    # id(object) -> the line that built it: every nn.Module (exact, recorded while building), the
    # optimizer, the train transform and the batch (the line that binds or returns them).
    origins: dict[int, Location] = field(default_factory=dict, repr=False)

    def check_arguments(self) -> dict[str, Any]:
        """The keyword arguments of nnlint.api.check (and the fixer) besides model and batch."""
        given = {"causal": self.causal} if self.causal is not None else {}
        return {"target": self.target, "loss_fn": self.loss_fn, "optimizer": self.optimizer,
                "train_transform": self.train_transform, "source_origins": self.origins,
                "frozen": self.frozen, "loop": self.loop, **given}


# ---------------------------------------------------------------------------------------------
# Command-line values


@dataclass(frozen=True)
class ModelSpec:
    """`--model file.py:factory` (or just `factory`, in the checked file), or `--model module:callable`
    (an importable module, `torchvision.models:resnet50`: `file` is None and `module` names it)."""

    file: Optional[str]
    factory: str
    module: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.module}:{self.factory}" if self.module else f"{self.file or ''}:{self.factory}".lstrip(":")


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_model_spec(text: str) -> ModelSpec:
    """A path ending in .py (or naming a file) before the colon is a model file; a dotted name is a module."""
    left, sep, factory = text.rpartition(":")
    if not sep:
        left, factory = "", text
    left, factory = left.strip(), factory.strip()
    if factory.endswith(".py") or not _DOTTED.fullmatch(factory):
        raise ConfigError(f"--model {text!r}: expected file.py:factory or package.module:callable, e.g. "
                          "--model net.py:build_resnet (a function or class in that file that returns the model) "
                          "or --model torchvision.models:resnet50")
    is_file = left.endswith(".py") or "/" in left or "\\" in left or Path(left).is_file()
    if left and not is_file and _DOTTED.fullmatch(left):
        return ModelSpec(None, factory, module=left)
    return ModelSpec(left or None, factory)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """`8,3,224,224` (or `8x3x224x224`, `(8, 3, 224, 224)`) as a tuple of positive ints."""
    parts = [p for p in re.split(r"[,x\s]+", text.strip().strip("()[]").lower()) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--input-shape {text!r}: expected the batch shape as comma-separated positive "
                          "integers, batch size first, e.g. --input-shape 8,3,224,224")
    return tuple(int(p) for p in parts)


def model_file(path: str) -> Path:
    """The model file as an absolute path, or a LoadError that says why it cannot be one."""
    p = Path(path)
    if not p.exists():
        raise LoadError(f"{path}: no such file")
    if p.is_dir():
        raise LoadError(f"{path} is a folder: give the Python file that builds the model, e.g. {path.rstrip('/')}/model.py")
    if p.suffix != ".py":
        raise LoadError(f"{path}: not a Python file; nnlint reads a .py file that builds the model "
                        "(see `nnlint check --help`)")
    return p.resolve()


# ---------------------------------------------------------------------------------------------
# Loading


def load_target(path: str, *, factory: Optional[str] = None, input_shape: Optional[tuple[int, ...]] = None,
                device: Optional[str] = None) -> LoadedTarget:
    """Import the model file and find the model, the batch and the training setup in it."""
    from nnlint._torch import import_torch
    from nnlint.trace.source import track_module_origins

    file = model_file(path)
    tree = _parse(file, path)
    torch = import_torch()
    with track_module_origins() as origins, on_sys_path(file.parent):
        names = vars(_import(file, path))
        model_from, batch_from = convention(names, path, factory, input_shape)
        model = require_module(_produce(names, model_from, path), model_from, torch)
        batch = random_batch(model, input_shape, torch) if batch_from is None else _produce(names, batch_from, path)
        target = names.get("target")
        loss_fn = _loss_fn(names.get("loss_fn"))
        if loss_fn is not None and target is None and isinstance(batch, (tuple, list)) and len(batch) == 2:
            batch, target = batch   # a batch of (inputs, target): the convention when a loss is given
        if device is not None:
            model, batch, target = to_device(model, batch, target, device, torch)
        optimizer = _optimizer(names.get("optimizer"), model, torch)
    loaded = LoadedTarget(path=file, model=model, batch=batch, target=target, loss_fn=loss_fn,
                          optimizer=optimizer, train_transform=names.get("train_transform"), origins=dict(origins),
                          causal=_causal(names.get("causal"), path),
                          frozen=_frozen(names.get("frozen")), loop=_loop(names.get("train")))
    _record_bindings(loaded, tree, batch_from)
    return loaded


def _causal(value, shown: str) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise LoadError(f"{shown}: `causal` must be True or False (the model is autoregressive or not), not {value!r}")


def _parse(file: Path, shown: str) -> ast.Module:
    """Compile the file first: a syntax error is reported as file:line, not as an import failure."""
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"{shown}: cannot read it: {exc}") from None
    try:
        return ast.parse(source, filename=str(file))
    except SyntaxError as exc:
        raise LoadError(_syntax_message(exc, shown)) from None


def _syntax_message(exc: SyntaxError, shown: Optional[str] = None) -> str:
    where = shown or exc.filename or "<file>"
    text = f"{where}:{exc.lineno}: {type(exc).__name__}: {exc.msg}"
    if exc.text:
        line = exc.text.rstrip("\n")
        stripped = line.lstrip()
        text += f"\n    {stripped}"
        if exc.offset:
            text += "\n    " + " " * max(exc.offset - 1 - (len(line) - len(stripped)), 0) + "^"
    return text


@contextmanager
def on_sys_path(folder: Path) -> Iterator[None]:
    """The model file's folder first on sys.path while it loads, so its local imports resolve."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass   # the user's code removed it itself


@contextmanager
def user_code(what: str) -> Iterator[None]:
    """Run the user's code; its failures become one clear NNLintError naming `what`."""
    try:
        yield
    except NNLintError:
        raise
    except SyntaxError as exc:   # in a module the file imports
        raise LoadError(_syntax_message(exc)) from None
    except SystemExit as exc:
        raise LoadError(f"{what} called sys.exit({exc.code!r}): keep script code under "
                        "`if __name__ == \"__main__\":` so that importing the file only defines things") from None
    except Exception as exc:
        raise ModelRaised(what, exc) from exc


def _import(file: Path, shown: str):
    # A unique name: two model files called model.py in one process must not replace each other.
    # Registered in sys.modules before running, as a normal import is: dataclasses, pickle and
    # inspect.getsource look a class's module up there.
    stem = re.sub(r"\W", "_", file.stem)
    name = f"nnlint_model_{next(_module_serial)}_{stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with user_code(f"importing {shown}"):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def convention(names: dict[str, Any], shown: str, factory: Optional[str] = None,
               input_shape: Optional[tuple[int, ...]] = None) -> tuple[str, Optional[str]]:
    """Where the model and the batch come from, as `"build_model()"` (call it) or `"model"` (take it);
    the batch source is None when `--input-shape` makes a random one. Raises LoadError naming what to
    define when the file matches no convention. Runs none of the user's code."""
    has_sample_batch = callable(names.get("sample_batch"))
    if factory is not None:
        own_batch = "sample_batch()" if has_sample_batch else ("batch" if "batch" in names else None)
        if own_batch is None and input_shape is None:
            raise LoadError(f"--model {shown}:{factory} needs a batch: pass --input-shape (e.g. --input-shape "
                            f"8,3,224,224) for a random one, or define sample_batch() in {shown}")
        return f"{factory}()", None if input_shape else own_batch
    if callable(names.get("build_model")):
        if not has_sample_batch and input_shape is None:
            raise LoadError(_missing_batch(shown, "build_model()", "sample_batch()",
                                           "def sample_batch():\n        return torch.randn(64, 784)"))
        return "build_model()", None if input_shape else "sample_batch()"
    if "model" in names:
        if "batch" not in names and input_shape is None:
            raise LoadError(_missing_batch(shown, "`model`", "`batch`", "batch = torch.randn(64, 784)"))
        return "model", None if input_shape else "batch"
    if has_sample_batch:
        raise LoadError(f"{shown} defines sample_batch() but no build_model(); add one that returns the model, "
                        "e.g.\n\n    def build_model():\n        return Net()")
    raise LoadError(
        f"{shown} defines neither build_model() and sample_batch() nor module-level `model` and `batch`, "
        f"so nnlint does not know what to check. Add, for example:\n\n{EXAMPLE}\n\n"
        f"or name a factory and a batch shape: nnlint check --model {shown}:make_net --input-shape 64,784")


def _missing_batch(shown: str, has: str, lacks: str, example: str) -> str:
    return (f"{shown} defines {has} but no {lacks}; add it, e.g.\n\n    {example}\n\n"
            f"or pass --input-shape 64,784 for a random batch of that shape")


def _produce(names: dict[str, Any], source: str, shown: str) -> Any:
    """Call `source` if it reads `name()`, else take the value bound to it."""
    if not source.endswith("()"):
        return names[source]
    make = _attribute(names, source[:-2], shown)
    with user_code(source):
        return make()


def _attribute(names: dict[str, Any], dotted: str, shown: str) -> Any:
    head, *rest = dotted.split(".")
    if head not in names:
        callables = sorted(n for n, v in names.items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == names.get("__name__"))
        listed = ", ".join(callables[:12]) or "nothing callable"
        raise LoadError(f"{shown} has no {head!r} (--model {shown}:{dotted}); it defines: {listed}")
    obj = names[head]
    for part in rest:
        if not hasattr(obj, part):
            raise LoadError(f"{shown}: {head} has no attribute {part!r} (--model {shown}:{dotted})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise LoadError(f"{shown}: {dotted} is a {type(obj).__name__}, not a function or class that builds the model")
    return obj


def require_module(obj: Any, source: str, torch) -> Any:
    if isinstance(obj, torch.nn.Module):
        return obj
    what = f"{source} returned" if source.endswith("()") else f"{source} is"
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        raise LoadError(f"{what} the class {obj.__name__}, not a model: build one, e.g. `{obj.__name__}()`")
    if isinstance(obj, (tuple, list)) and any(isinstance(o, torch.nn.Module) for o in obj):
        raise LoadError(f"{what} a {type(obj).__name__} of {len(obj)} items; give the model alone "
                        "(define `optimizer(model)` for the optimizer, `loss_fn` for the loss)")
    raise LoadError(f"{what} {_short_repr(obj)} (type {type(obj).__name__}), not a torch.nn.Module")


def _short_repr(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 40 else text[:37] + "..."


def _loss_fn(obj: Any) -> Optional[Callable]:
    if obj is None:
        return None
    if isinstance(obj, type):
        raise LoadError(f"loss_fn is the class {obj.__name__}; give an instance: loss_fn = {obj.__name__}()")
    if not callable(obj):
        raise LoadError(f"loss_fn is a {type(obj).__name__}; give a function or module called as loss_fn(output, target)")
    return obj


def _frozen(obj: Any) -> tuple[str, ...]:
    if obj is None:
        return ()
    if isinstance(obj, str):
        obj = [obj]
    if not isinstance(obj, (list, tuple, set)) or not all(isinstance(p, str) for p in obj):
        raise LoadError("frozen must list the parameter names or module prefixes meant to be frozen, "
                        'e.g. frozen = ["backbone"]')
    return tuple(obj)


def _loop(obj: Any) -> Optional[Callable]:
    if obj is None:
        return None
    if isinstance(obj, type) or not callable(obj):
        raise LoadError("train must be your training loop, a function train(model, optimizer, batches), e.g.\n\n"
                        "    def train(model, optimizer, batches):\n"
                        "        for x, y in batches:\n"
                        "            optimizer.zero_grad()\n"
                        "            loss_fn(model(x), y).backward()\n"
                        "            optimizer.step()")
    return obj


def _optimizer(obj: Any, model, torch) -> Any:
    """`optimizer(model)` is called; an optimizer built at module level is taken as it is."""
    if obj is None or isinstance(obj, torch.optim.Optimizer):
        return obj
    if isinstance(obj, type) or not callable(obj):
        raise LoadError("optimizer must be a function that builds it for the model, e.g.\n\n"
                        "    def optimizer(model):\n"
                        "        return torch.optim.AdamW(model.parameters(), lr=1e-3)")
    with user_code("optimizer(model)"):
        return obj(model)


def random_batch(model, shape: tuple[int, ...], torch):
    """A standard-normal batch in the model's floating dtype, from a fixed seed (repeatable reports)."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(*shape, generator=generator, dtype=dtype)
    return batch.to(param.device) if param is not None else batch


def to_device(model, batch, target, device: str, torch):
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available to this torch ({torch.__version__}); "
                          "use --device cpu")
    from nnlint.trace.batch import materialize_batch

    def move(obj):
        if isinstance(obj, torch.Tensor):
            return obj.to(device)
        if isinstance(obj, Mapping):
            return {k: move(v) for k, v in obj.items()}
        if isinstance(obj, (tuple, list)):
            return type(obj)(move(v) for v in obj) if not hasattr(obj, "_fields") else type(obj)(*map(move, obj))
        return obj

    return model.to(device), move(materialize_batch(batch)), move(target)


def _record_bindings(loaded: LoadedTarget, tree: ast.Module, batch_from: Optional[str]) -> None:
    """Point the optimizer, the train transform, the batch and the loss at the line that builds them in the file,
    so that findings about them are located too (modules are already, exactly)."""
    batch_name = batch_from.removesuffix("()") if batch_from else None
    for obj, name in ((loaded.optimizer, "optimizer"), (loaded.train_transform, "train_transform"),
                      (loaded.batch, batch_name), (loaded.loss_fn, "loss_fn")):
        if obj is None or name is None or id(obj) in loaded.origins:
            continue
        line = binding_line(tree, name)
        if line is not None:
            loaded.origins[id(obj)] = Location(str(loaded.path), line)


def binding_line(tree: ast.Module, name: str) -> Optional[int]:
    """The line that gives `name` its value at the top level of a file: for a function, its last
    `return` (`return torch.optim.SGD(...)`); for an assignment or an import, its line."""
    found = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            returns = [n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
            found = max((r.lineno for r in returns), default=node.lineno)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found = node.lineno
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            found = node.lineno
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            found = node.lineno
    return found
