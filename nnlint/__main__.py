"""`python -m nnlint ...`, the same as the `nnlint` console script."""
from nnlint.cli import main

if __name__ == "__main__":
    main(prog_name="nnlint")
