"""Transformers written the way Hugging Face's modeling files write them, small: GPT-2 (pre-LN,
tanh-approximated GELU by hand, 0.02 init with 1/sqrt(2 n_layer) output projections, tied LM head),
BERT (post-LN, erf GELU, tanh pooler) and Llama (RMSNorm and RoPE by hand, SwiGLU MLP). Attention is
written out with softmax in all three, as in their "eager" attention path.

The widths are not arbitrary. With a fixed 0.02 init the embedding's variance (0.02^2 per table)
does not depend on the width d, while each branch's output grows with (d * 0.02^2)^2: below a few
hundred units the branches are too weak to show what the real models show, a tiny embedding stream
that the first blocks multiply several times over. GPT-2 at d=384 with 6 layers (per-block factors
about 4.7, 1.9, 1.5, ...) and Llama at d=256 with 8 layers (about 8.4, 3.3, 1.8, ...) keep that
shape (HF GPT-2: 8.2, 2.0, 1.5; HF Llama: 4.75, 3.7, 2.2) at a fraction of the cost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
import torch.nn.functional as F

from .case import ZooCase, seeded, token_ids

VOCAB = 512


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)          # (b, heads, t, head_dim)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, hd = x.shape
    return x.transpose(1, 2).reshape(b, t, h * hd)


def eager_attention(q, k, v, *, causal: bool, additive_mask: Optional[torch.Tensor] = None,
                    dropout: Optional[nn.Dropout] = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v over (batch, heads, seq, head_dim) tensors."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1))
    if causal:
        t = q.size(-2)
        allowed = torch.tril(torch.ones(t, t, dtype=torch.bool, device=q.device))
        scores = torch.where(allowed, scores, torch.finfo(scores.dtype).min)
    if additive_mask is not None:
        scores = scores + additive_mask
    probs = F.softmax(scores, dim=-1)
    if dropout is not None:
        probs = dropout(probs)
    return torch.matmul(probs, v)


# ----- GPT-2 ------------------------------------------------------------------------------------

@dataclass
class CausalLMOutput:
    """Stands in for transformers' CausalLMOutputWithCrossAttentions."""

    logits: torch.Tensor
    hidden_states: Optional[tuple] = None


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, the tanh approximation (transformers.activations.NewGELUActivation)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, d: int, heads: int, pdrop: float):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.attn_dropout = nn.Dropout(pdrop)
        self.resid_dropout = nn.Dropout(pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.c_attn(x).split(x.size(-1), dim=2)
        q, k, v = (split_heads(t, self.heads) for t in (q, k, v))
        out = merge_heads(eager_attention(q, k, v, causal=True, dropout=self.attn_dropout))
        return self.resid_dropout(self.c_proj(out))


class GPT2MLP(nn.Module):
    def __init__(self, d: int, pdrop: float):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, d: int, heads: int, pdrop: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = GPT2Attention(d, heads, pdrop)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = GPT2MLP(d, pdrop)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.attn(self.ln_1(hidden_states))
        hidden_states = hidden_states + residual
        residual = hidden_states
        hidden_states = self.mlp(self.ln_2(hidden_states))
        return residual + hidden_states


class GPT2LMHeadModel(nn.Module):
    def __init__(self, vocab: int = VOCAB, n_positions: int = 64, d: int = 384, n_layer: int = 6,
                 heads: int = 6, pdrop: float = 0.1, initializer_range: float = 0.02):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_positions, d)
        self.drop = nn.Dropout(pdrop)
        self.h = nn.ModuleList(GPT2Block(d, heads, pdrop) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.apply(lambda m: _init_gpt2(m, initializer_range))
        # GPT-2 paper: scale the residual projections by 1/sqrt(N), N = 2 per block (attention, MLP).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=initializer_range / math.sqrt(2 * n_layer))
        self.lm_head.weight = self.wte.weight                      # tied, as in GPT-2

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> CausalLMOutput:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)[None]
        hidden = self.drop(self.wte(input_ids) + self.wpe(positions))
        for block in self.h:
            hidden = block(hidden)
        return CausalLMOutput(logits=self.lm_head(self.ln_f(hidden)))


def _init_gpt2(module: nn.Module, std: float) -> None:
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(mean=0.0, std=std)
        if module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.data.normal_(mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


def gpt2_adamw(model: nn.Module) -> torch.optim.Optimizer:
    """nanoGPT's optimizer: weight decay on matrices and embeddings only, not on biases and norms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=6e-4, betas=(0.9, 0.95))


# ----- BERT -------------------------------------------------------------------------------------

class BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, d: int, max_positions: int, pdrop: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_positions, d)
        self.token_type_embeddings = nn.Embedding(2, d)
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(pdrop)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)[None]
        token_types = torch.zeros_like(input_ids)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_types)
        embeddings = embeddings + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, pdrop: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.dropout = nn.Dropout(pdrop)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.heads) for proj in (self.query, self.key, self.value))
        return merge_heads(eager_attention(q, k, v, causal=False, additive_mask=additive_mask, dropout=self.dropout))


class BertAddNorm(nn.Module):
    """BertSelfOutput / BertOutput: dense, dropout, then LayerNorm(x + residual): post-LN."""

    def __init__(self, d_in: int, d: int, pdrop: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d)
        self.dropout = nn.Dropout(pdrop)
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class BertLayer(nn.Module):
    def __init__(self, d: int, heads: int, pdrop: float):
        super().__init__()
        self.attention = BertSelfAttention(d, heads, pdrop)
        self.attention_output = BertAddNorm(d, d, pdrop)
        self.intermediate = nn.Linear(d, 4 * d)
        self.intermediate_act_fn = nn.GELU()
        self.output = BertAddNorm(4 * d, d, pdrop)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = self.attention_output(self.attention(x, additive_mask), x)
        return self.output(self.intermediate_act_fn(self.intermediate(x)), x)


class BertModel(nn.Module):
    def __init__(self, vocab: int = VOCAB, d: int = 128, n_layer: int = 4, heads: int = 4,
                 max_positions: int = 64, pdrop: float = 0.1, initializer_range: float = 0.02):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab, d, max_positions, pdrop)
        self.layer = nn.ModuleList(BertLayer(d, heads, pdrop) for _ in range(n_layer))
        self.pooler = nn.Linear(d, d)
        self.pooler_activation = nn.Tanh()
        self.apply(lambda m: _init_bert(m, initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        # (1 - mask) * min: padded keys get -inf-like scores, as get_extended_attention_mask does
        additive = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        hidden = self.embeddings(input_ids)
        for layer in self.layer:
            hidden = layer(hidden, additive)
        pooled = self.pooler_activation(self.pooler(hidden[:, 0]))
        return {"last_hidden_state": hidden, "pooler_output": pooled}


def _init_bert(module: nn.Module, std: float) -> None:
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(mean=0.0, std=std)
        if module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.data.normal_(mean=0.0, std=std)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


# ----- Llama ------------------------------------------------------------------------------------

class LlamaRMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotary(seq: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(seq).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class LlamaAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.heads) for proj in (self.q_proj, self.k_proj, self.v_proj))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return self.o_proj(merge_heads(eager_attention(q, k, v, causal=True)))


class LlamaMLP(nn.Module):
    def __init__(self, d: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, intermediate, bias=False)
        self.up_proj = nn.Linear(d, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, intermediate: int):
        super().__init__()
        self.self_attn = LlamaAttention(d, heads)
        self.mlp = LlamaMLP(d, intermediate)
        self.input_layernorm = LlamaRMSNorm(d)
        self.post_attention_layernorm = LlamaRMSNorm(d)

    def forward(self, hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.self_attn(self.input_layernorm(hidden_states), cos, sin)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + hidden_states


class LlamaForCausalLM(nn.Module):
    def __init__(self, vocab: int = VOCAB, d: int = 256, n_layer: int = 8, heads: int = 4,
                 intermediate: int = 688, initializer_range: float = 0.02):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(LlamaDecoderLayer(d, heads, intermediate) for _ in range(n_layer))
        self.norm = LlamaRMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.head_dim = d // heads
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=initializer_range)

    def forward(self, input_ids: torch.Tensor) -> dict:
        cos, sin = rotary(input_ids.size(1), self.head_dim)
        hidden = self.embed_tokens(input_ids)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin)
        return {"logits": self.lm_head(self.norm(hidden))}


# ----- cases ------------------------------------------------------------------------------------

def gpt2() -> ZooCase:
    with seeded(0):
        model = GPT2LMHeadModel()
    return ZooCase("gpt2", model, {"input_ids": token_ids(seed=0)}, optimizer=gpt2_adamw(model),
                   note="pre-LN: tiny embeddings, each branch adds a roughly constant variance")


def bert() -> ZooCase:
    with seeded(0):
        model = BertModel()
    ids = token_ids(seed=1)
    mask = torch.ones_like(ids)
    mask[::2, 12:] = 0                                   # every other sequence padded after 12 tokens
    ids = ids.masked_fill(mask == 0, 0)
    return ZooCase("bert", model, {"input_ids": ids, "attention_mask": mask},
                   note="post-LN: the stream's variance is 1 after every block")


def llama() -> ZooCase:
    with seeded(0):
        model = LlamaForCausalLM()
    return ZooCase("llama", model, {"input_ids": token_ids(seed=2)})
