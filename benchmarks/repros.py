"""Minimal plain-torch reproductions of every false alarm and miss triaged in TRIAGE.md.

Each repro is a small nn.Module and batch, written from the library code it stands for (no
torchvision, timm or transformers needed), with the verdict: `quiet` (a false alarm: the code must not
fire) or `found` (a miss: the code must fire, on `module`). They are meant to become unit tests of
the rules; run this file to see which still reproduce:

    python benchmarks/repros.py            # one line per repro: REPRODUCES / fixed
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Repro:
    name: str
    code: str
    verdict: str                       # "quiet": a false alarm to silence; "found": a miss to catch
    build: Callable[[], tuple[nn.Module, Any]]
    module: str = ""                   # for "found": where the finding must be
    stands_for: str = ""


def _seeded(fn):
    def wrapper():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return fn()
    wrapper.__name__ = fn.__name__
    return wrapper


# ----- NN402: squeeze-and-excitation ------------------------------------------------------------

class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool -> 1x1 reduce -> ReLU -> 1x1 expand -> gate."""

    def __init__(self, c: int, r: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class SENet(nn.Module):
    """MobileNetV3's first block: conv-BN-ReLU, an SE gate, a 1x1 projection, a head; torchvision's
    init (Kaiming fan_out for convs, zero biases)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.se = SqueezeExcitation(16, 8)
        self.proj, self.bn2 = nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        h = self.se(F.relu(self.bn(self.conv(x))))
        return self.head(self.bn2(self.proj(h)).mean((2, 3)))


@_seeded
def se_block():
    return SENet(), torch.randn(4, 3, 32, 32)


# ----- NN002: intermediate infinities that a mask absorbs ------------------------------------------

class T5RelativeBias(nn.Module):
    """T5Attention._relative_position_bucket: log(0) = -inf for the zero offset, discarded by where."""

    def __init__(self, buckets: int = 8, max_distance: int = 16, d: int = 16):
        super().__init__()
        self.buckets, self.max_distance = buckets, max_distance
        self.bias = nn.Embedding(buckets, 1)
        self.fc = nn.Linear(d, d)

    def bucket(self, rel):
        exact = self.buckets // 2
        is_small = rel < exact
        large = exact + (torch.log(rel.float() / exact) / math.log(self.max_distance / exact)
                         * (self.buckets - exact)).to(torch.long)
        large = torch.min(large, torch.full_like(large, self.buckets - 1))
        return torch.where(is_small, rel, large)

    def forward(self, x):
        n = x.shape[1]
        rel = (torch.arange(n)[None, :] - torch.arange(n)[:, None]).abs()
        scores = x @ x.transpose(1, 2) / math.sqrt(x.shape[-1]) + self.bias(self.bucket(rel)).squeeze(-1)
        return self.fc(scores.softmax(-1) @ x)


@_seeded
def t5_log_zero():
    return T5RelativeBias(), torch.randn(2, 12, 16)


class MaskedMHA(nn.Module):
    """A causal encoder using nn.MultiheadAttention with a boolean mask (PyTorch fills it with -inf)."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        n = x.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool).triu(1)
        y, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False)
        return self.out(y)


@_seeded
def mha_bool_mask():
    return MaskedMHA(), torch.randn(2, 8, 16)


class AdditiveCausalMask(nn.Module):
    """The official examples' additive mask: log(tril(ones)) = 0 / -inf, added to the scores."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        mask = torch.log(torch.tril(torch.ones(x.shape[1], x.shape[1])))
        att = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]) + mask).softmax(-1)
        return self.out(att @ v)


@_seeded
def additive_causal_mask():
    return AdditiveCausalMask(), torch.randn(2, 8, 16)


class FinfoMinOverflow(nn.Module):
    """GPT-Neo: a causal mask filled with finfo.min, then the padding mask's finfo.min added: the two
    overflow to -inf where both apply; softmax still sees finite keys in every row."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x, attention_mask):
        q, k, v = self.qkv(x).chunk(3, -1)
        n = x.shape[1]
        scores = q @ k.transpose(1, 2)
        low = torch.finfo(scores.dtype).min
        scores = torch.where(torch.ones(n, n, dtype=torch.bool).tril(), scores, torch.tensor(low))
        scores = scores + (1.0 - attention_mask[:, None, :].float()) * low
        return self.out(scores.softmax(-1) @ v)


@_seeded
def finfo_min_overflow():
    mask = torch.ones(2, 8)
    mask[1, -3:] = 0
    return FinfoMinOverflow(), (torch.randn(2, 8, 16), mask)


# ----- NN103: layers of a residual branch the branch detection misses ----------------------------------

class CrossAttentionBlock(nn.Module):
    """BART/Whisper decoder cross-attention: x + o(attn(q(x), k(memory), v(memory))); HF's 0.02 init at
    d=32. k and v read the encoder's memory, a side input of the branch."""

    def __init__(self, d: int = 32):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, d)
        for lin in (self.q, self.k, self.v, self.o, self.head):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x, memory):
        memory = F.layer_norm(memory, memory.shape[-1:])
        y = F.scaled_dot_product_attention(self.q(x), self.k(memory), self.v(memory))   # HF's sdpa path
        return self.head(self.norm(x + self.o(y)))


@_seeded
def cross_attention_side_input():
    return CrossAttentionBlock(), (torch.randn(2, 8, 32), torch.randn(2, 12, 32))


class ParallelResidual(nn.Module):
    """Cohere / GPT-J style: one norm feeds attention and MLP, summed as (x + attn(h)) + mlp(h)."""

    def __init__(self, d: int = 32):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.v, self.o = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, 2 * d, bias=False), nn.Linear(d, 2 * d, bias=False)
        self.down = nn.Linear(2 * d, d, bias=False)
        self.final, self.head = nn.LayerNorm(d), nn.Linear(d, 8)
        for lin in (self.v, self.o, self.gate, self.up, self.down, self.head):
            nn.init.normal_(lin.weight, std=0.02)

    def forward(self, x):
        h = self.norm(x)
        attn = self.o(self.v(h).mean(1, keepdim=True).expand_as(h))
        mlp = self.down(F.silu(self.gate(h)) * self.up(h))
        x = x + attn + mlp
        return self.head(self.final(x))


@_seeded
def parallel_residual():
    return ParallelResidual(), torch.randn(2, 8, 32)


# ----- NN401: one small layer between two norms ----------------------------------------------------

class EmbeddingProjection(nn.Module):
    """ALBERT/ELECTRA: LayerNorm(embedding 16) -> Linear(16, 32) at std 0.02 -> a post-LN encoder layer."""

    def __init__(self, e: int = 16, d: int = 32):
        super().__init__()
        self.emb, self.ln = nn.Embedding(64, e), nn.LayerNorm(e)
        self.proj = nn.Linear(e, d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln2, self.head = nn.LayerNorm(d), nn.Linear(d, 64)
        for lin in (self.proj, self.q, self.k, self.v, self.o, self.head):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, ids):
        x = self.proj(self.ln(self.emb(ids)))
        att = (self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])).softmax(-1)
        return self.head(self.ln2(x + self.o(att @ self.v(x))))


@_seeded
def embedding_projection():
    return EmbeddingProjection(), torch.randint(0, 64, (2, 16))


# ----- NN404: the reference layer is an outlier ----------------------------------------------------

class MLMHead(nn.Module):
    """ModernBERT: pre-LN blocks, then a head transform (dense -> GELU -> norm) into the tied decoder.
    The head's dense has a small init, so its relative gradient is huge next to every block's."""

    def __init__(self, d: int = 32, vocab: int = 64, blocks: int = 3):
        super().__init__()
        self.emb, self.emb_norm, self.final_norm = nn.Embedding(vocab, d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(blocks))
        self.ups = nn.ModuleList(nn.Linear(d, 2 * d, bias=False) for _ in range(blocks))
        self.downs = nn.ModuleList(nn.Linear(2 * d, d, bias=False) for _ in range(blocks))
        self.dense, self.head_norm = nn.Linear(d, d, bias=False), nn.LayerNorm(d)
        for lin in list(self.ups) + list(self.downs):
            nn.init.trunc_normal_(lin.weight, std=0.02)
        nn.init.trunc_normal_(self.dense.weight, std=0.02 / math.sqrt(2 * blocks))
        nn.init.trunc_normal_(self.emb.weight, std=0.02)

    def forward(self, ids):
        x = self.emb_norm(self.emb(ids))
        for norm, up, down in zip(self.norms, self.ups, self.downs):
            x = x + down(F.gelu(up(norm(x))))
        return self.head_norm(F.gelu(self.dense(self.final_norm(x)))) @ self.emb.weight.T


@_seeded
def outlier_reference_layer():
    return MLMHead(), torch.randint(0, 64, (2, 16))


# ----- NN301/NN302: a 1-D signal read as thousands of features ----------------------------------------

class RawAudio(nn.Module):
    """Wav2Vec2's feature encoder: a (batch, samples) waveform, unsqueezed into one conv channel."""

    def __init__(self):
        super().__init__()
        self.conv1, self.norm = nn.Conv1d(1, 16, 10, stride=5), nn.GroupNorm(16, 16)
        self.conv2, self.head = nn.Conv1d(16, 16, 3, stride=2), nn.Linear(16, 8)

    def forward(self, input_values):
        h = F.gelu(self.norm(self.conv1(input_values[:, None])))
        return self.head(F.gelu(self.conv2(h)).transpose(1, 2))


@_seeded
def raw_waveform():
    x = torch.randn(2, 4000)
    return RawAudio(), (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)


# ----- NN406: a parameter used only on some inputs ------------------------------------------------------

class MaskToken(nn.Module):
    """DINOv2/ViT embeddings: a mask token used only when `bool_masked_pos` is passed."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 8, stride=8)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x, bool_masked_pos=None):
        e = self.patch(x).flatten(2).transpose(1, 2)
        if bool_masked_pos is not None:
            e = torch.where(bool_masked_pos[..., None], self.mask_token.to(e.dtype), e)
        return self.head(e.mean(1))


@_seeded
def conditional_parameter():
    return MaskToken(), torch.randn(2, 3, 32, 32)


# ----- misses: NN101 on a layer type nnlint does not know ---------------------------------------------------

class Conv1D(nn.Module):
    """Hugging Face's GPT-2 Conv1D: a Linear with a transposed (in, out) weight, via torch.addmm."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(nx, nf) * 0.02), nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class NewGELUActivation(nn.Module):
    """Hugging Face's GPT-2 activation: the tanh GELU written out, starting with a multiplication."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2MLP(nn.Module):
    def __init__(self, d: int = 32):
        super().__init__()
        self.ln, self.c_fc, self.c_proj, self.head = nn.LayerNorm(d), Conv1D(4 * d, d), Conv1D(d, 4 * d), nn.Linear(d, 8)
        self.act = NewGELUActivation()

    def forward(self, x):
        return self.head(x + self.c_proj(self.act(self.c_fc(self.ln(x)))))


@_seeded
def gpt2_conv1d_zeroed():
    model = GPT2MLP()
    with torch.no_grad():
        model.c_fc.weight.zero_()
    return model, torch.randn(2, 8, 32)


# ----- NN406: exactly-zero gradients that are randomness, zero-init or a norm's invariance --------------

class StochasticDepthNet(nn.Module):
    """torchvision's ConvNeXt/Swin/EfficientNet: a residual branch scaled by a per-sample Bernoulli mask
    (torchvision.ops.stochastic_depth, row mode); here p=0.5 and a seed where all 4 samples drop it."""

    def __init__(self, d: int = 16, p: float = 0.5):
        super().__init__()
        self.p = p
        self.fc1, self.fc2, self.head = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 4)

    def forward(self, x):
        branch = self.fc2(F.gelu(self.fc1(x)))
        if self.training:
            noise = torch.empty(x.shape[0], 1).bernoulli_(1 - self.p).div_(1 - self.p)
            branch = branch * noise
        return self.head(x + branch)


def _dropping_seed(model: "StochasticDepthNet", n: int) -> int:
    """A seed under which the mask drops every sample (so the repro is deterministic)."""
    for seed in range(1000):
        g = torch.Generator().manual_seed(seed)
        if not torch.empty(n, 1).bernoulli_(1 - model.p, generator=g).any():
            return seed
    raise RuntimeError("no dropping seed")


def stochastic_depth_all_dropped():
    model, batch = _seeded(lambda: (StochasticDepthNet(), torch.randn(4, 16)))()
    # nnlint's training pass draws the mask from the global RNG: seed it where the mask drops all 4
    # samples (this repro, unlike the others, leaves the global RNG seeded).
    torch.manual_seed(_dropping_seed(model, 4))
    return model, batch


class ScaledStdConv2d(nn.Conv2d):
    """timm's ScaledStdConv2d: the weight standardized per output channel, times a learnable gain."""

    def __init__(self, *args, gain_init: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.full((self.out_channels, 1, 1, 1), gain_init))
        self.scale = self.weight[0].numel() ** -0.5

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         weight=(self.gain * self.scale).view(-1), training=True, momentum=0.0, eps=1e-6)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding)


class NormFreeBlock(nn.Module):
    """timm's NF-ResNet block: the branch's last conv starts with gain 0 (SkipInit through the weight)."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.conv1 = ScaledStdConv2d(c, c, 3, padding=1)
        self.conv2 = ScaledStdConv2d(c, c, 3, padding=1, gain_init=0.0)

    def forward(self, x):
        return x + 0.2 * self.conv2(F.gelu(self.conv1(F.gelu(x))))


class NFNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.blocks, self.head = ScaledStdConv2d(3, 16, 3, padding=1), nn.Sequential(
            NormFreeBlock(), NormFreeBlock()), nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


@_seeded
def nfnet_zero_gain():
    return NFNet(), torch.randn(4, 3, 16, 16)


# ----- NN203: units that are not dead -----------------------------------------------------------------------

class ZeroInitLastNormLeaky(nn.Module):
    """timm CSPDarknet's DarkBlock: conv-BN-LeakyReLU twice, the last BN's weight zero-initialized
    (zero_init_last) so the block starts as the identity; the LeakyReLU after it outputs exactly 0."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.01))
        self.conv1 = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.01))
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.01))
        self.head = nn.Linear(c, 10)
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x):
        x = self.stem(x)
        return self.head((x + self.conv2(self.conv1(x))).mean((2, 3)))


@_seeded
def zero_init_last_norm_leaky():
    return ZeroInitLastNormLeaky(), torch.randn(4, 3, 16, 16)


class NegativeGelu(nn.Module):
    """A GELU MLP whose inputs share a large common component (late CoAtNet stages: tokens nearly
    alike), so some channels are negative everywhere; GELU still passes ~0.1x gradient there."""

    def __init__(self, d: int = 32):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.Linear(d, 4)

    def forward(self, x):
        return self.head(x + self.fc2(F.gelu(self.fc1(x))))


@_seeded
def gelu_all_negative():
    common = torch.randn(1, 1, 32)
    return NegativeGelu(), common + 0.05 * torch.randn(4, 16, 32)


# ----- NN401: a depthwise conv right before a pointwise conv and its norm -------------------------------------

class SeparableConv(nn.Module):
    """timm VoVNet-ESE's SeparableConvNormAct: depthwise 3x3, pointwise 1x1, then BatchNorm."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.pw, self.bn = nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)
        self.head = nn.Linear(c, 10)
        nn.init.normal_(self.dw.weight, std=0.03)

    def forward(self, x):
        h = F.relu(self.bn0(self.stem(x)))
        return self.head(F.relu(self.bn(self.pw(self.dw(h)))).mean((2, 3)))


@_seeded
def depthwise_then_pointwise():
    return SeparableConv(), torch.randn(4, 3, 16, 16)


# ----- NN002: a tensor's value before an in-place op overwrites it -------------------------------------------

class OverwrittenBuffer(nn.Module):
    """torchvision's stochastic_depth: noise = torch.empty(...).bernoulli_(p). `empty` returns
    uninitialized memory, which may hold NaN/Inf bit patterns; bernoulli_ overwrites it before any use.
    Written with a NaN-filled buffer so the repro is deterministic."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.fc, self.head = nn.Linear(d, d), nn.Linear(d, 4)

    def forward(self, x):
        noise = torch.full((x.shape[0], 1), float("nan")).bernoulli_(0.9).div_(0.9)
        return self.head(x + self.fc(x) * noise)


@_seeded
def overwritten_uninitialized():
    return OverwrittenBuffer(), torch.randn(4, 16)


REPROS = [
    Repro("se-block", "NN402", "quiet", se_block, stands_for="torchvision/timm MobileNetV3, EfficientNet, RegNetZ SE"),
    Repro("t5-log-zero", "NN002", "quiet", t5_log_zero, stands_for="HF T5, Switch, MPNet, WavLM relative buckets"),
    Repro("mha-bool-mask", "NN002", "quiet", mha_bool_mask, stands_for="nn.MultiheadAttention with a bool mask"),
    Repro("additive-causal-mask", "NN002", "quiet", additive_causal_mask, stands_for="log(tril(ones)) masks"),
    Repro("finfo-min-overflow", "NN002", "quiet", finfo_min_overflow, stands_for="HF GPT-Neo local attention"),
    Repro("cross-attention", "NN103", "quiet", cross_attention_side_input, stands_for="HF BART/Pegasus/Marian/mBART/Whisper"),
    Repro("parallel-residual", "NN103", "quiet", parallel_residual, stands_for="HF Cohere"),
    Repro("embedding-projection", "NN401", "quiet", embedding_projection, stands_for="HF ALBERT, ELECTRA, SegFormer"),
    Repro("outlier-reference", "NN404", "quiet", outlier_reference_layer, stands_for="HF ModernBERT"),
    Repro("raw-waveform-NN301", "NN301", "quiet", raw_waveform, stands_for="HF Wav2Vec2, HuBERT, WavLM"),
    Repro("raw-waveform-NN302", "NN302", "quiet", raw_waveform, stands_for="HF Wav2Vec2, HuBERT, WavLM"),
    Repro("conditional-parameter", "NN406", "quiet", conditional_parameter, stands_for="HF DINOv2 mask_token"),
    Repro("stochastic-depth", "NN406", "quiet", stochastic_depth_all_dropped,
          stands_for="torchvision ConvNeXt/Swin/EfficientNet StochasticDepth"),
    Repro("nfnet-zero-gain", "NN406", "quiet", nfnet_zero_gain, stands_for="timm NF-ResNet/NF-RegNet/ECA-NFNet"),
    Repro("zero-init-last-norm", "NN203", "quiet", zero_init_last_norm_leaky, stands_for="timm CSPDarknet53"),
    Repro("gelu-negative", "NN203", "quiet", gelu_all_negative, stands_for="timm CoAtNet/CoAtNeXt MLP GELU"),
    Repro("depthwise-pointwise", "NN401", "quiet", depthwise_then_pointwise, stands_for="timm ESE-VoVNet"),
    Repro("overwritten-empty", "NN002", "quiet", overwritten_uninitialized,
          stands_for="torchvision stochastic_depth's torch.empty"),
    Repro("gpt2-conv1d-zero", "NN101", "found", gpt2_conv1d_zeroed, module="c_fc",
          stands_for="HF GPT-2 Conv1D zeroed (mutation benchmark)"),
]


def reproduces(repro: Repro) -> tuple[bool, list[str]]:
    """(still reproduces, the matching findings)."""
    import nnlint

    model, batch = repro.build()
    report = nnlint.check(model, batch)
    hits = [d for d in report.diagnostics if d.code == repro.code]
    lines = [f"{d.severity} {d.module or '<input>'}: {d.message[:140]}" for d in hits]
    if repro.verdict == "quiet":
        return any(d.severity in ("error", "warning") for d in hits), lines
    return not any(d.module == repro.module for d in hits), lines


def main() -> int:
    still = 0
    for repro in REPROS:
        bad, lines = reproduces(repro)
        still += bad
        print(f"{'REPRODUCES' if bad else 'fixed     '} {repro.name:24s} {repro.code} {repro.verdict:5s} ({repro.stands_for})")
        for line in lines[:2]:
            print(f"    {line}")
    print(f"{still}/{len(REPROS)} still reproduce")
    return 0


if __name__ == "__main__":
    sys.exit(main())
