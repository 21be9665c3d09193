"""The gradients the model holds, measured the way the tracer measures everything: one norm per
parameter, queued and read back with the pass's other statistics. The guard calls it on the real
gradients of the first optimizer step."""
from __future__ import annotations

from nnlint.trace import stats
from nnlint.trace.records import ParamRecord
from nnlint.trace.wrappers import whole


def grad_stats(model, params: dict[str, ParamRecord], pending: stats.PendingStats) -> None:
    """Set each parameter record's grad_norm / grad_all_zero / grad_nonfinite from the gradient the
    parameter holds now (None stays None: no gradient reached it)."""
    grad_stats_of(((name, p.grad) for name, p in model.named_parameters(remove_duplicate=True)), params, pending)


def grad_stats_of(grads, params: dict[str, ParamRecord], pending: stats.PendingStats) -> None:
    """The same from (parameter name, gradient) pairs: gradients held elsewhere than in `.grad` (the
    distributed check's, all-reduced across ranks)."""
    import torch

    for name, grad in grads:
        rec = params[name]
        if grad is None:
            continue
        g = grad.detach()
        # A sharded gradient (FSDP2, tensor parallel): the norm of the whole, from each shard's norm.
        norm = whole(torch.linalg.vector_norm(g, dtype=stats.accumulation_dtype(g)))

        def store(v, rec=rec):
            n = v[0]
            rec.grad_norm = n if n == n else float("nan")
            rec.grad_all_zero = n == 0.0
            rec.grad_nonfinite = not (n == n and n != float("inf"))

        pending.defer([norm], store)
