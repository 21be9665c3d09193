"""A VGG-style CNN whose convs are drawn far too small in an isinstance loop (NN103, NN401, NN203): the loop's
init call is edited in place, and the biases of all convs get one isinstance loop of their own."""
import torch
from torch import nn


class VGG(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Linear(2 * c, 64), nn.ReLU(), nn.Linear(64, 10))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def build_model():
    torch.manual_seed(0)
    return VGG()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(8, 3, 16, 16)
