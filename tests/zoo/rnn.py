"""Recurrent models as tutorials write them: an LSTM text classifier on token ids and a two-layer
GRU regressor on standardized time series, both at PyTorch's default init. Their sigmoid/tanh gates
live inside the fused LSTM/GRU ops: gates, not hidden nonlinearities."""
from __future__ import annotations

import torch
from torch import nn

from .case import ZooCase, features, labels, seeded, token_ids


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 512, embed: int = 32, hidden: int = 64, num_classes: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(self.embedding(input_ids))
        return self.fc(h_n[-1])


class GRURegressor(nn.Module):
    def __init__(self, in_features: int = 8, hidden: int = 32, layers: int = 2):
        super().__init__()
        self.gru = nn.GRU(in_features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(series)
        return self.head(out[:, -1])


def lstm_classifier() -> ZooCase:
    with seeded(0):
        model = LSTMClassifier()
    return ZooCase("lstm_classifier", model, token_ids(seed=3), loss_fn=nn.CrossEntropyLoss(), target=labels(8, 4))


def gru_regressor() -> ZooCase:
    with seeded(0):
        model = GRURegressor()
    return ZooCase("gru_regressor", model, features(8, 16, 8, seed=4))
