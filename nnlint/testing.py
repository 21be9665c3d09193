"""Assertions for a project's own test suite.

    from nnlint.testing import assert_healthy

    def test_model_is_healthy():
        assert_healthy(build_model(), sample_batch(), ignore=["NN201"])

A failing check raises an AssertionError whose text is the report table, so pytest (or unittest) shows
exactly what `nnlint check` would. The project's `[tool.nnlint]` configuration applies, as it does on
the command line; pass `config=nnlint.config.Config()` to check without it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from nnlint.config import Config, load_config
from nnlint.diagnostics import SEVERITY_RANK


def assert_healthy(
    model,
    batch,
    *,
    select: Optional[Iterable[str]] = None,
    ignore: Optional[Iterable[str]] = None,
    fail_on: str = "warning",
    target: Any = None,
    loss_fn: Optional[Callable] = None,
    optimizer: Any = None,
    train_transform: Any = None,
    config: Optional[Config] = None,
):
    """Check `model` on `batch` and raise AssertionError (its text: the report) on any finding of
    severity `fail_on` or worse: "warning" (the default: errors and warnings, what `nnlint check` exits 1
    on), "error", or "info" (every finding). Returns the Report when the model passes."""
    __tracebackhide__ = True   # pytest shows the caller's line, not this frame
    from nnlint.api import check

    if fail_on not in SEVERITY_RANK:
        raise ValueError(f"fail_on must be one of {', '.join(SEVERITY_RANK)}, not {fail_on!r}")
    report = check(model, batch, target=target, loss_fn=loss_fn, optimizer=optimizer, select=select,
                   ignore=ignore, config=config if config is not None else load_config("."),
                   train_transform=train_transform)
    failing = failures(report, fail_on)
    if failing:
        raise AssertionError(f"nnlint: {len(failing)} finding(s) at or above {fail_on!r}\n\n{report_text(report)}")
    return report


def failures(report, level: str) -> list:
    """The findings of `report` whose severity is `level` or worse."""
    return [d for d in report.diagnostics if SEVERITY_RANK.get(d.severity, 9) <= SEVERITY_RANK[level]]


def report_text(report) -> str:
    """The report as `nnlint check` prints it."""
    from nnlint.output import text

    return text.render(report).rstrip("\n")
