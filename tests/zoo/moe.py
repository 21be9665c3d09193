"""A sparse mixture-of-experts decoder written the way Hugging Face's Mixtral is: a linear router,
softmax over the experts, top-2, the two weights renormalized, and each expert (a Llama SwiGLU MLP)
run on the tokens routed to it, found from the top-k indices (sorted by expert, counted with
`histc`, cut at the running counts, as transformers 5 groups them), its
output weighted by the router and added back with `index_add_`.

What it guards: the router's softmax is not a hidden nonlinearity (NN204) although the tokens an
expert runs on are selected through its top-k indices: indices select, they carry no values, so the
softmax reaches the experts only as the weight of a product (a gate).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .case import ZooCase, seeded, token_ids
from .transformer import LlamaForCausalLM, LlamaMLP


class MixtralSparseMoeBlock(nn.Module):
    def __init__(self, d: int, intermediate: int, experts: int = 4, top_k: int = 2):
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(LlamaMLP(d, intermediate) for _ in range(experts))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        b, t, d = hidden_states.shape
        x = hidden_states.reshape(-1, d)
        routing_weights = F.softmax(self.gate(x), dim=-1, dtype=torch.float)
        routing_weights, selected = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights = routing_weights / routing_weights.sum(dim=-1, keepdim=True)
        # Group the (token, slot) pairs by expert as transformers 5 does: sort the flat expert indices,
        # count them per expert (histc), and cut the sorted order at the running counts.
        flat = selected.reshape(-1)
        order = torch.sort(flat, stable=True).indices
        ends = torch.histc(flat.float(), bins=len(self.experts), min=0, max=len(self.experts)).cumsum(0)
        flat_weights = routing_weights.reshape(-1)
        out = torch.zeros_like(x)
        start = 0
        for expert, end in zip(self.experts, ends.long().tolist()):
            pairs = order[start:end]
            start = end
            if pairs.numel() == 0:
                continue
            rows = pairs // self.top_k
            y = expert(x[rows]) * flat_weights[pairs, None]
            out.index_add_(0, rows, y.to(x.dtype))
        return out.reshape(b, t, d)


def mixtral() -> ZooCase:
    """Llama with every MLP a sparse MoE block (`layers[i].mlp`, as transformers 5 names it)."""
    with seeded(0):
        model = LlamaForCausalLM(d=128, n_layer=2, heads=4, intermediate=256)
        for layer in model.layers:
            layer.mlp = MixtralSparseMoeBlock(128, 256)
            for m in layer.mlp.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, mean=0.0, std=0.02)
    return ZooCase("mixtral", model, {"input_ids": token_ids(seed=3)},
                   note="top-2 routing: experts pick their tokens through the router's indices")
