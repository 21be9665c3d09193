"""nnlint fix: fixes as data, applied to the model in memory and to its source file.

`nnlint.fix(model, batch)` is the runtime fixer (nnlint.fix.api.fix). Importing a submodule binds the
name `nnlint.fix` to this package, which would shadow that function; so the package itself is callable
and calls it, and `nnlint.fix(model, batch)` works whichever was imported first.
"""
import sys as _sys
import types as _types


class _CallablePackage(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        from nnlint.fix.api import fix

        return fix(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
