"""The nnlint rule catalog: one file per rule, grouped by family. Installed as `nnlint.rules`."""
