import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
nn.init.constant_(model[2].weight, 0.1)
batch = torch.rand(64, 16) * 4 + 2
