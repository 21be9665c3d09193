"""Shared fixtures: the optional libraries, each skipping its tests cleanly, with what to install.

`pip install -e ".[dev]"` (the README's command) brings none of them, and the suite must pass as
typed there; .ci/run's second pass installs the extras, and these tests run.
"""
from __future__ import annotations

import pytest

# module -> what installs it
INSTALL = {
    "lightning": 'pip install -e ".[lightning]"',
    "transformers": 'pip install -e ".[transformers]"',
    "accelerate": 'pip install -e ".[transformers]" (transformers.Trainer needs accelerate)',
    "torchvision": "pip install torchvision (the build that matches your torch)",
    "yaml": "pip install pyyaml",
}


def optional(module: str):
    """The module, or a skip of the test that names what to install."""
    return pytest.importorskip(module, reason=f"{module} is not installed: {INSTALL[module]}")


def _skipping(module: str):
    """A fixture named after `module` that gives it, or skips its test with what to install."""
    return pytest.fixture(name=module)(lambda: optional(module))


lightning = _skipping("lightning")
transformers = _skipping("transformers")
yaml = _skipping("yaml")
torchvision = _skipping("torchvision")


@pytest.fixture
def hf_trainer(transformers):
    """transformers, with accelerate, which its Trainer needs."""
    optional("accelerate")
    return transformers


# The fixtures above that need an optional library: their tests are marked `extras`, which .ci/run's
# second pass selects once the extras are installed (the first pass, bare, ran everything else).
EXTRA_FIXTURES = {"lightning", "transformers", "hf_trainer", "yaml", "torchvision"}


def pytest_collection_modifyitems(items):
    for item in items:
        if EXTRA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.extras)
