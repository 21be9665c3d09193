"""NN70x (704-707): structure read from the trace: collapsed linear maps, unused and reused modules, wasted biases."""
