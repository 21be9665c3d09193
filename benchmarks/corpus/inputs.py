"""Realistic batches: standardized images, token ids with attention masks, audio, video.

Every maker takes its own seeded generator, so a batch is the same on every run and building one
never touches the global RNG (the mutation check compares the RNG state before and after a check).
"""
from __future__ import annotations

import torch

SEED = 0


def _gen(seed: int = SEED) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def images(batch: int = 4, size: int = 64, channels: int = 3, seed: int = SEED) -> torch.Tensor:
    """Standardized images: every channel zero-mean, unit-std, as after transforms.Normalize."""
    x = torch.randn(batch, channels, size, size, generator=_gen(seed))
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)


def unit_images(batch: int = 2, size: int = 128, seed: int = SEED) -> list[torch.Tensor]:
    """Images in [0, 1], one tensor per image: what torchvision's detection models take (their
    GeneralizedRCNNTransform normalizes with the ImageNet mean/std itself)."""
    g = _gen(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(batch)]


def video(batch: int = 2, frames: int = 8, size: int = 64, seed: int = SEED) -> torch.Tensor:
    """Standardized clips, (N, C, T, H, W)."""
    x = torch.randn(batch, 3, frames, size, size, generator=_gen(seed))
    return (x - x.mean(dim=(0, 2, 3, 4), keepdim=True)) / x.std(dim=(0, 2, 3, 4), keepdim=True)


def token_ids(batch: int, length: int, vocab: int, seed: int = SEED, low: int = 5) -> torch.Tensor:
    """Random ids, avoiding the first few (pad/bos/eos in most vocabularies)."""
    return torch.randint(low, vocab, (batch, length), generator=_gen(seed))


def attention_mask(batch: int, length: int, padded: int = 3) -> torch.Tensor:
    """1 for real tokens, 0 for padding: the last sample is right-padded by `padded` positions,
    as a batch of sequences of unequal length is."""
    mask = torch.ones(batch, length, dtype=torch.long)
    if batch > 1 and padded:
        mask[-1, length - padded:] = 0
    return mask


def text(batch: int = 2, length: int = 16, vocab: int = 256, seed: int = SEED, padded: int = 3) -> dict:
    return {"input_ids": token_ids(batch, length, vocab, seed), "attention_mask": attention_mask(batch, length, padded)}


def waveform(batch: int = 2, samples: int = 4000, seed: int = SEED) -> torch.Tensor:
    """Standardized raw audio (what Wav2Vec2's feature extractor produces: zero mean, unit variance
    per utterance)."""
    x = torch.randn(batch, samples, generator=_gen(seed))
    return (x - x.mean(dim=1, keepdim=True)) / x.std(dim=1, keepdim=True)


def features(*shape: int, seed: int = SEED) -> torch.Tensor:
    """Standardized features of any shape (log-mel spectrograms after normalization)."""
    return torch.randn(*shape, generator=_gen(seed))
