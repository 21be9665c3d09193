"""A stem conv drawn far too small before its BatchNorm (NN405), as SSD-style backbones draw every conv
at a fixed small std: the norm makes the stem's forward scale-free, so its weight's norm sets only its
step, and its relative gradient is over 1000x the later layers'. The fix re-draws the stem at Kaiming;
the rest of the network, already gain-correct, is left alone."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.body = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(32, 10)
        nn.init.normal_(self.stem.weight, std=0.001)
        for layer in self.body:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")

    def forward(self, x):
        x = self.body(torch.relu(self.bn(self.stem(x))))
        return self.head(x.mean((2, 3)))


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(8, 3, 16, 16)
