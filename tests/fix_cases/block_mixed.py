"""One Block class, two kinds of instances: the wide blocks get a gain-correct init, the narrow ones a
far too small one. A statement in Block.__init__ would change the healthy blocks too, so the fix goes
to the parent, naming only the faulty blocks."""
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width, std):
        super().__init__()
        self.fc = nn.Linear(width, width, bias=False)
        nn.init.normal_(self.fc.weight, std=std)

    def forward(self, x):
        return torch.relu(self.fc(x))


class Net(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        good = (2 / width) ** 0.5
        self.blocks = nn.Sequential(Block(width, good), Block(width, 0.01), Block(width, good), Block(width, 0.01))
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        return self.head(self.blocks(x))


def build_model():
    torch.manual_seed(0)
    return Net()


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 32)
