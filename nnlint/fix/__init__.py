"""nnlint fix: fixes as data, applied to the model in memory and to its source file."""
