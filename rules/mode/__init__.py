"""NN5xx: train/eval mode and regularization."""
