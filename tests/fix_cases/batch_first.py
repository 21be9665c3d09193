import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 16)
        self.attn = nn.MultiheadAttention(16, 4)
        self.head = nn.Linear(16, 4)

    def forward(self, x):                      # x: (batch, time, features)
        h, _ = self.rnn(x)
        h, _ = self.attn(h, h, h)
        return self.head(h[:, -1])


torch.manual_seed(0)
model = Encoder()
batch = torch.randn(8, 12, 8)
