import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)   # the hidden layer
        self.fc2 = nn.Linear(64, 64)
        self.head = nn.Linear(64, 4)
        # "small random weights" ...
        nn.init.normal_(self.fc1.weight, std=1.0)
        nn.init.zeros_(self.fc2.weight)   # ... and a neutral start

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 32)
