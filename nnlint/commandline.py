"""What `nnlint check` and `nnlint fix` share on the command line: the options that name a model (FILE,
--model, --input-shape, --device) resolved into a Target, the rule codes of --select/--ignore, loading,
writing a file the user asked for, and the exit codes. The commands themselves are in nnlint.cli and
nnlint.fix.cli; both import this module, and neither imports the other's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import click

from nnlint.errors import ConfigError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class Target:
    """The command line's answer to "which model, on which batch": validated, nothing imported yet."""

    file: Optional[str]                         # the model file, as the user typed it (None: a named model)
    factory: Optional[str] = None               # --model file.py:FACTORY, or MODULE:FACTORY
    input_shape: Optional[tuple[int, ...]] = None
    device: Optional[str] = None
    module: Optional[str] = None                # --model MODULE:FACTORY, a model named, not written
    model_config: Optional[str] = None          # --config: a Hugging Face config.json for it

    @property
    def spec(self):
        from nnlint.loader import ModelSpec

        return ModelSpec(self.file, self.factory or "", self.module)


def model_options(command: Callable) -> Callable:
    """FILE, --model, --input-shape, --device: the options of every command that loads a model."""
    decorators = [
        click.argument("file", required=False, metavar="FILE"),
        click.option("--model", "model_spec", metavar="FILE.py:FACTORY",
                     help="Build the model with this function or class instead of the file's build_model() / "
                          "`model` (FILE.py may be left out when FILE is given). `nnlint check` also takes an "
                          "importable MODULE:CALLABLE, e.g. torchvision.models:resnet50, with no FILE."),
        click.option("--input-shape", metavar="N,C,H,W",
                     help="Check on a random standard-normal batch of this shape, e.g. 8,3,224,224 "
                          "(replaces the file's sample_batch() / `batch`)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]),
                     help="Move the model and batch there first (default: where the file puts them)."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def resolve_target(file: Optional[str], model_spec: Optional[str], input_shape: Optional[str],
                   device: Optional[str], *, named: bool = False, model_config: Optional[str] = None) -> Target:
    """The validated target. `named`: the command also checks a model named by --model MODULE:CALLABLE
    (with a Hugging Face `model_config`), which has no file; `nnlint fix`, which edits files, does not."""
    from nnlint.loader import parse_input_shape, parse_model_spec

    spec = parse_model_spec(model_spec) if model_spec else None
    shape = parse_input_shape(input_shape) if input_shape else None
    if spec is not None and spec.module is not None:
        if not named:
            raise ConfigError(f"--model {model_spec} names a model in an importable package, not a file of yours "
                              f"that nnlint fix could edit; check it with: nnlint check --model {model_spec}")
        if file is not None:
            raise ConfigError(f"--model {model_spec} names a model in an importable module, so there is no model "
                              f"file to give ({file}); drop it, or use --model {file}:{spec.factory}")
        return Target(file=None, factory=spec.factory, input_shape=shape, device=device, module=spec.module,
                      model_config=model_config)
    if model_config is not None:
        raise ConfigError("--config is the Hugging Face configuration of a model named by --model MODULE:CALLABLE, "
                          "e.g. --model transformers:AutoModelForCausalLM --config config.json; a model file "
                          "builds its own model")
    path = file
    if spec is not None and spec.file is not None:
        if file is not None and os.path.abspath(file) != os.path.abspath(spec.file):
            raise ConfigError(f"two model files given ({file} and --model {model_spec}): give it once, "
                              f"e.g. nnlint check --model {model_spec}")
        path = spec.file
    if path is None:
        raise click.UsageError("which model? Give its file: nnlint check model.py "
                               "(or --model model.py:factory --input-shape 8,3,224,224)")
    return Target(file=path, factory=spec.factory if spec else None, input_shape=shape, device=device)


def parse_codes(values: tuple[str, ...], option: str) -> list[str]:
    """`--select NN2,NN301 --select NN5` as ["NN2", "NN301", "NN5"]; unknown codes are an error."""
    from nnlint.registry import validate_codes

    codes = [c.strip().upper() for v in values for c in v.replace(" ", ",").split(",") if c.strip()]
    unknown = validate_codes(codes)
    if unknown:
        raise ConfigError(f"{option}: unknown rule code{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          "`nnlint rules` lists them (a prefix such as NN2 selects a family)")
    return codes


def load(target: Target):
    """Import the model file (or the named model's module) and build the model, batch and training setup
    (nnlint.loader.LoadedTarget)."""
    from nnlint.loader import load_target
    from nnlint.named import load_named

    if target.module is not None:
        return load_named(target.spec, input_shape=target.input_shape, device=target.device,
                          config=target.model_config)
    return load_target(target.file, factory=target.factory, input_shape=target.input_shape, device=target.device)


def write_file(path: str, text: str, option: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write it ({exc.strerror or exc})") from None


def use_color(stream) -> bool:
    """Color only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")
