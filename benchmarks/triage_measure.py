"""The measurements behind benchmarks/TRIAGE.md, taken on the real corpus models (plain torch hooks,
no nnlint): each function prints the statistic that decides one triage verdict.

    python benchmarks/triage_measure.py              # all of them
    python benchmarks/triage_measure.py se nn002     # some
"""
from __future__ import annotations

import math
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch                                   # noqa: E402
import torch.nn.functional as F                # noqa: E402

import corpus                                  # noqa: E402
from corpus.anatomy import observed_forward   # noqa: E402
from corpus.runner import call, tensors        # noqa: E402


def build(name: str):
    return corpus.select(corpus.all_cases(), only=[name])[0].build()


def capture(model, batch, names: list[str], inputs: bool = False) -> dict[str, torch.Tensor]:
    """The first output (or input) of each named module on one training-mode forward, no grad."""
    out: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def keep(name, value):
        t = value[0] if isinstance(value, (tuple, list)) else value
        if isinstance(t, torch.Tensor):
            out.setdefault(name, t.detach())

    handles = [modules[n].register_forward_hook(
        (lambda m, a, o, n=n: keep(n, a)) if inputs else (lambda m, a, o, n=n: keep(n, o))) for n in names]
    observed_forward(model, batch, call, handles)
    return out


def se():
    """SE blocks: the pooled vector's mean dwarfs its std; the reduce layer's gain on its RMS is normal."""
    for name, pool_in, fc in [("torchvision/mobilenet_v3_small", "features.1.block.1", "features.1.block.1.fc1"),
                              ("torchvision/efficientnet_b0", "features.2.0.block.2", "features.2.0.block.2.fc1"),
                              ("timm/efficientnet_b0", "blocks.1.0.se", "blocks.1.0.se.conv_reduce"),
                              ("timm/regnetz_005", "s1.b1.se", "s1.b1.se.fc1")]:
        model, batch = build(name)
        got = capture(model, batch, [fc], inputs=True)
        pooled, w = got[fc], model.get_submodule(fc)
        y = F.conv2d(pooled, w.weight)                        # weight only: what an init controls
        rms = pooled.pow(2).mean().sqrt().item()
        print(f"{name:32s} {fc}: pooled mean {pooled.mean():.3f} std {pooled.std():.4f} rms {rms:.3f}; "
              f"out std {y.std():.3f}: std-ratio {y.std() / pooled.std():.1f}x (what NN402 reads), "
              f"gain on rms {y.std() / rms:.2f}x")


def nn002():
    """Intermediate infinities that never reach the output: is the model's output finite?"""
    for name in ["hf/t5", "hf/switch_transformers", "hf/mpnet", "hf/wavlm", "hf/gpt_neo"]:
        model, batch = build(name)
        seen = []

        class Spy(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if isinstance(out, torch.Tensor) and out.is_floating_point() and not seen \
                        and not torch.isfinite(out).all():
                    seen.append((getattr(func, "__name__", str(func)), int((~torch.isfinite(out)).sum()), out.numel()))
                return out

        with torch.no_grad(), Spy():
            model.train()
            outputs = call(model, batch)
        finite = all(torch.isfinite(t).all() for t in tensors(outputs) if t.is_floating_point())
        print(f"{name:24s} first non-finite op {seen[0] if seen else None}; every output finite: {finite}")


def stochastic_depth():
    """torchvision ConvNeXt/Swin/EfficientNet: StochasticDepth drops a block's whole branch for a sample
    with probability p (row mode); with 4 samples, P(all dropped) = p^4 per block."""
    from torchvision.ops import StochasticDepth

    for name in ["torchvision/convnext_base", "torchvision/swin_t", "torchvision/efficientnet_b5"]:
        model, _ = build(name)
        ps = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
        none_dropped = math.prod(1 - p ** 4 for p in ps)
        print(f"{name:28s} {len(ps)} StochasticDepth layers, p up to {max(ps):.2f}: "
              f"P(some block drops all 4 samples) = {1 - none_dropped:.0%}")


def nfnet():
    """NF-ResNet: each block's last ScaledStdConv2d starts with gain 0 (SkipInit through the weight)."""
    model, _ = build("timm/nf_resnet26")
    gains = [(n, bool((m.gain == 0).all())) for n, m in model.named_modules() if type(m).__name__ == "ScaledStdConv2d"
             and n.endswith("conv3")]
    print(f"timm/nf_resnet26: {sum(z for _, z in gains)}/{len(gains)} block-final ScaledStdConv2d have gain == 0")


def zero_bn_leaky():
    """CSPDarknet: the branch's last BatchNorm weight is zero-initialized (zero_init_last), so the
    LeakyReLU after it sees exactly 0 and outputs 0: 'never active', yet neither dead nor faulty."""
    model, batch = build("timm/cspdarknet53")
    bn = model.get_submodule("stages.0.blocks.0.conv2.bn")
    out = capture(model, batch, ["stages.0.blocks.0.conv2.bn"])["stages.0.blocks.0.conv2.bn"]
    print(f"timm/cspdarknet53 stages.0.blocks.0.conv2.bn: weight all zero {bool((bn.weight == 0).all())}, "
          f"output max |x| {out.abs().max():.2e}; LeakyReLU slope {bn.act.negative_slope}")


def gelu_negative():
    """CoAtNet MLPs: GELU channels whose pre-activations are all negative still pass gradient."""
    for name, fc in [("timm/coatnet_nano_rw_224", "stages.3.blocks.1.mlp.fc1"),
                     ("timm/coatnext_nano_rw_224", "stages.1.blocks.1.mlp.fc1")]:
        model, batch = build(name)
        z = capture(model, batch, [fc])[fc]
        z = z.movedim(1, -1).reshape(-1, z.shape[1]) if z.dim() == 4 else z.reshape(-1, z.shape[-1])
        negative = (z <= 0).all(0)
        zn = z[:, negative]
        x = zn.clone().requires_grad_()
        F.gelu(x).sum().backward()
        print(f"{name:28s} {fc}: {negative.float().mean():.0%} of channels never positive; their median pre-activation "
              f"{zn.median():.3f}, GELU'(z) median {x.grad.abs().median():.3f} (peak 1.08; ReLU would pass 0)")


def waveform():
    """Raw audio (batch of 2): 'per-feature' statistics of 4000 samples over 2 examples."""
    _, batch = build("hf/wav2vec2")
    x = batch["input_values"]
    std = x.std(0, unbiased=False)
    print(f"hf/wav2vec2 input {tuple(x.shape)}: overall mean {x.mean():.2e} std {x.std():.3f}; per-'feature' std over "
          f"{x.shape[0]} samples ranges {std.min():.1e}..{std.max():.2f} (|x1-x2|/2: meaningless)")


def single_layer_chains():
    """ALBERT/ELECTRA/SegFormer/VoVNet: one layer between two normalizations; what the next norm sees."""
    for name, layer, real in [("hf/albert", "albert.encoder.embedding_hidden_mapping_in", (128, 0.02)),
                              ("hf/electra", "electra.embeddings_project", (128, 0.02)),
                              ("hf/segformer", "decode_head.linear_projections.0.proj", (32, 0.02))]:
        model, batch = build(name)
        w = model.get_submodule(layer).weight
        fan_in = w.shape[1]
        print(f"{name:14s} {layer}: Linear({fan_in}, {w.shape[0]}) std {w.std():.3f} -> gain {w.std() * math.sqrt(fan_in):.3f} "
              f"(Xavier {math.sqrt(2 / sum(w.shape)) * math.sqrt(fan_in):.2f}); at the released width fan_in {real[0]}: "
              f"gain {real[1] * math.sqrt(real[0]):.2f}")


def cross_attention():
    """BART-family cross-attention k/v at 0.02: the tiny width makes them 9x small; at d=768 1.8x."""
    for d in (32, 768):
        xavier = math.sqrt(2 / (2 * d))
        print(f"d_model={d}: std 0.02 vs Xavier {xavier:.3f}: {xavier / 0.02:.1f}x small")


def modernbert():
    """ModernBERT: relative gradients per layer under a fixed random projection of the outputs."""
    model, batch = build("hf/modernbert")
    model.train()
    out = call(model, batch)
    g = torch.Generator().manual_seed(0)
    loss = sum((t.float() * torch.randn(t.shape, generator=g)).sum() / t.numel() ** 0.5
               for t in tensors(out) if t.is_floating_point() and t.requires_grad)
    loss.backward()
    rel = {n: (p.grad.norm() / p.norm()).item() for n, p in model.named_parameters()
           if p.grad is not None and p.dim() == 2 and "embeddings" not in n}
    body = [v for n, v in rel.items() if n.startswith("model.layers")]
    print(f"hf/modernbert: relative gradient, encoder layers {min(body):.2g}..{max(body):.2g} (median "
          f"{sorted(body)[len(body) // 2]:.2g}); head.dense {rel['head.dense.weight']:.3g}")


def inception_head():
    """timm/torchvision Inception-v3: fc drawn with std 0.1 (fan_in 2048): the loss at init."""
    for name in ["timm/inception_v3", "torchvision/inception_v3"]:
        model, batch = build(name)
        model.train()                                  # batch statistics, as in training
        with torch.no_grad():
            logits = model(batch)
        logits = logits[0] if isinstance(logits, tuple) else logits
        target = torch.zeros(logits.shape[0], dtype=torch.long)
        print(f"{name:26s} fc std {model.fc.weight.std():.3f}: logits std {logits.std():.2f}, "
              f"CE at init {F.cross_entropy(logits, target):.2f} vs log(1000) = {math.log(1000):.2f}")


MEASURES = {f.__name__: f for f in (se, nn002, stochastic_depth, nfnet, zero_bn_leaky, gelu_negative, waveform,
                                     single_layer_chains, cross_attention, modernbert, inception_head)}

if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    for key in sys.argv[1:] or list(MEASURES):
        print(f"--- {key}: {MEASURES[key].__doc__.strip().splitlines()[0]}")
        MEASURES[key]()
