"""The peers' own healthy examples (from their READMEs, examples/ and passing tests), the setups
their bug-gallery examples are variations of. Healthy twins that exist only to pair with one bug
live next to that bug, in its category module."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Setup, classifier_setup, mlp, seeded

TT2 = "torchtest2 README"
NNC = "neural_net_checklist"


@seeded
def classifier() -> Setup:
    """torchtest2 README, "Working with the report": the MLP every gallery example varies."""
    return classifier_setup()


@seeded
def sgd_momentum_classifier() -> Setup:
    """Issue 14's "healthy with SGD+momentum at its usual learning rate"."""
    return classifier_setup(optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))


@seeded
def adamw_classifier() -> Setup:
    """The README classifier with AdamW (its default weight_decay=0.01 over every parameter), the
    optimizer of torchtest2's gallery #1."""
    return classifier_setup(optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3))


@seeded
def sgd_classifier() -> Setup:
    """Plain SGD at a usual learning rate: the twin of the learning-rate bugs."""
    return classifier_setup(optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))


@seeded
def tt2_flatten_linear() -> Setup:
    """torchtest2 README, class-based API: ModelTester on Flatten + Linear(784, 10), Adam(lr=1e-2)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    return Setup(model, torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)), F.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=1e-2))


@seeded
def tt2_frozen_layer() -> Setup:
    """torchtest2 README, TestSuite: a frozen first layer, Adam over model.parameters() (the frozen
    ones included: legal, PyTorch skips parameters without a gradient)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    model[1].requires_grad_(False)
    return Setup(model, torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)), F.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=1e-2))


class HFStyle(nn.Module):
    """torchtest2 README: a Hugging Face-style model that returns its own loss."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 32)
        self.head = nn.Linear(32, 3)

    def forward(self, input_ids, attention_mask, labels=None):
        m = attention_mask.unsqueeze(-1).float()
        logits = self.head((self.emb(input_ids) * m).sum(1) / m.sum(1))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def padded_text(n: int = 8, seq: int = 20, vocab: int = 1000) -> dict:
    """torchtest2 README's token batch: every other sequence padded from position 10."""
    ids = torch.randint(1, vocab, (n, seq))
    mask = torch.ones_like(ids)
    mask[::2, 10:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


@seeded
def tt2_hf_style() -> Setup:
    return Setup(HFStyle(), {**padded_text(), "labels": torch.randint(0, 3, (8,))},
                 loss_fn=lambda out: out["loss"])


@seeded
def nnc_linear() -> Setup:
    """neural_net_checklist tests' passing model: Linear(10, 10) on (100, 10), 10 classes."""
    return Setup(nn.Linear(10, 10), torch.randn(100, 10), torch.randint(0, 10, (100,)), F.cross_entropy)


@seeded
def nnc_batchnorm_linear() -> Setup:
    """neural_net_checklist tests: BatchNorm in front is batch-independent in eval mode."""
    return Setup(nn.Sequential(nn.BatchNorm1d(10), nn.Linear(10, 10)), torch.randn(100, 10),
                 torch.randint(0, 10, (100,)), F.cross_entropy)


@seeded
def nnc_overfit_mlp() -> Setup:
    """neural_net_checklist tests: the MLP that overfits a batch of 32."""
    return Setup(mlp(10, 50, 10), torch.randn(32, 10), torch.randint(0, 10, (32,)), F.cross_entropy)


class LeNet5(nn.Module):
    """neural_net_checklist examples/mnist_lenet5.py, as written there."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 5 * 5)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


@seeded
def nnc_lenet5() -> Setup:
    """MNIST normalized with Normalize((0.1307,), (0.3081,)): a standardized batch stands in."""
    model = LeNet5()
    return Setup(model, torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)), F.cross_entropy,
                 torch.optim.Adam(model.parameters()))


class CausalTransformer(nn.Module):
    """neural_net_checklist examples/causal_transformer.py (its README's example); `causal_mask`
    False drops the mask, the causal-leak bug."""

    def __init__(self, vocab_size, d_model=64, nhead=4, num_layers=2, causal_mask=True):
        super().__init__()
        self.causal_mask = causal_mask
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.pos_encoder = nn.Embedding(16, d_model)
        self.transformer = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=128, batch_first=True), num_layers)
        self.fc_out = nn.Linear(d_model, vocab_size)

    def forward(self, x):
        seq_len = x.size(1)
        pos = torch.arange(0, seq_len, dtype=torch.long, device=x.device).unsqueeze(0)
        x = self.embedding(x) + self.pos_encoder(pos)
        if self.causal_mask:
            mask = nn.Transformer.generate_square_subsequent_mask(seq_len).to(x.device)
            x = self.transformer(x, mask, is_causal=True)
        else:
            x = self.transformer(x)
        return self.fc_out(x)


VOCAB = 40
# What neural_net_checklist's README passes for a causal LM (its one-hot trick needs the embedding's name).
CAUSAL_LM = {"causal": True, "num_classes": VOCAB, "embedding": "embedding"}


def next_token_loss(outputs, targets):
    """The example's loss: cross-entropy over every position."""
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


def causal_lm_setup(causal_mask: bool = True) -> Setup:
    tokens = torch.randint(0, VOCAB, (VOCAB, 17))   # neural_net_checklist's loss at init reads VOCAB samples
    model = CausalTransformer(VOCAB, causal_mask=causal_mask)
    return Setup(model, tokens[:, :-1], tokens[:, 1:], next_token_loss, torch.optim.Adam(model.parameters()))


@seeded
def nnc_causal_transformer() -> Setup:
    """Shrunk for 2 CPU cores: d_model 64 and 2 layers (the example has 512 and 5); seq 16."""
    return causal_lm_setup()


class PerPosition(nn.Module):
    """neural_net_checklist tests' causal model that passes: one Linear applied per position."""

    def __init__(self, width=4):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        return self.linear(x.reshape(-1, x.shape[-1])).reshape(x.shape)


@seeded
def nnc_per_position() -> Setup:
    return Setup(PerPosition(), torch.randn(4, 16, 4), torch.randint(0, 4, (4, 16)), next_token_loss)


CASES = [
    Case("classifier", "loss", f"{TT2}: working with the report", classifier, options=CLASSIFY),
    Case("sgd_momentum_classifier", "optimizer", "issue 14: healthy SGD+momentum", sgd_momentum_classifier,
         options=CLASSIFY),
    Case("adamw_classifier", "optimizer", f"{TT2} #1: healthy twin (AdamW)", adamw_classifier, options=CLASSIFY,
         note="AdamW's default decay reaches the biases: nnlint NN506 info, torch-audit TA402 WARN"),
    Case("sgd_classifier", "optimizer", "issue 14: healthy plain SGD", sgd_classifier, options=CLASSIFY),
    Case("tt2_flatten_linear", "loss", f"{TT2}: ModelTester", tt2_flatten_linear, options=CLASSIFY),
    Case("tt2_frozen_layer", "optimizer", f"{TT2}: TestSuite with a frozen layer", tt2_frozen_layer,
         options=CLASSIFY),
    Case("tt2_hf_style", "loss", f"{TT2}: a model that returns its own loss", tt2_hf_style),
    Case("nnc_linear", "loss", f"{NNC} tests: passing Linear", nnc_linear, options=CLASSIFY),
    Case("nnc_batchnorm_linear", "dataflow", f"{NNC} tests: BatchNorm is batch-independent in eval",
         nnc_batchnorm_linear, options=CLASSIFY),
    Case("nnc_overfit_mlp", "loss", f"{NNC} tests: overfits one batch", nnc_overfit_mlp, options=CLASSIFY),
    Case("nnc_lenet5", "init", f"{NNC} examples/mnist_lenet5.py", nnc_lenet5, options=CLASSIFY),
    Case("nnc_causal_transformer", "dataflow", f"{NNC} README / examples/causal_transformer.py",
         nnc_causal_transformer, options=CAUSAL_LM),
    Case("nnc_per_position", "dataflow", f"{NNC} tests: causal property holds", nnc_per_position,
         options={"causal": True}),
]
