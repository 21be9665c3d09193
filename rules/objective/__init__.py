"""NN6xx: the objective (the loss, the targets, the output head)."""
