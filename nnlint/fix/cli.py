"""`nnlint fix FILE`: the source fixer on the command line.

    nnlint fix model.py                          # print the unified diff of the fixed file; write nothing
    nnlint fix model.py --write                  # apply it (atomically: a temporary file, then a rename)
    nnlint fix model.py --unsafe-fixes --write   # also the fixes that change the architecture

stdout carries only the diff (so it pipes into `patch -p1` / `git apply`); the summary of what was
fixed, what failed and what is left to do by hand goes to stderr. Exit status: 0 when the fixed file
checks clean (nothing left but info findings) and, with --diff, there is nothing to change; 1 when a
diff is printed or findings remain; 2 when nnlint could not run (a syntax error in the file: nothing is
edited; a bad option; the model raised).
"""
from __future__ import annotations

import contextlib
import os
import shlex
import sys

import click

from nnlint.commandline import EXIT_CLEAN, EXIT_FINDINGS, model_options, parse_codes, resolve_target
from nnlint.errors import NNLintError


@click.command("fix")
@model_options
@click.option("--diff", "mode", flag_value="diff", default=True,
              help="Print a unified diff of the fixed file and write nothing (the default).")
@click.option("--write", "mode", flag_value="write", help="Write the fixed file in place.")
@click.option("--unsafe-fixes", is_flag=True,
              help="Also apply the fixes that change the architecture (activation swaps, input normalization, Dropout2d).")
@click.option("--select", multiple=True, metavar="CODES", help="Only fix these rules: codes or prefixes (NN203, NN2).")
@click.option("--ignore", multiple=True, metavar="CODES", help="Skip these rules: codes or prefixes.")
@click.option("--verify-steps", type=click.IntRange(min=1), metavar="N",
              help="Prove the fixes by training: a copy of the original and of the fixed model train N steps on the "
                   "batch (your loss and optimizer, else a surrogate and Adam), loss curves side by side (e.g. 50).")
def fix_command(file, model_spec, input_shape, device, mode, unsafe_fixes, select, ignore, verify_steps) -> None:
    """Fix the findings of `nnlint check FILE` in FILE itself, as plain torch code.

    \b
    Re-inits become nn.init calls (an existing nn.init call is edited in place), an activation swap
    edits the call that builds it, F.dropout gets training=self.training, and so on. Every edit is
    verified before anything is shown or written: the edited file must parse and `nnlint check` on it
    must no longer report the fixed findings; a fix that fails that is left out and reported.
    """
    from nnlint.config import load_config
    from nnlint.fix.filefix import fix_file, write_atomically

    target = resolve_target(file, model_spec, input_shape, device)
    selected = parse_codes(select, "--select") or None
    ignored = parse_codes(ignore, "--ignore")
    config = load_config(target.file)
    with contextlib.redirect_stdout(sys.stderr):
        run = fix_file(target.file, factory=target.factory, input_shape=target.input_shape, device=target.device,
                       unsafe=unsafe_fixes, select=selected, ignore=ignored, config=config, verify_steps=verify_steps)
    shown = os.path.relpath(run.path) if not os.path.isabs(target.file) else str(run.path)
    result = run.result
    if mode == "diff":
        click.echo(run.diff(shown), nl=False)
    elif run.changed:
        try:
            write_atomically(run.path, run.fixed)
        except OSError as exc:
            raise NNLintError(f"{shown}: cannot write the fixed file ({exc}); the file is unchanged") from None
    again = " ".join(["nnlint fix", *_arguments(shown, model_spec, input_shape, device, select, ignore), "--write"]
                     + (["--unsafe-fixes"] if unsafe_fixes else []))
    click.echo(_summary(shown, run, mode, again), err=True)
    if mode == "diff":
        sys.exit(EXIT_FINDINGS if run.changed or not result.ok else EXIT_CLEAN)
    sys.exit(EXIT_CLEAN if result.ok else EXIT_FINDINGS)


def _arguments(shown, model_spec, input_shape, device, select, ignore) -> list[str]:
    """The options of this run, to repeat in the `--write` hint."""
    out = [shlex.quote(shown)] if not model_spec else []
    for flag, value in (("--model", model_spec), ("--input-shape", input_shape), ("--device", device)):
        if value:
            out += [flag, shlex.quote(value)]
    out += [f"--select {shlex.quote(v)}" for v in select] + [f"--ignore {shlex.quote(v)}" for v in ignore]
    return out


def _summary(shown: str, run, mode: str, again: str) -> str:
    result = run.result
    lines = []
    if result.applied:
        verb = "fixed" if mode == "write" else "would fix"
        lines.append(f"{shown}: {verb} {len(result.applied)} finding(s):")
        lines += [f"  {o.line()}" for o in result.applied]
    if result.failed:
        lines.append("failed (left out; change by hand):")
        lines += [f"  {o.line()}" for o in result.failed]
    if result.skipped_unsafe:
        lines.append("not applied, unsafe (they change the architecture; add --unsafe-fixes):")
        lines += [f"  {o.line()}" for o in result.skipped_unsafe]
    if result.not_fixable:
        lines.append("not fixable automatically:")
        lines += [f"  {o.line()}" for o in result.not_fixable]
    if result.verification is not None:
        lines += result.verification.lines()
    if not lines:
        lines.append(f"{shown}: nothing to fix")
    elif mode == "write" and run.changed:
        lines.append(f"wrote {shown}")
    elif mode == "diff" and run.changed:
        lines.append(f"nothing written; apply with: {again}")
    return "\n".join(lines)

