"""NN3xx: inputs and data."""
