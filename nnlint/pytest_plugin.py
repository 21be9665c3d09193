"""pytest plugin for nnlint (registered through the pytest11 entry point). Imports no torch."""
