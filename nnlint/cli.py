"""The command line: `nnlint check`, `nnlint rules`, `nnlint rule CODE`.

Exit codes: 0 = no error or warning (info findings alone still pass), 1 = findings, 2 = nnlint could
not run (a bad file, option or configuration, or the model raised). Every could-not-run case prints
one message, `nnlint: error: ...`, and no traceback; anything else that escapes is a bug in nnlint and
says so (NNLINT_DEBUG=1 shows its traceback).

`--help`, `rules` and `rule` never import torch (the catalog reads no tensors), so they answer at
once; only `check` loads the model, and imports the loader and the check when it runs.

Commands that take a model (check, and `nnlint fix` when it is registered here) share the options of
`model_options`, resolve them with `resolve_target` and `parse_codes`, and load with `load`, so the
model is found, configured and reported on the same way by each.
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import click

from nnlint import __version__
from nnlint.errors import ConfigError, NNLintError
from nnlint.output import FORMATS, emitter

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
BUG_REPORT = ("this is a bug in nnlint, not in your model: please report it with the command you ran "
              "(NNLINT_DEBUG=1 shows the full traceback)")


class _Group(click.Group):
    """Turns every failure of a command into exit code 2 and one line on stderr."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise   # click's own usage errors and exits (already exit 2 for usage errors)
        except NNLintError as exc:
            click.echo(f"nnlint: error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except BrokenPipeError:
            # `nnlint check model.py | head`: the reader left; stop quietly, as other CLIs do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_ERROR)
        except Exception as exc:
            if os.environ.get("NNLINT_DEBUG") == "1":
                traceback.print_exc()
            click.echo(f"nnlint: internal error: {type(exc).__name__}: {exc}\n{BUG_REPORT}", err=True)
            ctx.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nnlint")
def main() -> None:
    """Audit a PyTorch model and a sample batch for a bad training setup.

    nnlint runs the model once on the batch (a training forward and backward, and an eval forward),
    measures what happens to the signal, and reports the layers that will train badly: dead or
    saturated activations, wrong init scales, unnormalized inputs, dropout left on in eval, ...

    \b
    Start with:   nnlint check model.py
    The rules:    nnlint rules
    One rule:     nnlint rule NN203
    """


# ---------------------------------------------------------------------------------------------
# What to check


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
    from nnlint.loader import load_named, load_target

    if target.module is not None:
        return load_named(target.spec, input_shape=target.input_shape, device=target.device,
                          config=target.model_config)
    return load_target(target.file, factory=target.factory, input_shape=target.input_shape, device=target.device)


# ---------------------------------------------------------------------------------------------
# nnlint check


@main.command()
@model_options
@click.option("--select", multiple=True, metavar="CODES",
              help="Only these rules: comma-separated codes or prefixes (NN203, NN2). Replaces the config's select.")
@click.option("--ignore", multiple=True, metavar="CODES",
              help="Skip these rules: codes or prefixes, added to the config's ignore.")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Report format on stdout.")
@click.option("--html", "html_path", metavar="PATH", help="Also write a self-contained HTML report to PATH.")
@click.option("--config", "model_config", metavar="CONFIG.json",
              help="With --model MODULE:CALLABLE: build it from this Hugging Face config.json (from_config; "
                   "nothing is downloaded), e.g. --model transformers:AutoModelForCausalLM --config gpt2.json.")
def check(file, model_spec, input_shape, device, select, ignore, output_format, html_path, model_config) -> None:
    """Check the model and sample batch defined in FILE.

    \b
    FILE defines, in the order nnlint looks for them:
      build_model() and sample_batch()    functions that return the model and one batch
      model and batch                     module-level variables
    and optionally loss_fn, target, optimizer(model) and train_transform.

    \b
    Or name a model instead of writing one, on a random batch of --input-shape:
      nnlint check --model torchvision.models:resnet50 --input-shape 2,3,224,224
      nnlint check --model transformers:AutoModelForCausalLM --config gpt2.json --input-shape 2,16

    Exit status: 0 no error or warning, 1 findings, 2 nnlint could not run.
    Configuration: [tool.nnlint] in the nearest pyproject.toml above FILE; flags override it.
    """
    from nnlint.config import load_config

    target = resolve_target(file, model_spec, input_shape, device, named=True, model_config=model_config)
    selected = parse_codes(select, "--select") or None
    ignored = parse_codes(ignore, "--ignore")
    render = emitter(output_format)
    render_html = emitter("html") if html_path else None   # fail before the model is loaded, not after
    if html_path and not Path(html_path).resolve().parent.is_dir():
        raise ConfigError(f"--html {html_path}: the folder {Path(html_path).resolve().parent} does not exist")
    config = load_config(target.file or ".")
    from nnlint.api import check as run_check

    # The user's own prints (while the model is built, or in forward) go to stderr: stdout carries
    # the report, which must stay valid JSON/SARIF when a model announces itself.
    with contextlib.redirect_stdout(sys.stderr):
        loaded = load(target)
        report = run_check(loaded.model, loaded.batch, select=selected, ignore=ignored, config=config,
                           **loaded.check_arguments())
    report.source_file = target.file
    color = use_color(sys.stdout)
    fix_command = f"nnlint fix {target.file}" if "fix" in main.commands and target.file else None
    click.echo(_render(render, report, color=color, fix_command=fix_command), nl=False, color=color)
    if render_html is not None:
        write_file(html_path, render_html(report), "--html")
        click.echo(f"nnlint: wrote the HTML report to {html_path}", err=True)
    sys.exit(EXIT_CLEAN if report.ok else EXIT_FINDINGS)


def write_file(path: str, text: str, option: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write it ({exc.strerror or exc})") from None


def _render(render: Callable, report, **options) -> str:
    """Call an emitter with the options it declares (the text emitter takes color and fix_command;
    JSON takes none)."""
    accepted = inspect.signature(render).parameters
    return render(report, **{k: v for k, v in options.items() if k in accepted})


def use_color(stream) -> bool:
    """Color only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


# ---------------------------------------------------------------------------------------------
# nnlint rules / nnlint rule CODE


@main.command("rules")
@click.option("--format", "output_format", type=click.Choice(["text", "markdown"]), default="text", show_default=True,
              help="text: a table; markdown: the whole catalog with every rule's documentation (docs/rules.md).")
def rules_command(output_format: str) -> None:
    """List every rule: code, name, default severity, fix availability, summary."""
    from nnlint.output.text import table, terminal_width
    from nnlint.registry import all_rules

    if output_format == "markdown":
        from nnlint.output.catalog import render

        click.echo(render(), nl=False)
        return
    catalog = all_rules()
    if not catalog:
        click.echo("no rules are installed")
        return
    rows = [[c.code, c.name, c.severity, c.fixable, c.summary] for c in catalog.values()]
    click.echo(table(("code", "name", "severity", "fixable", "summary"), rows, terminal_width()))
    click.echo("\n`nnlint rule CODE` explains one rule; --select / --ignore take codes or prefixes (NN2).")


@main.command("rule")
@click.argument("code")
def rule_command(code: str) -> None:
    """Show one rule's documentation (by code, NN203, or name, dead-relu)."""
    cls = find_rule(code)
    fix = {"safe": "safe", "unsafe": "unsafe (changes the architecture)"}.get(cls.fixable, "none")
    click.echo(f"# {cls.code} {cls.name}\n\nDefault severity: {cls.severity}. Fix: {fix}.\n\n{cls.documentation()}")


def find_rule(code: str):
    from nnlint.registry import all_rules

    catalog = all_rules()
    by_name = {c.name: c for c in catalog.values()}
    key = code.strip()
    found = catalog.get(key.upper()) or by_name.get(key.lower())
    if found is not None:
        return found
    close = difflib.get_close_matches(key.upper(), list(catalog), n=3, cutoff=0.6) \
        + difflib.get_close_matches(key.lower(), list(by_name), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"unknown rule {code!r}; {hint}`nnlint rules` lists them all")


import nnlint.fix.cli  # noqa: E402,F401  (registers `nnlint fix` on main; see nnlint/fix/cli.py)
