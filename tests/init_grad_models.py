"""Small faithful copies of healthy models, for the quiet-on-healthy tests of NN103, NN304, NN404-NN406.

Each keeps its library's own init; where that init is an absolute std tuned for the library's width
(VGG's classifier, 0.01 for fan-in 25088 and 4096), the copy keeps the std *relative to Kaiming* that
the library has, since at a smaller width the same absolute number is a different, mis-scaled model.
Used until tests/zoo exists; tests/zoo's cases are used too when it does.
"""

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------- ResNet (torchvision BasicBlock)
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            idt = self.downsample(x)
        out += idt
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, zero_init_residual=False, nc=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, nc)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------- VGG (torchvision init)
class VGG(nn.Module):
    def __init__(self, nc=10):
        super().__init__()
        cfg = [16, "M", 32, "M", 64, 64, "M"]
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Linear(64 * 4, 128),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(128, 128),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(128, nc),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        # torchvision's 0.01 is 1.12x Kaiming for classifier.0 (fan-in 25088) and 0.45x for classifier.3
        # (fan-in 4096, after Dropout(0.5)): the same ratios at this width.
        for index, ratio in ((0, 1.12), (3, 0.45)):
            layer = self.classifier[index]
            nn.init.normal_(layer.weight, 0, ratio * math.sqrt(2.0 / layer.in_features))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------- pre-LN GPT (HF GPT-2 init)
class GPTBlock(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // self.h)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.drop(self.c_proj(y))
        hdn = self.c_fc(self.ln_2(x))
        hdn = (
            0.5 * hdn * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (hdn + 0.044715 * torch.pow(hdn, 3.0))))
        )
        return x + self.drop(self.mlp_proj(hdn))


class GPT(nn.Module):
    def __init__(self, vocab=100, d=64, h=4, n=3, T=16):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(T, d)
        self.drop = nn.Dropout(0.1)
        self.h = nn.ModuleList(GPTBlock(d, h) for _ in range(n))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                nn.init.normal_(p, 0, 0.02 / math.sqrt(2 * n))

    def forward(self, idx):
        pos = torch.arange(idx.shape[1])
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for b in self.h:
            x = b(x)
        return self.lm_head(self.ln_f(x))


# ---------- post-LN BERT (HF init) with pooler and classifier
class BertLayer(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.attn_out = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d)
        self.inter = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)
        self.ln2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        a, _ = self.attn(x, x, x, need_weights=False)
        x = self.ln1(x + self.drop(self.attn_out(a)))
        return self.ln2(x + self.drop(self.out(F.gelu(self.inter(x)))))


class Bert(nn.Module):
    def __init__(self, vocab=100, d=64, h=4, n=2, nc=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(32, d)
        self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList(BertLayer(d, h) for _ in range(n))
        self.pooler = nn.Linear(d, d)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(d, nc)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, idx):
        x = self.ln(self.emb(idx) + self.pos(torch.arange(idx.shape[1])))
        for l in self.layers:
            x = l(x)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.classifier(self.dropout(pooled))


# ---------- ConvNeXt (layer scale)
class CNBlock(nn.Module):
    def __init__(self, d, ls=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(d, d, 7, padding=3, groups=d)
        self.norm = nn.LayerNorm(d)
        self.pwconv1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(ls * torch.ones(d))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        ).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, nc=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, 4), LayerNorm2d(16))
        self.stage1 = nn.Sequential(CNBlock(16), CNBlock(16))
        self.down = nn.Sequential(LayerNorm2d(16), nn.Conv2d(16, 32, 2, 2))
        self.stage2 = nn.Sequential(CNBlock(32), CNBlock(32))
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, nc)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean((2, 3))))


# ---------- MobileNetV3-ish with SE
class SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(c // r, c, 1)
        self.hs = nn.Hardsigmoid()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.hs(self.fc2(self.relu(self.fc1(s))))


class InvRes(nn.Module):
    def __init__(self, c, e):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e), nn.Hardswish())
        self.dw = nn.Sequential(
            nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False), nn.BatchNorm2d(e), nn.Hardswish()
        )
        self.se = SE(e)
        self.project = nn.Sequential(nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.se(self.dw(self.expand(x))))


class MobileNet(nn.Module):
    def __init__(self, nc=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(InvRes(16, 64), InvRes(16, 64))
        self.last = nn.Sequential(nn.Conv2d(16, 96, 1, bias=False), nn.BatchNorm2d(96), nn.Hardswish())
        self.classifier = nn.Sequential(
            nn.Linear(96, 128), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(128, nc)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.last(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---------- DenseNet
class DenseLayer(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(True)
        self.conv1 = nn.Conv2d(cin, 4 * g, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * g)
        self.relu2 = nn.ReLU(True)
        self.conv2 = nn.Conv2d(4 * g, g, 3, padding=1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseNet(nn.Module):
    def __init__(self, nc=10, g=8):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(16)
        self.layers = nn.ModuleList(DenseLayer(16 + i * g, g) for i in range(3))
        c = 16 + 3 * g
        self.trans = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(True), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)
        )
        self.norm5 = nn.BatchNorm2d(c // 2)
        self.classifier = nn.Linear(c // 2, nc)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        feats = [F.relu(self.norm0(self.conv0(x)))]
        for l in self.layers:
            feats.append(l(feats))
        x = F.relu(self.norm5(self.trans(torch.cat(feats, 1))))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---------- RNNs
class LSTMTagger(nn.Module):
    def __init__(self, vocab=50, d=32, h=48, nc=5, cell=nn.LSTM):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.rnn = cell(d, h, num_layers=2, batch_first=True)
        self.head = nn.Linear(h, nc)

    def forward(self, idx):
        out, _ = self.rnn(self.emb(idx))
        return self.head(out[:, -1])


# ---------- Llama
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class LlamaBlock(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.input_layernorm = RMSNorm(d)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.post_attention_layernorm = RMSNorm(d)
        self.gate_proj = nn.Linear(d, 3 * d, bias=False)
        self.up_proj = nn.Linear(d, 3 * d, bias=False)
        self.down_proj = nn.Linear(3 * d, d, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        y = self.input_layernorm(x)
        q, k, v = (
            p(y).view(B, T, self.h, D // self.h).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        x = x + self.o_proj(a)
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class Llama(nn.Module):
    def __init__(self, vocab=100, d=64, h=4, n=3):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(LlamaBlock(d, h) for _ in range(n))
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0, 0.02)

    def forward(self, idx):
        x = self.embed_tokens(idx)
        for l in self.layers:
            x = l(x)
        return self.lm_head(self.norm(x))


def kaiming_mlp(depth=6, width=64, nc=10):
    layers, fan_in = [], 32
    for _ in range(depth):
        linear = nn.Linear(fan_in, width)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, nc))
    return nn.Sequential(*layers)


@dataclass
class HealthyCase:
    name: str
    build: Callable[[], nn.Module]
    batch: Any


def cases() -> list[HealthyCase]:
    g = torch.Generator().manual_seed(0)
    img = torch.randn(8, 3, 32, 32, generator=g)
    ids = torch.randint(0, 100, (4, 16), generator=g)
    ids50 = torch.randint(0, 50, (4, 12), generator=g)
    return [
        HealthyCase("resnet_bn", lambda: ResNet(), img),
        HealthyCase("resnet_zero_init_residual", lambda: ResNet(zero_init_residual=True), img),
        HealthyCase("vgg", lambda: VGG(), img),
        HealthyCase("gpt_preln", lambda: GPT(), ids),
        HealthyCase("bert_postln", lambda: Bert(), ids),
        HealthyCase("convnext", lambda: ConvNeXt(), img),
        HealthyCase("mobilenet_se", lambda: MobileNet(), img),
        HealthyCase("densenet", lambda: DenseNet(), img),
        HealthyCase("lstm", lambda: LSTMTagger(), ids50),
        HealthyCase("gru", lambda: LSTMTagger(cell=nn.GRU), ids50),
        HealthyCase("llama", lambda: Llama(), ids),
        HealthyCase("kaiming_mlp", lambda: kaiming_mlp(), torch.randn(64, 32, generator=g)),
    ]
