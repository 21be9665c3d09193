"""NN1xx: weight initialization."""
