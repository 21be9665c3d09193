import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 32, bias=True)
        self.norm = nn.BatchNorm1d(32)
        self.head = nn.Linear(32, 10)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.head(torch.relu(self.norm(self.fc(x))))


torch.manual_seed(0)
model = Net()
batch = torch.randn(16, 3, 16, 16)
