"""AlexNet's layout at PyTorch's default init (NN401, NN103): Kaiming's gain leaves out the max-pools and
train-mode dropouts, so the chain is re-initialized with stds measured on the batch (benchmarks/TRIAGE.md, N2)."""
import torch
from torch import nn


class AlexNetLike(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5, 2, 2), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(96, 64, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(64 * 4 * 4, 256), nn.ReLU(True),
            nn.Dropout(), nn.Linear(256, 256), nn.ReLU(True), nn.Linear(256, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def build_model():
    torch.manual_seed(0)
    return AlexNetLike()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(16, 3, 64, 64)
