"""NN70x (701-703): what depends on what, probed with a few extra eval-mode passes (nnlint.probes)."""
