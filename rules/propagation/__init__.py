"""NN4xx: signal propagation through depth."""
