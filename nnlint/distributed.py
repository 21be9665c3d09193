"""The check under torch.distributed (torchrun with DDP, FSDP2, tensor parallelism): every rank measures
its own shard of the batch, and every rank ends with the same report of the whole batch.

The guard and the training callbacks check at the same step on every rank. `check_whole_batch` runs:

1. ready: every rank says whether its batch can be checked (one gather), before anything collective
   runs: FSDP2's forward all-gathers parameters and a sharded parameter is read whole, so a rank that
   stopped here while the others went on would leave them waiting;
2. each rank checks its shard (nnlint.check), keeping the gradients of the check's backward;
3. every rank says whether its check ran, with the fingerprint of its trace (one gather);
4. where every rank's trace has the same fingerprint, the statistics are reduced (nnlint.rankmerge:
   three all-reduces), the gradients too (the check ran on the module inside the DDP wrapper, so they
   are all-reduced and averaged as DDP does; a DTensor gradient is measured whole by the tracer), and
   so is the covariance of a tabular input (its mean feature correlation, exact); the rules run on the
   merged trace, the same on every rank. The rules that read probes keep each rank's findings, merged
   (one gather), as does everything where the fingerprints differ (data-dependent control flow,
   shards of unequal size).

Every branch is taken on gathered values, so every rank takes the same one, and a rank whose check
failed still takes part in every collective the others make: all ranks raise or continue together.
What nnlint cannot guard against is a model whose own forward raises on one rank between FSDP2's
collectives: training itself would hang there the same way.

Collectives carry tensors only: the small objects travel as pickled bytes in uint8 tensors (torch's
all_gather_object needs NumPy, which torch does not).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from nnlint.config import Config
from nnlint.errors import NNLintError
from nnlint.report import Report


@dataclasses.dataclass
class Ranks:
    """This process's place in the default process group, and the collectives nnlint makes on it."""

    dist: Any
    rank: int
    world: int

    @property
    def reporting(self) -> bool:
        return self.rank == 0

    @property
    def device(self):
        import torch

        # NCCL takes CUDA tensors only; gloo (and the CPU side of a mixed backend) takes CPU tensors.
        if str(self.dist.get_backend()) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def gather(self, obj) -> list:
        """`obj` of every rank, in rank order, on every rank: one all_gather of the pickled sizes, one of
        the payloads padded to the longest."""
        import pickle

        import torch

        device = self.device
        payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(device)
        size = torch.tensor([payload.numel()], dtype=torch.long, device=device)
        sizes = [torch.empty_like(size) for _ in range(self.world)]
        self.dist.all_gather(sizes, size)
        padded = torch.zeros(max(int(s) for s in sizes), dtype=torch.uint8, device=device)
        padded[:payload.numel()] = payload
        payloads = [torch.empty_like(padded) for _ in range(self.world)]
        self.dist.all_gather(payloads, padded)
        # Findings are a few kB: a list of ints is a cheap way back to bytes without NumPy.
        return [pickle.loads(bytes(p[:int(n)].tolist())) for p, n in zip(payloads, sizes)]

    def agree(self, why_not: Optional[str]) -> Optional[str]:
        """None when no rank has a reason not to go on; else every rank's reason, on every rank."""
        reasons = self.gather(why_not)
        failed = [(r, why) for r, why in enumerate(reasons) if why is not None]
        if not failed:
            return None
        if len(failed) == len(reasons) and len({why for _, why in failed}) == 1:
            return failed[0][1]
        return "; ".join(f"on rank {r}: {why}" for r, why in failed)

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """The element-wise sum ("sum") or maximum ("max") of every rank's `values`, in float64."""
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX if op == "max" else self.dist.ReduceOp.SUM)
        return t.tolist()


def current() -> Optional[Ranks]:
    """The ranks of an initialized default process group; None outside torch.distributed."""
    try:
        import torch.distributed as dist
    except ImportError:   # pragma: no cover - torch built without distributed
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return Ranks(dist, dist.get_rank(), dist.get_world_size())


def is_reporting_rank() -> bool:
    ranks = current()
    return ranks is None or ranks.reporting


class KeptGradients:
    """The gradients the check's backward accumulates into the parameters, kept (the tracer gives the
    model its own `.grad` back afterwards): the first one per parameter, which is the traced step's."""

    def __init__(self, model):
        self.model = model
        self.grads: dict[str, Any] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "KeptGradients":
        for name, p in self.model.named_parameters(remove_duplicate=True):
            if p.requires_grad and hasattr(p, "register_post_accumulate_grad_hook"):
                self._handles.append(p.register_post_accumulate_grad_hook(self._keeper(name)))
        return self

    def _keeper(self, name: str):
        def keep(p) -> None:
            self.grads.setdefault(name, p.grad)

        return keep

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def check_whole_batch(ranks: Ranks, model, batch, run: Callable[[Any], Report], *, select=None, ignore=(),
                      config: Optional[Config] = None, why_not: Optional[str] = None
                      ) -> tuple[Optional[Report], Optional[str]]:
    """Check this rank's shard with `run(batch)` (nnlint.check on `model`, the module inside any
    wrapper) and return (the report of the whole batch, None), the same on every rank, or (None, why)
    when some rank could not check. `why_not`: this rank cannot check (it still takes part)."""
    from nnlint.trace.batch import materialize_batch, validate_batch

    if why_not is None:
        try:
            batch = materialize_batch(batch)
            validate_batch(batch)
        except NNLintError as exc:
            why_not = str(exc)
    why_not = ranks.agree(why_not)
    if why_not is not None:
        return None, why_not
    report, flat, kept = None, None, KeptGradients(model)
    try:
        with kept:
            report = run(batch)
        flat = _flatten(report)
    except NNLintError as exc:
        why_not = str(exc)
    except Exception as exc:   # an nnlint bug on one rank must not stop, or hang, the others
        why_not = f"{type(exc).__name__}: {exc}"
    mine = None if flat is None else (flat.fingerprint, sorted(n for n in kept.grads if _plain(kept.grads[n])))
    headers = ranks.gather((why_not, mine, None if flat is None else flat.batch_digest,
                            0.0 if report is None else report.seconds, [] if report is None else list(report.notes)))
    failed = [(r, h[0]) for r, h in enumerate(headers) if h[0] is not None]
    if failed:
        return None, "; ".join(f"on rank {r}: {why}" for r, why in failed)
    seconds = max(h[3] for h in headers)
    notes = list(dict.fromkeys(note for h in headers for note in h[4]))
    unlike = None
    if len({repr(h[1]) for h in headers}) > 1:
        unlike = (f"the {ranks.world} ranks' passes differed (control flow that depends on the data, or shards "
                  "of unequal size)")
    elif ranks.world > 1 and len({h[2] for h in headers}) == 1:
        unlike = ("every rank was given the same batch (as tensor parallelism does; under DDP or FSDP it means "
                  "every rank trains on the same samples: give the data loader a DistributedSampler)")
    if unlike is not None:
        found = ranks.gather(report.diagnostics)
        return dataclasses.replace(report, diagnostics=merge_findings(found), seconds=seconds, notes=notes + [
            f"{unlike}, so each rank's findings on its own batch are merged"]), None
    merged = _merged_trace(ranks, flat, model, batch, kept.grads)
    return _merged_report(ranks, report, merged, select, ignore, config or Config(), seconds, notes)


def _flatten(report: Report):
    from nnlint.rankmerge import FlatTrace

    trace = report.trace
    return FlatTrace(trace, sum(float(i.summary.numel) for i in trace.inputs) or 1.0)


def _plain(grad) -> bool:
    """A gradient to all-reduce: a plain tensor (a DTensor's is sharded, and measured whole already)."""
    from nnlint.trace.wrappers import is_dtensor

    return grad is not None and not is_dtensor(grad)


def _merged_trace(ranks: Ranks, flat, model, batch, grads: dict[str, Any]):
    """The trace of the whole batch: statistics, input correlations and gradients reduced."""
    sums, maxes = flat.first()
    sums, maxes = ranks.all_reduce(sums), ranks.all_reduce(maxes, "max")
    trace = flat.rebuild(sums, maxes, ranks.all_reduce(flat.second(sums)))
    _reduce_correlations(ranks, trace, batch)
    _reduce_gradients(ranks, trace, model, grads)
    trace.batch_description = f"{flat.trace.batch_description} per rank, {ranks.world} ranks"
    return trace


def _reduce_correlations(ranks: Ranks, trace, batch) -> None:
    """A tabular input's mean feature correlation from the covariance of the whole batch: the ranks'
    sums and cross products, summed (a mean of the shards' correlations would be biased upwards)."""
    import torch

    from nnlint.trace.batch import named_tensors
    from nnlint.trace.stats import mean_abs_correlation_of

    tensors = dict(named_tensors(batch))
    for rec in trace.inputs:
        x = tensors.get(rec.path)
        if rec.mean_abs_correlation is None or x is None or x.dim() != 2:
            continue
        xf = x.detach().to(ranks.device, torch.float64)
        moments = torch.cat([torch.tensor([float(xf.shape[0])], dtype=torch.float64, device=xf.device),
                             xf.sum(0), (xf.T @ xf).reshape(-1)])
        ranks.dist.all_reduce(moments)
        n, f = moments[0], xf.shape[1]
        mean = moments[1:1 + f] / n
        cov = moments[1 + f:].reshape(f, f) / n - torch.outer(mean, mean)
        off = mean_abs_correlation_of(cov)
        rec.mean_abs_correlation = None if off is None else float(off)


def _reduce_gradients(ranks: Ranks, trace, model, grads: dict[str, Any]) -> None:
    """The gradients of the whole batch: each rank's, all-reduced and divided by the number of ranks (as
    DDP averages them), measured as the tracer measures gradients. The kept tensors are the check's own."""
    from nnlint.trace import stats
    from nnlint.trace.gradients import grad_stats_of

    names = [n for n, _ in model.named_parameters(remove_duplicate=True) if _plain(grads.get(n))]
    for name in names:
        ranks.dist.all_reduce(grads[name])
        grads[name].div_(ranks.world)
    trace.params = {name: dataclasses.replace(rec) for name, rec in trace.params.items()}
    pending = stats.PendingStats()
    grad_stats_of(((n, grads[n]) for n in names), trace.params, pending)
    pending.resolve()


def _merged_report(ranks: Ranks, local: Report, trace, select, ignore, config: Config, seconds, notes
                   ) -> tuple[Optional[Report], Optional[str]]:
    """The rules on the merged trace; those that read probes, each rank's findings merged. A rule that
    raises (an nnlint bug) is (None, why) on every rank: the ranks still make the same collectives."""
    from nnlint.api import run_rules
    from nnlint.probes.base import all_probes
    from nnlint.registry import select_rules

    select = list(select) if select is not None else list(config.select or [])
    ignore = list(ignore or []) + list(config.ignore or [])
    probes = set(all_probes())
    chosen = select_rules(select or None, ignore)
    per_rank = {cls.code for cls in chosen if cls.reads & probes}
    whole = [cls.code for cls in chosen if cls.code not in per_rank]
    found, why_not = [], None
    try:
        found = run_rules(trace, select=whole, config=config) if whole else []
    except Exception as exc:
        why_not = f"{type(exc).__name__}: {exc}"
    shards = ranks.gather([d for d in local.diagnostics if d.code in per_rank])
    why_not = ranks.agree(why_not)
    if why_not is not None:
        return None, why_not
    note = f"statistics of the {ranks.world} ranks' shards reduced into those of the whole batch"
    return Report(diagnostics=found + merge_findings(shards), model_name=local.model_name,
                  batch_description=trace.batch_description, seconds=seconds, notes=notes + [note],
                  trace=trace), None


def merge_findings(found: list) -> list:
    """The union of each rank's findings (a list per rank), the most severe where ranks disagree; a
    finding that only some ranks made says which in its evidence ("ranks")."""
    from nnlint.diagnostics import SEVERITY_RANK

    merged: dict = {}
    seen: dict = {}
    for rank, diagnostics in enumerate(found):
        for d in diagnostics or ():
            key = (d.code, d.module, d.location)
            kept = merged.get(key)
            if kept is None or SEVERITY_RANK[d.severity] < SEVERITY_RANK[kept.severity]:
                merged[key] = d
            seen.setdefault(key, set()).add(rank)
    out = []
    for key, d in merged.items():
        if len(seen[key]) < len(found):
            d = dataclasses.replace(d, evidence={**d.evidence, "ranks": sorted(seen[key])})
        out.append(d)
    return out


def agreed_report(report: Optional[Report]) -> Optional[Report]:
    """The report every rank decides on: outside torch.distributed, `report`; under it, the union of
    every rank's findings (None when no rank has a report). A report that is already the same on every
    rank (check_whole_batch's) comes back as it is."""
    ranks = current()
    if ranks is None:
        return report
    gathered = ranks.gather(None if report is None else report.diagnostics)
    if all(found is None for found in gathered):
        return None
    keys = [[(d.code, d.module, d.location) for d in found or ()] for found in gathered]
    if report is not None and all(k == keys[ranks.rank] for k in keys):
        return report
    merged = merge_findings([found or [] for found in gathered])
    seen_by = "; ".join(f"{d.code} on {d.module or 'the input'}: rank {', '.join(map(str, d.evidence['ranks']))}"
                        for d in merged if len(d.evidence.get("ranks", gathered)) < len(gathered))
    base = report if report is not None else Report(diagnostics=[])
    note = f"merged the findings of {ranks.world} ranks, each measured on its own shard" + (
        f" (seen only on some: {seen_by})" if seen_by else "")
    return dataclasses.replace(base, diagnostics=merged, notes=list(base.notes) + [note])
