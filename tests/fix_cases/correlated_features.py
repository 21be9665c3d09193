"""Twelve features driven by one shared factor (NN303): the fix whitens them in a forward pre-hook."""
import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 2))
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    nn.init.zeros_(model[0].bias)
    return model


def sample_batch():
    torch.manual_seed(1)
    x = 0.95 * torch.randn(64, 1) + 0.3 * torch.randn(64, 12)
    return (x - x.mean(0)) / x.std(0)
