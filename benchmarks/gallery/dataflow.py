"""What depends on what (NN701-NN703): batch mixing, ignored inputs, causal leakage."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .case import CLASSIFY, Case, Expect, Setup, seeded
from .healthy import CAUSAL_LM, NNC, TT2, causal_lm_setup, next_token_loss, padded_text

ISSUE = "issue 13"


def sequences(n: int = 4, t: int = 12, d: int = 8) -> torch.Tensor:
    """A (batch, time, features) batch, as a DataLoader yields it."""
    return torch.randn(n, t, d)


class LastStep(nn.Module):
    """An RNN over (batch, time, features) and a head on the last step. `layout` says how the
    batch reaches a seq-first RNN: "transpose" (right), "view" (reinterprets memory: mixes
    samples), or "batch_first" (the RNN built with batch_first=True)."""

    def __init__(self, rnn: type = nn.GRU, layout: str = "transpose"):
        super().__init__()
        self.layout = layout
        self.rnn = rnn(8, 16, batch_first=layout == "batch_first")
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        b, t, f = x.shape
        if self.layout == "transpose":
            x = x.transpose(0, 1)
        elif self.layout == "view":
            x = x.view(t, b, f)
        out, _ = self.rnn(x)
        last = out[:, -1] if self.layout == "batch_first" else out[-1]
        return self.head(last)


class BatchFirstGRU(LastStep):
    """Built with batch_first=False (the default) and fed (batch, time, features) as is."""

    def __init__(self):
        super().__init__(nn.GRU, layout="none")

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def sequence_setup(model: nn.Module, x: torch.Tensor = None) -> Setup:
    """A 4-way classifier of whole sequences, trained with Adam."""
    return Setup(model, sequences() if x is None else x, torch.randint(0, 4, (4,)), F.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def rnn_transpose() -> Setup:
    return sequence_setup(LastStep(nn.LSTM, "transpose"))


@seeded
def view_for_transpose() -> Setup:
    return sequence_setup(LastStep(nn.LSTM, "view"))


@seeded
def gru_batch_first_true() -> Setup:
    return sequence_setup(LastStep(nn.GRU, "batch_first"))


@seeded
def gru_batch_first() -> Setup:
    return sequence_setup(BatchFirstGRU())


@seeded
def lstm_batch_first() -> Setup:
    """torchtest2 README #3: `check_model(nn.LSTM(8, 16), torch.randn(4, 12, 8))`."""
    return Setup(nn.LSTM(8, 16), sequences())


@seeded
def lstm_batch_first_true() -> Setup:
    """torchtest2 README #3: "With batch_first=True both pass"."""
    return Setup(nn.LSTM(8, 16, batch_first=True), sequences())


class Encoder(nn.Module):
    """torchtest2 README #3, with the batch_first switch its text describes."""

    def __init__(self, dim=16, heads=4, batch_first=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=batch_first)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):  # x: (batch, tokens, dim)
        h, _ = self.attn(x, x, x)
        return self.out(h)


@seeded
def mha_batch_first() -> Setup:
    return Setup(Encoder(), torch.randn(4, 6, 16))


@seeded
def mha_batch_first_true() -> Setup:
    return Setup(Encoder(batch_first=True), torch.randn(4, 6, 16))


class TokenEncoder(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=batch_first)
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # x: (batch, tokens, dim)
        return self.head(self.layer(x).mean(dim=1))


@seeded
def transformer_layer_batch_first() -> Setup:
    return sequence_setup(TokenEncoder(batch_first=False), torch.randn(4, 6, 16))


@seeded
def transformer_layer_batch_first_true() -> Setup:
    return sequence_setup(TokenEncoder(batch_first=True), torch.randn(4, 6, 16))


class NormalizedHidden(nn.Module):
    """A hidden representation L2-normalized over `dim`: dim=1 per sample (right), dim=0 across
    the batch (every sample's features depend on the others')."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(F.normalize(F.relu(self.fc1(x)), dim=self.dim))


def normalized_setup(dim: int) -> Setup:
    model = NormalizedHidden(dim)
    return Setup(model, torch.randn(16, 32), torch.randint(0, 10, (16,)), F.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def normalize_per_sample() -> Setup:
    return normalized_setup(dim=1)


@seeded
def normalize_over_batch() -> Setup:
    return normalized_setup(dim=0)


@seeded
def softmax_over_batch() -> Setup:
    """An inference head whose softmax normalizes over the batch instead of the classes."""
    return Setup(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=0)),
                 torch.randn(16, 32))


@seeded
def softmax_over_classes() -> Setup:
    return Setup(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1)),
                 torch.randn(16, 32))


class BatchSum(nn.Module):
    """neural_net_checklist tests' batch-dependence failure: one output from the batch's sum."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 10)

    def forward(self, x):
        return self.linear(x.sum(dim=0)).repeat(x.shape[0], 1)


@seeded
def batch_sum() -> Setup:
    return Setup(BatchSum(), torch.randn(100, 10), torch.randint(0, 10, (100,)), F.cross_entropy)


class TwoTower(nn.Module):
    """torchtest2 README #4; `bug` True: the item tower gets the user features."""

    def __init__(self, bug: bool = True):
        super().__init__()
        self.bug = bug
        self.user = nn.Linear(16, 8)
        self.item = nn.Linear(16, 8)

    def forward(self, x):  # x = [user features | item features]
        u, i = x[:, :16], x[:, 16:]
        return (self.user(u) * self.item(u if self.bug else i)).sum(-1)


@seeded
def ignored_feature_slice() -> Setup:
    return Setup(TwoTower(bug=True), torch.randn(16, 32))


@seeded
def two_tower() -> Setup:
    return Setup(TwoTower(bug=False), torch.randn(16, 32))


class TextClassifier(nn.Module):
    """torchtest2 README #5; `use_mask` False is its bug (padding averaged in)."""

    def __init__(self, vocab=1000, dim=32, classes=3, use_mask=False):
        super().__init__()
        self.use_mask = use_mask
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        if not self.use_mask:
            return self.head(h.mean(dim=1))
        m = attention_mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


def text_setup(use_mask: bool) -> Setup:
    model = TextClassifier(use_mask=use_mask)
    return Setup(model, padded_text(), torch.randint(0, 3, (8,)), F.cross_entropy)


@seeded
def ignored_attention_mask() -> Setup:
    return text_setup(use_mask=False)


@seeded
def masked_text_classifier() -> Setup:
    return text_setup(use_mask=True)


class TwoInputs(nn.Module):
    """model(x, context): `use_context` False forgets the second input."""

    def __init__(self, use_context: bool):
        super().__init__()
        self.use_context = use_context
        self.fc = nn.Linear(32, 64)
        self.ctx = nn.Linear(8, 64, bias=False)
        self.head = nn.Linear(64, 10)

    def forward(self, x, context):
        h = self.fc(x)
        if self.use_context:
            h = h + self.ctx(context)
        return self.head(F.relu(h))


def two_input_setup(use_context: bool) -> Setup:
    model = TwoInputs(use_context)
    return Setup(model, (torch.randn(16, 32), torch.randn(16, 8)), torch.randint(0, 10, (16,)), F.cross_entropy,
                 torch.optim.Adam(model.parameters(), lr=1e-3))


@seeded
def ignored_second_input() -> Setup:
    return two_input_setup(use_context=False)


@seeded
def two_inputs() -> Setup:
    return two_input_setup(use_context=True)


class ZeroedOutput(nn.Module):
    """neural_net_checklist tests' input-independence failure: `self.linear(x) * 0`."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 10)

    def forward(self, x):
        return self.linear(x) * 0


@seeded
def output_ignores_input() -> Setup:
    x = torch.randn(100, 10)
    return Setup(ZeroedOutput(), x, (x.mean(dim=1) > 0).long(), F.cross_entropy)


@seeded
def causal_leak_no_mask() -> Setup:
    """neural_net_checklist's README model with the causal mask left out: position t attends to
    every later token, so next-token prediction copies the answer."""
    return causal_lm_setup(causal_mask=False)


class SequenceSum(nn.Module):
    """neural_net_checklist tests' causal failure: every position sees the sum over time."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(x.sum(dim=1, keepdim=True)).repeat(1, x.shape[1], 1)


@seeded
def causal_sequence_sum() -> Setup:
    return Setup(SequenceSum(), torch.randn(4, 16, 4), torch.randint(0, 4, (4, 16)), next_token_loss)


MIX = f"{TT2} #3 (batch_independence)"

CASES = [
    Case("rnn_transpose", "dataflow", f"{ISSUE}: healthy twin", rnn_transpose),
    Case("view_for_transpose", "dataflow", f"{TT2} #3; {ISSUE}", view_for_transpose, Expect("NN701", ""),
         twin="rnn_transpose"),
    Case("lstm_batch_first", "dataflow", MIX, lstm_batch_first, Expect("NN701", ""), twin="lstm_batch_first_true"),
    Case("lstm_batch_first_true", "dataflow", f"{TT2} #3: healthy", lstm_batch_first_true),
    Case("gru_batch_first", "dataflow", f"{MIX}; {ISSUE}", gru_batch_first, Expect("NN701", "rnn"),
         twin="gru_batch_first_true"),
    Case("gru_batch_first_true", "dataflow", f"{ISSUE}: healthy twin", gru_batch_first_true),
    Case("mha_batch_first", "dataflow", MIX, mha_batch_first, Expect("NN701", "attn"), twin="mha_batch_first_true"),
    Case("mha_batch_first_true", "dataflow", f"{TT2} #3: healthy", mha_batch_first_true),
    Case("transformer_layer_batch_first", "dataflow", f"{MIX}; {ISSUE}", transformer_layer_batch_first,
         Expect("NN701", "layer"), twin="transformer_layer_batch_first_true"),
    Case("transformer_layer_batch_first_true", "dataflow", f"{ISSUE}: healthy twin",
         transformer_layer_batch_first_true),
    Case("normalize_over_batch", "dataflow", f"{TT2} #3; {ISSUE}", normalize_over_batch, Expect("NN701", ""),
         twin="normalize_per_sample", options=CLASSIFY),
    Case("normalize_per_sample", "dataflow", f"{ISSUE}: healthy twin", normalize_per_sample, options=CLASSIFY),
    Case("softmax_over_batch", "dataflow", f"{TT2} #3; {ISSUE}", softmax_over_batch, Expect("NN701", "3"),
         twin="softmax_over_classes"),
    Case("softmax_over_classes", "dataflow", f"{ISSUE}: healthy twin", softmax_over_classes),
    Case("batch_sum", "dataflow", f"{NNC} tests (batch independence fwd+bwd)", batch_sum, Expect("NN701", ""),
         twin="nnc_linear", options=CLASSIFY),
    Case("ignored_feature_slice", "dataflow", f"{TT2} #4", ignored_feature_slice, Expect("NN702", ""),
         twin="two_tower"),
    Case("two_tower", "dataflow", f"{TT2} #4: healthy twin", two_tower),
    Case("ignored_attention_mask", "dataflow", f"{TT2} #5", ignored_attention_mask, Expect("NN702", ""),
         twin="masked_text_classifier"),
    Case("masked_text_classifier", "dataflow", f"{TT2} #5: healthy twin", masked_text_classifier),
    Case("ignored_second_input", "dataflow", ISSUE, ignored_second_input, Expect("NN702", ""),
         twin="two_inputs", options=CLASSIFY),
    Case("two_inputs", "dataflow", f"{ISSUE}: healthy twin", two_inputs, options=CLASSIFY),
    Case("output_ignores_input", "dataflow", f"{NNC} tests (input-independent baseline)", output_ignores_input,
         Expect("NN702", ""), twin="nnc_linear", options=CLASSIFY),
    Case("causal_leak_no_mask", "dataflow", f"{NNC} README model; {ISSUE}", causal_leak_no_mask,
         Expect("NN703", "transformer"), twin="nnc_causal_transformer", options=CAUSAL_LM),
    Case("causal_sequence_sum", "dataflow", f"{NNC} tests (causal property fwd+bwd)", causal_sequence_sum,
         Expect("NN703", ""), twin="nnc_per_position", options={"causal": True}),
]
