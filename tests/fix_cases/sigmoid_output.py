"""A detector whose forward ends in torch.sigmoid, trained with nn.BCEWithLogitsLoss (NN601): the call
is replaced by its input."""
import torch
from torch import nn


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.out = nn.Linear(32, 1)
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")

    def forward(self, x):
        return torch.sigmoid(self.out(torch.relu(self.fc(x))))


loss_fn = nn.BCEWithLogitsLoss()


def build_model():
    torch.manual_seed(0)
    return Detector()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 16), torch.randint(0, 2, (64, 1)).float()
