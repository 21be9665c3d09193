"""A dense detection head as RetinaNet v1 builds it (NN103): four 3x3 convs drawn at std 0.01 with no
norm, then class logits at std 0.01 with the focal-loss prior in the bias (every anchor starts at
p = 0.01). Kaiming on the four convs raises what reaches the logits ~50x; the fix holds the logits'
layer at the spread it had, and leaves the prior bias alone."""
import math

import torch
from torch import nn


class Head(nn.Module):
    def __init__(self, channels=256, anchors=9):
        super().__init__()
        self.conv = nn.Sequential(*[nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
                                    for _ in range(4)])
        self.cls_logits = nn.Conv2d(channels, anchors, 3, padding=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, features):
        return self.cls_logits(self.conv(features)).flatten(1)


def build_model():
    torch.manual_seed(0)
    return Head()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(2, 256, 8, 8)
