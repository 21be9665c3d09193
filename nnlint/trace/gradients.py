"""The gradients the model holds, measured the way the tracer measures everything: one norm per
parameter, queued and read back with the pass's other statistics. The guard calls it on the real
gradients of the first optimizer step."""
from __future__ import annotations

from nnlint.trace import stats
from nnlint.trace.records import ParamRecord


def grad_stats(model, params: dict[str, ParamRecord], pending: stats.PendingStats) -> None:
    """Set each parameter record's grad_norm / grad_all_zero / grad_nonfinite from the gradient the
    parameter holds now (None stays None: no gradient reached it)."""
    import torch

    for name, p in model.named_parameters(remove_duplicate=True):
        rec = params[name]
        if p.grad is None:
            continue
        g = p.grad.detach()
        norm = torch.linalg.vector_norm(g.reshape(-1), dtype=stats.accumulation_dtype(g))

        def store(v, rec=rec):
            n = v[0]
            rec.grad_norm = n if n == n else float("nan")
            rec.grad_all_zero = n == 0.0
            rec.grad_nonfinite = not (n == n and n != float("inf"))

        pending.defer([norm], store)
