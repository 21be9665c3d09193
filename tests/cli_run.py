"""Running the command line in-process, and what a could-not-run answer must look like: helpers for the
CLI tests (a module in tests/, importable under pytest's default prepend import mode)."""
from __future__ import annotations

from click.testing import CliRunner

from nnlint.cli import main


def run(*args: str, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def assert_could_not_run(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("nnlint: error: ")
    assert "Traceback (most recent call last)" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr
