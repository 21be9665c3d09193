"""Four classes at 85/5/5/5% and a head that starts uniform (NN606): the head's bias is set to the class
log-priors measured on the batch, after the model is built."""
import torch
from torch import nn

loss_fn = nn.CrossEntropyLoss()


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    nn.init.normal_(model[2].weight, std=0.01)
    return model


def sample_batch():
    torch.manual_seed(1)
    return torch.randn(256, 32), torch.multinomial(torch.tensor([0.85, 0.05, 0.05, 0.05]), 256, replacement=True)
