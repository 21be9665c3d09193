"""The benchmark's models: the real library models where the library is installed (torchvision's
ResNet-50 and ConvNeXt-T, Hugging Face GPT-2, BERT, Llama and ViT built from their configs, no
download), and small faithful copies of ResNet-50 and GPT-2 where it is not, so that the benchmark
runs in the test environment too.

Each case is a `Case`: the model, the batch, and the loss a training step would use (the model's own,
from labels in the batch, for Hugging Face models; cross-entropy on class labels for the vision
models): the plain step and the check compute the same loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Case:
    model: nn.Module
    batch: Any
    target: Any = None
    loss_fn: Optional[Callable] = None
    source: str = ""          # which implementation was built: "torchvision", "transformers", "local copy"

    def check_arguments(self) -> dict:
        return {"target": self.target, "loss_fn": self.loss_fn} if self.loss_fn is not None else {}


# ---------------------------------------------------------------------------------------------
# Local copies (no torchvision / transformers needed)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision's Bottleneck layout (3-4-6-3 blocks) and init."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class GPT2Block(nn.Module):
    def __init__(self, d, heads, n_layer):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)
        for lin in (self.c_attn, self.c_fc):
            nn.init.normal_(lin.weight, std=0.02)
        for lin in (self.c_proj, self.mlp_proj):   # GPT-2's scaled residual projections
            nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.c_proj(y)
        h = self.c_fc(self.ln_2(x))
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return x + self.mlp_proj(h)


class GPT2(nn.Module):
    """GPT-2's pre-LN blocks, 0.02 init, 768 wide, a tied LM head."""

    def __init__(self, vocab=50257, d=768, n_layer=6, heads=12, ctx=1024):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.h = nn.ModuleList(GPT2Block(d, heads, n_layer) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T


def _next_token_loss(logits, ids):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


# ---------------------------------------------------------------------------------------------
# The cases


def _images(n, device):
    return torch.randn(n, 3, 224, 224, device=device), torch.randint(0, 1000, (n,), device=device)


def _tokens(n, t, vocab, device):
    ids = torch.randint(0, vocab, (n, t), device=device)
    return {"input_ids": ids, "labels": ids.clone()}


def _vision(name, device):
    try:
        import torchvision.models as tvm
    except Exception:   # not installed, or not importable next to this torch
        tvm = None
    images, labels = _images(8, device)
    if name == "resnet50":
        model, source = (tvm.resnet50(), "torchvision") if tvm else (ResNet50(), "local copy")
    elif tvm is not None:
        model, source = tvm.convnext_tiny(), "torchvision"
    else:
        raise SystemExit("convnext_tiny needs torchvision")
    return Case(model.to(device), images, labels, F.cross_entropy, source)


def _hugging_face(name, device):
    try:
        import transformers as tf
    except ImportError:
        if name == "gpt2":
            ids = torch.randint(0, 50257, (4, 128), device=device)
            return Case(GPT2().to(device), ids, ids, _next_token_loss, "local copy")
        raise SystemExit(f"{name} needs transformers")
    if name == "gpt2":
        model, batch = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=6)), _tokens(4, 128, 50257, device)
    elif name == "bert":
        model, batch = tf.BertForMaskedLM(tf.BertConfig()), _tokens(4, 128, 30522, device)
    elif name == "llama":
        config = tf.LlamaConfig(hidden_size=768, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=12,
                                num_key_value_heads=4, vocab_size=32000)
        model, batch = tf.LlamaForCausalLM(config), _tokens(4, 128, 32000, device)
    elif name == "llama-1b":
        # TinyLlama-1.1B's shape: 22 layers, 2048 wide, grouped-query attention (4 key/value heads)
        config = tf.LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                                num_key_value_heads=4, vocab_size=32000)
        model, batch = tf.LlamaForCausalLM(config), _tokens(1, 128, 32000, device)
    elif name == "vit":
        images, labels = _images(8, device)
        model, batch = tf.ViTForImageClassification(tf.ViTConfig(num_labels=1000)), {"pixel_values": images, "labels": labels}
    else:
        raise ValueError(name)
    return Case(model.to(device), batch, source="transformers")


VISION = ("resnet50", "convnext_tiny")
HUGGING_FACE = ("gpt2", "bert", "llama", "vit", "llama-1b")
DEFAULT = ("gpt2", "bert", "llama", "vit", "resnet50", "convnext_tiny")


def build(name: str, device: str = "cpu") -> Case:
    """The benchmark case `name`, seeded."""
    torch.manual_seed(0)
    if name in VISION:
        return _vision(name, device)
    if name in HUGGING_FACE:
        return _hugging_face(name, device)
    raise ValueError(f"unknown model {name!r}; one of {', '.join(VISION + HUGGING_FACE)}")
