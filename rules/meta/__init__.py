"""NN0xx: the check itself."""
