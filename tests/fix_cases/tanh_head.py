"""An actor whose tanh action head is drawn with std 1 (NN202, NN103): Xavier would still saturate, so the
fix uses the measured std."""
import torch
from torch import nn


class Actor(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        self.mu = nn.Linear(128, 2)
        for layer in (self.body[0], self.body[2]):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.normal_(self.mu.weight, std=1.0)

    def forward(self, obs):
        return torch.tanh(self.mu(self.body(obs)))


def build_model():
    torch.manual_seed(0)
    return Actor()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 16)
