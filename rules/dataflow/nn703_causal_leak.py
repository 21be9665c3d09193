from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.dataflow._origin import REDUCTIONS, describe_origin, origin_location, share
from nnlint.trace.records import Trace


class CausalLeak(Rule):
    """## What it does
    For an autoregressive model, changes the tokens of one sample from the middle of the sequence on
    (position t0 = T // 2) and compares its outputs at the positions before t0 with those of the
    unchanged batch, in eval mode: in a causal model they are bit-identical. Any change means the
    output at position t sees tokens after t; the finding names the first op whose earlier positions
    changed (attention without its mask, a sum over the whole sequence).

    The model is autoregressive when the user says so (`nnlint.check(..., causal=True)`, a
    module-level `causal = True` in the model file, `nnlint check --causal`), or when nnlint
    recognises it: a Hugging Face causal LM (`*ForCausalLM`, `*LMHeadModel`, `config.is_decoder`, an
    attention module with `is_causal = True`), an attention op called with `is_causal=True`, a
    triangular mask (`torch.tril`/`triu`, `generate_square_subsequent_mask`) that reaches a softmax or
    an attention op, or a lower-triangular mask buffer. `causal=False` turns the check off; encoder-
    decoder models (T5, BART) are not recognised (their first input is the encoder's).

    ## Why is this bad?
    Next-token training then lets each position read the token it is asked to predict: the loss falls
    fast and the model learns to copy, and generation, where the future is not there, fails.

    ## Options
    - `relative_tolerance` (default 1e-5): report when the earlier positions change by more than this
      fraction of their largest output value.

    ## Fix safety
    No automatic fix: apply the causal mask (`is_causal=True` with
    `mask=nn.Transformer.generate_square_subsequent_mask(T)`, or a lower-triangular `attn_mask`), or
    compute each position from the prefix only (`cumsum` instead of `sum`).
    """

    code = "NN703"
    name = "causal-leak"
    severity = "error"
    summary = "an autoregressive model's output at position t changes when a token after t changes"
    options = {"relative_tolerance": 1e-5}
    reads = frozenset({"causal_leak"})
    about = "model"

    examples = (
        Faulty("""
            class Prefix(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.proj = nn.Linear(8, 8)

                def forward(self, x):                       # (batch, time, features)
                    return self.proj(x.mean(dim=1, keepdim=True)).expand_as(x)   # every position sees all


            causal = True                                   # the model is autoregressive
            model = Prefix()
            batch = torch.randn(4, 16, 8)
            """, module=""),
        Healthy("""
            class Prefix(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.proj = nn.Linear(8, 8)

                def forward(self, x):                       # (batch, time, features)
                    steps = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
                    return self.proj(x.cumsum(dim=1) / steps)   # position t averages the prefix only


            causal = True                                   # the model is autoregressive
            model = Prefix()
            batch = torch.randn(4, 16, 8)
            """),
    )

    def check(self, trace: Trace):
        result = trace.probes.get("causal_leak")
        if result is None or not result.leaks or result.change <= self.opts["relative_tolerance"]:
            return
        origin = result.origin
        declared = "declared causal" if result.why == "declared" else f"recognised as causal ({result.why})"
        where = f"; the leak starts at {describe_origin(trace, origin)}" if origin is not None else ""
        t0 = result.position
        yield self.diagnostic(
            origin.module if origin is not None else "",
            f"the model is {declared}, but changing sample 0's {result.changed_input} from position {t0} on changes "
            f"its {result.output} at positions 0-{t0 - 1} by {share(result.change)} of their largest value{where}: "
            f"position t sees tokens after t; {_advice(origin)}",
            location=origin_location(trace, origin) if origin is not None else None,
            evidence={"change": result.change, "position": t0, "seq_len": result.seq_len, "why": result.why,
                      "changed_input": result.changed_input, "output": result.output,
                      "origin": origin.func if origin is not None else None},
        )


def _advice(origin) -> str:
    if origin is not None and origin.func in REDUCTIONS - {"cumsum"}:
        return (f"{origin.func}() over the sequence mixes every position; compute position t from the prefix only "
                "(cumsum, a cumulative mean, or a causal attention)")
    return ("apply the causal mask (is_causal=True with mask=nn.Transformer.generate_square_subsequent_mask(T), or a "
            "lower-triangular attn_mask)")
