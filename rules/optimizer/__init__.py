"""NN8xx: the optimizer as given, its first update, a few training steps on the batch, and the training
loop as the guard sees it."""
