"""A plain CNN whose convs are drawn too large in a loop (NN402, NN103): the loop's init call is edited in place."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, c=8, depth=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.convs = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(depth)])
        self.head = nn.Linear(c, 4)
        nn.init.kaiming_normal_(self.stem.weight, nonlinearity="relu")
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=0.5)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.head(x.mean((2, 3)))


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(8, 3, 8, 8)
