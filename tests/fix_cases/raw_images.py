"""A CNN fed raw 8-bit pixels (NN301, NN302): one normalization, first thing in forward."""
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images):
        """Class scores."""
        x = F.relu(self.bn(self.conv(images)))
        return self.fc(x.mean((2, 3)))


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    torch.manual_seed(1)
    return torch.randint(0, 256, (8, 3, 8, 8)).float()
