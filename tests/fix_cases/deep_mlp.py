"""A deep ReLU MLP at PyTorch's default init (NN401, NN103): one loop re-initializes the hidden layers."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=32, depth=6):
        super().__init__()
        self.hidden = nn.ModuleList([nn.Linear(width, width, bias=False) for _ in range(depth)])
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.head(x)


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 32)
