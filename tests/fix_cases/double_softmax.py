"""A classifier ending in nn.Softmax, trained with nn.CrossEntropyLoss (NN601): the Softmax becomes an
Identity, the model returns logits."""
import torch
from torch import nn

loss_fn = nn.CrossEntropyLoss()


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    nn.init.normal_(model[2].weight, std=0.01)
    return model


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(64, 32), torch.randint(0, 10, (64,))
