"""NN2xx: activations."""
