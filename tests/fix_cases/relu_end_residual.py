"""Residual bottlenecks without norms whose branch ends in a ReLU, as torchvision RAFT's context
encoder builds them (NN403): zeroing the last conv alone leaves relu(bias), dead wherever the bias is
negative; the fix zeroes it and gives it a bias of 0.01, so every unit stays open."""
import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")

    def forward(self, x):
        y = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return F.relu(x + y)


class Encoder(nn.Module):
    def __init__(self, channels=16, blocks=4):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[Bottleneck(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, 10)

    def forward(self, x):
        return self.head(self.blocks(F.relu(self.stem(x))).mean((2, 3)))


def build_model():
    torch.manual_seed(0)
    return Encoder()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(8, 3, 16, 16)
