"""Models people name rather than write: `--model torchvision.models:resnet50 --input-shape 2,3,224,224`
(an importable module's callable), or `--model transformers:AutoModelForCausalLM --config gpt2.json` (a
Hugging Face class built from a config file with `from_config`; nothing is downloaded). Built from a fixed
seed, so that the same command gives the same report, on a random batch of the given shape.
"""
from __future__ import annotations

import difflib
import importlib
import json
from pathlib import Path
from typing import Any, Callable, Optional

from nnlint.errors import ConfigError, LoadError, ModelRaised
from nnlint.loader import LoadedTarget, ModelSpec, on_sys_path, random_batch, require_module, to_device, user_code

def load_named(spec: ModelSpec, *, input_shape: Optional[tuple[int, ...]], device: Optional[str] = None,
               config: Optional[str] = None) -> LoadedTarget:
    """Build the model `spec` names (`torchvision.models:resnet50`, or with a Hugging Face `config`
    file, `transformers:AutoModelForCausalLM`) from a fixed seed, so that the same command gives the
    same report, and make its random batch of `input_shape`."""
    from nnlint._torch import import_torch
    from nnlint.trace.source import track_module_origins

    shown = str(spec)
    hf_config = None if config is None else hugging_face_config(config)   # a wrong file is the first thing to say
    make = _named_callable(spec)
    if hf_config is None and hasattr(make, "from_config"):
        raise ConfigError(f"--model {shown} builds a model from a configuration: pass --config config.json (the "
                          "model's config.json; nothing is downloaded)")
    if input_shape is None:
        raise ConfigError(f"--model {shown} needs a batch shape: pass --input-shape, e.g. --input-shape 2,3,224,224 "
                          "for images, or 2,16 for 2 sequences of 16 token ids")
    torch = import_torch()
    with torch.random.fork_rng(devices=[]), track_module_origins() as origins, on_sys_path(Path.cwd()):
        torch.manual_seed(0)
        if hf_config is None:
            with user_code(f"{shown}() (--model calls it with no arguments)"):
                model = make()
        else:
            model = _from_config(make, hf_config, shown, config)
    model = require_module(model, f"{shown}()", torch)
    batch = _named_batch(model, input_shape, torch, shown)
    if device is not None:
        model, batch, _ = to_device(model, batch, None, device, torch)
    return LoadedTarget(path=None, model=model, batch=batch, origins=dict(origins))


def _named_callable(spec: ModelSpec) -> Callable:
    """`spec.module` imported (the current folder importable, as under `python -m`), and the callable in it."""
    shown = str(spec)
    with on_sys_path(Path.cwd()):
        try:
            module = importlib.import_module(spec.module)
        except ModuleNotFoundError as exc:
            missing = exc.name or spec.module
            raise LoadError(f"--model {shown}: no module named {missing!r}; install it (pip install "
                            f"{missing.split('.')[0]}) or check the spelling") from None
        except Exception as exc:
            if "torchvision::" in str(exc):   # torchvision's C++ ops were built for another torch
                import torch

                raise LoadError(f"--model {shown}: the installed torchvision does not match this torch "
                                f"({torch.__version__}): install the torchvision built for it (from the index "
                                "this torch came from)") from None
            raise ModelRaised(f"importing {spec.module}", exc) from exc
    obj: Any = module
    for i, part in enumerate(spec.factory.split(".")):
        if not hasattr(obj, part):
            where = ".".join([spec.module, *spec.factory.split(".")[:i]])
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise LoadError(f"--model {shown}: {where} has no {part!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise LoadError(f"--model {shown} is a {type(obj).__name__}, not a function or class that builds the model")
    return obj


def _from_config(make: Callable, hf_config, shown: str, path: str):
    """`make.from_config(config)` (an Auto class) or `make(config)` (a model class). A ValueError is
    transformers refusing the pair (a gpt2 configuration for AutoModelForImageClassification)."""
    try:
        with user_code(f"{shown}.from_config({path})"):
            return make.from_config(hf_config) if hasattr(make, "from_config") else make(hf_config)
    except ModelRaised as exc:
        if not isinstance(exc.original, ValueError):
            raise
        raise LoadError(f"--model {shown} cannot be built from --config {path} (a {hf_config.model_type} "
                        f"configuration): {_first_line(exc.original)}") from None


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def hugging_face_config(path: str):
    """A transformers configuration from a config.json file (its "model_type" picks the class), with no
    download: `AutoConfig.for_model(**the file's contents)`."""
    file = Path(path)
    if not file.is_file():
        raise LoadError(f"--config {path}: no such file; give the model's config.json (as save_pretrained "
                        "writes it, with its \"model_type\")")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"--config {path}: cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise LoadError(f"--config {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise LoadError(f"--config {path} has no \"model_type\" (e.g. \"model_type\": \"gpt2\"): transformers needs "
                        "it to know which configuration this is")
    try:
        import transformers
    except ImportError:
        raise LoadError(f"--config {path} is a Hugging Face configuration: install transformers "
                        "(pip install transformers)") from None
    known = list(transformers.CONFIG_MAPPING.keys())
    if data["model_type"] not in known:
        close = difflib.get_close_matches(data["model_type"], known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "its config.json names it, e.g. \"gpt2\", \"llama\", \"bert\""
        raise LoadError(f"--config {path}: model_type {data['model_type']!r} is not one this transformers "
                        f"({transformers.__version__}) knows; {hint}")
    try:
        return transformers.AutoConfig.for_model(**data)
    except (ValueError, TypeError) as exc:
        raise LoadError(f"--config {path}: transformers cannot build a configuration from it: {_first_line(exc)}") from None


def _named_batch(model, shape: tuple[int, ...], torch, shown: str):
    """The batch the model takes: a Hugging Face model names its input (`main_input_name`), token ids
    below the config's vocabulary size for `input_ids`; anything else, standard-normal values."""
    key = getattr(model, "main_input_name", None)
    if not isinstance(key, str):
        return random_batch(model, shape, torch)
    if key != "input_ids":
        return {key: random_batch(model, shape, torch)}
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 1:
        raise LoadError(f"--model {shown} takes token ids, but its configuration has no vocab_size to draw them below")
    device = next((p.device for p in model.parameters()), None)
    ids = torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(0))
    return {key: ids.to(device) if device is not None else ids}
