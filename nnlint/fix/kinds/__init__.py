"""The fix kinds, one module each: its params dataclass, its runtime half and its source half.

`nnlint.fix.kind.all_kinds()` imports every module here, which registers its kinds.
"""
