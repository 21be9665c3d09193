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
from pathlib import Path
from typing import Callable

import click

from nnlint._version import __version__
from nnlint.commandline import (EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, load, model_options, parse_codes,
                                resolve_target, use_color, write_file)
from nnlint.errors import ConfigError, NNLintError
from nnlint.fix.cli import fix_command
from nnlint.output import FORMATS, emitter

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
@click.option("--verbose", "-v", is_flag=True,
              help="Text report: one row per finding, instead of one row per cause (findings of a rule that "
                   "share a cause, such as one wrong init in a loop over layers).")
@click.option("--config", "model_config", metavar="CONFIG.json",
              help="With --model MODULE:CALLABLE: build it from this Hugging Face config.json (from_config; "
                   "nothing is downloaded), e.g. --model transformers:AutoModelForCausalLM --config gpt2.json.")
@click.option("--causal/--not-causal", default=None,
              help="The model is autoregressive (or not): check that no output sees a later token (NN703). "
                   "Default: the file's `causal = True`, else recognised (HF causal LMs, is_causal attention).")
@click.option("--steps", type=click.IntRange(min=1), metavar="N",
              help="Also train copies of the model and optimizer N steps on the batch (e.g. 50): the loss must "
                   "fall (NN805), every trainable parameter change (NN806). The model is left as it was.")
@click.option("--frozen", multiple=True, metavar="NAMES",
              help="Parameters meant to be frozen: comma-separated names or module prefixes (backbone, "
                   "encoder.layers.0), added to the file's `frozen`; NN806 checks they stay frozen.")
def check(file, model_spec, input_shape, device, select, ignore, output_format, html_path, verbose,
          model_config, causal, steps, frozen) -> None:
    """Check the model and sample batch defined in FILE.

    \b
    FILE defines, in the order nnlint looks for them:
      build_model() and sample_batch()    functions that return the model and one batch
      model and batch                     module-level variables
    and optionally loss_fn, target, optimizer(model), train_transform, causal = True, frozen (names meant
    to be frozen) and train(model, optimizer, batches) (the training loop: watched for two steps on copies).

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
        arguments = {**loaded.check_arguments(), **({"causal": causal} if causal is not None else {})}
        declared = tuple(n.strip() for v in frozen for n in v.split(",") if n.strip())
        arguments["frozen"] = tuple(arguments.get("frozen") or ()) + declared
        report = run_check(loaded.model, loaded.batch, select=selected, ignore=ignored, config=config, steps=steps,
                           **arguments)
    report.source_file = target.file
    color = use_color(sys.stdout)
    fix_hint = f"nnlint fix {target.file}" if target.file else None
    click.echo(_render(render, report, color=color, fix_command=fix_hint, verbose=verbose), nl=False, color=color)
    if render_html is not None:
        write_file(html_path, render_html(report), "--html")
        click.echo(f"nnlint: wrote the HTML report to {html_path}", err=True)
    sys.exit(EXIT_CLEAN if report.ok else EXIT_FINDINGS)


def _render(render: Callable, report, **options) -> str:
    """Call an emitter with the options it declares (the text emitter takes color and fix_command;
    JSON takes none)."""
    accepted = inspect.signature(render).parameters
    return render(report, **{k: v for k, v in options.items() if k in accepted})


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


main.add_command(fix_command, "fix")
