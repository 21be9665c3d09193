"""pytest plugin for nnlint, registered through the `pytest11` entry point.

Every pytest run in an environment where nnlint is installed imports this module, so it imports no
torch (nor anything of nnlint's that would): the fixture imports the check when a test calls it.

    @pytest.mark.nnlint(ignore=["NN201"])
    def test_model(nnlint_check):
        nnlint_check(build_model(), sample_batch())

`nnlint_check(model, batch, **options)` is `nnlint.testing.assert_healthy` with the options of the
test's `nnlint` markers (module, class and function level; the closest wins, and `ignore` lists add
up) as defaults.
"""
from __future__ import annotations

import pytest

MARKER = (
    "nnlint(select=None, ignore=None, fail_on='warning', **options): options for the nnlint_check "
    "fixture in this test (any keyword of nnlint.testing.assert_healthy)"
)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", MARKER)


def marker_options(node) -> dict:
    """The `nnlint` markers' keywords, from the farthest (module) to the closest (function)."""
    options: dict = {}
    ignore: list = []
    for marker in reversed(list(node.iter_markers(name="nnlint"))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.nnlint takes keywords only (ignore=[...]), got {marker.args!r}")
        kwargs = dict(marker.kwargs)
        ignore.extend(kwargs.pop("ignore", None) or [])
        options.update(kwargs)
    if ignore:
        options["ignore"] = ignore
    return options


@pytest.fixture
def nnlint_check(request):
    """Call it with a model and a batch: it fails the test with nnlint's report unless the model is healthy."""
    defaults = marker_options(request.node)

    def check(model, batch, **options):
        __tracebackhide__ = True
        from nnlint.testing import assert_healthy

        merged = {**defaults, **options}
        if "ignore" in defaults and "ignore" in options:
            merged["ignore"] = list(defaults["ignore"]) + list(options["ignore"] or [])
        return assert_healthy(model, batch, **merged)

    return check
