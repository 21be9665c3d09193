"""Is the model autoregressive? Said by the user (`nnlint.check(..., causal=True)`, `causal = True` in
the model file, `--causal`), or recognised, in this order:

- a Hugging Face causal LM: a `*ForCausalLM` / `*LMHeadModel` class, `config.is_decoder`, or an
  attention module that says `is_causal = True` (GPT-2, Llama, Mistral ... all do);
- the trace: an attention op called with `is_causal=True` (`scaled_dot_product_attention`,
  `nn.MultiheadAttention` / `nn.TransformerEncoder` with `is_causal=True`), or a triangular mask built
  in forward (`torch.tril`, `torch.triu`, `nn.Transformer.generate_square_subsequent_mask`) that
  reaches a softmax or an attention op;
- a triangular mask kept as a buffer (nanoGPT's `self.register_buffer("bias", torch.tril(...))`).

Recognition is cheap (no pass) and conservative: a bidirectional encoder (BERT) is none of these. A
`causal=False` from the user turns it off.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from nnlint.trace.graph import Graph

_CAUSAL_CLASS = re.compile(r"(ForCausalLM|LMHeadModel|CausalLM)$")
_MASK_BUILDERS = {"tril", "triu", "tril_", "triu_"}
_MAX_MASK_BUFFER = 1 << 22   # elements: a causal-mask buffer is (1, 1, T, T) with T up to ~2048


@dataclass(frozen=True)
class Causality:
    causal: bool
    declared: bool = False     # the user said so (True or False)
    why: str = ""              # how it was recognised: "declared", "GPT2LMHeadModel", "is_causal=True attention" ...


def recognise(ctx) -> Causality:
    """Memoized per check in ctx.shared: every dependence probe asks."""
    if "causality" not in ctx.shared:
        ctx.shared["causality"] = _recognise(ctx)
    return ctx.shared["causality"]


def _recognise(ctx) -> Causality:
    declared = ctx.options.causal
    if declared is not None:
        return Causality(bool(declared), declared=True, why="declared")
    config = getattr(ctx.model, "config", None)
    if config is not None and getattr(config, "is_encoder_decoder", False) is True:
        return Causality(False)   # T5, BART: the decoder is causal, the encoder's input (the first) is not
    why = _hugging_face(ctx.model) or _from_trace(ctx.trace) or _mask_buffer(ctx.model)
    return Causality(bool(why), why=why or "")


def _hugging_face(model) -> str:
    if _CAUSAL_CLASS.search(type(model).__name__):
        return type(model).__name__
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "is_decoder", False) is True:
        return "config.is_decoder"
    for name, module in model.named_modules():
        if getattr(module, "is_causal", None) is True:
            return f"{name or type(model).__name__}.is_causal"
    return ""


def _from_trace(trace) -> str:
    graph = Graph.of(trace)
    for op in graph.ops:
        if op.kind == "attention" and op.args.get("is_causal") is True:
            return f"{op.func}(is_causal=True)"
    for op in graph.ops:
        if op.func in _MASK_BUILDERS:
            reached = graph.first(op, lambda o: o.kind in ("softmax", "attention"), limit=16)
            if reached is not None:
                return f"a triangular mask ({op.func}) feeding {reached.func}"
    return ""


def _mask_buffer(model) -> str:
    import torch

    for name, buf in model.named_buffers():
        if buf is None or buf.dim() < 2 or buf.shape[-1] != buf.shape[-2] or buf.shape[-1] < 2:
            continue
        if buf.numel() > _MAX_MASK_BUFFER or buf.is_floating_point() and not bool(((buf == 0) | (buf == 1)).all()):
            continue
        square = buf.reshape(-1, buf.shape[-2], buf.shape[-1])[0]
        if bool(square.bool().equal(torch.ones_like(square, dtype=torch.bool).tril())):
            return f"the triangular mask buffer {name}"
    return ""
