"""Dropout feeding a BatchNorm (NN505): it becomes nn.Identity(), so no index moves."""
import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.BatchNorm1d(32),
        nn.Linear(32, 4),
    )
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    return model


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 16)
