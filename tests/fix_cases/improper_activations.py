import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 64)
        self.mix = nn.Sequential(nn.Linear(64, 64), nn.Softmax(dim=1), nn.Linear(64, 10))

    def forward(self, x):
        h = torch.exp(self.fc1(x))             # exp as a hidden activation
        h = F.softmax(self.fc2(h), dim=-1)     # and a softmax over the features
        return self.mix(h)


torch.manual_seed(0)
model = Net()
batch = torch.randn(64, 32)
