"""What the model, its parameters, the batch's inputs, the optimizer and the train transform are, as
plain records: taken before the pass (parameter statistics are queued like every other statistic and
read back once at the end)."""
from __future__ import annotations

from typing import Any, Optional

from nnlint.initmath import fans
from nnlint.trace import stats
from nnlint.trace.batch import named_tensors
from nnlint.trace.records import InputRecord, ModuleRecord, OptimizerRecord, ParamRecord, TensorSummary, Trace
from nnlint.trace.source import construction_sites
from nnlint.trace.wrappers import user_class, whole


def simple_attrs(module) -> dict[str, Any]:
    """The module's public scalar configuration (p, negative_slope, in_features, kernel_size ...)."""
    out: dict[str, Any] = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[key] = value
        elif isinstance(value, tuple) and all(isinstance(v, (int, float, bool)) for v in value):
            out[key] = list(value)
    return out


def module_records(model, origins) -> dict[str, ModuleRecord]:
    sites = construction_sites(model, origins)
    import torch

    records: dict[str, ModuleRecord] = {}
    for name, module in model.named_modules():
        cls = user_class(module)
        records[name] = ModuleRecord(
            name=name, type=cls.__name__, type_path=f"{cls.__module__}.{cls.__qualname__}",
            is_leaf=not any(True for _ in module.children()), training=module.training,
            location=sites.get(name),
            params=[f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)],
            attrs=simple_attrs(module), is_torch_builtin=cls.__module__.startswith("torch.nn"),
            scripted=isinstance(module, torch.jit.ScriptModule),
        )
    return records


def param_records(model, pending: stats.PendingStats) -> dict[str, ParamRecord]:
    import torch

    records: dict[str, ParamRecord] = {}
    first_name: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        module, _, attr = name.rpartition(".")
        shape = tuple(p.shape)
        fan_in, fan_out = fans(shape)
        rec = ParamRecord(name=name, module=module, attr=attr, shape=shape, requires_grad=p.requires_grad,
                          mean=0.0, std=0.0, all_zero=False, rows_identical=False, fan_in=fan_in,
                          fan_out=fan_out, norm=0.0)
        records[name] = rec
        if id(p) in first_name:
            rec.tied_to = first_name[id(p)]
            continue
        first_name[id(p)] = name
        if p.numel() == 0 or p.device.type == "meta" or not p.is_floating_point():
            continue

        def store(s: TensorSummary, rec=rec, n=p.numel()):
            rec.mean, rec.std = s.mean, s.std
            rec.norm = ((s.std ** 2 + s.mean ** 2) * n) ** 0.5 if s.std == s.std else float("nan")
            rec.all_zero = rec.norm == 0.0

        with torch.no_grad():
            p = whole(p)   # a sharded parameter is judged on its full values, one at a time
            bounds = None
            if p.dim() >= 2 and p.shape[0] > 1 and stats.measurable(p):
                bounds = _weight_rows(p.detach().reshape(p.shape[0], -1), rec, pending)
            stats.summarize(p, pending, store, bounds=bounds)
    return records


def _weight_rows(flat, rec: ParamRecord, pending: stats.PendingStats):
    """Queue what the rules read of a weight's rows (of dim 0: its output units): whether every row is
    equal (rows_identical) and how many are all zeros (zero_rows). Returns (max, min) bounds for the
    weight's summary: 0-d tensors that are finite exactly when every value is, so that the summary does
    not read the whole weight again for its non-finite check."""
    if flat.device.type == "cpu":
        return _weight_rows_cpu(flat, rec)
    # Every row equal <=> each column's max equals its min: fast reductions with column-sized outputs,
    # no copy of the weight (a 1B-parameter model stays frugal), and they give the weight's max and min.
    # (amax and amin along dim 0, not aminmax: on the CPU its dim-0 reduction is 7x slower)
    hi, lo = flat.amax(dim=0), flat.amin(dim=0)
    pending.defer([(hi == lo).all()], lambda v: setattr(rec, "rows_identical", bool(v[0])))
    # Output units zeroed one by one (pruned filters): row-sized reductions, no copy either.
    zero = ((flat.amax(dim=1) == 0) & (flat.amin(dim=1) == 0)).sum()
    pending.defer([zero], lambda v: setattr(rec, "zero_rows", int(v[0])))
    return hi.max(), lo.min()


def _weight_rows_cpu(flat, rec: ParamRecord):
    """The same on the CPU, where a read is no sync, so each answer can be screened first: one pass over
    the weight instead of four (on the 6-layer Llama of benchmarks/overhead.py, 87M weights: 12 ms
    instead of 65). Rows 0 and 1 differ in nearly every weight, and then not all rows are equal; a
    row's norm is zero only where the row is (or underflows: those rows are confirmed exactly), and
    finite only where its values are (or a square overflows: then the exact extremes are taken)."""
    import torch

    rec.rows_identical = torch.equal(flat[0], flat[1]) and bool((flat.amax(dim=0) == flat.amin(dim=0)).all())
    norms = torch.linalg.vector_norm(flat, dim=1)
    zero = (norms == 0).nonzero().reshape(-1)
    if zero.numel():
        rows = flat[zero]
        rec.zero_rows = int(((rows.amax(dim=1) == 0) & (rows.amin(dim=1) == 0)).sum())
    if bool(torch.isfinite(norms).all()):
        top = norms.max()
        return top, top
    lo, hi = torch.aminmax(flat)
    return hi, lo


def input_records(batch, serial, pending: stats.PendingStats) -> tuple[list[InputRecord], dict[int, dict]]:
    """A record per tensor of the batch, and per float input of 2+ dims its channel moments along the
    candidate channel dims (resolved by choose_channel_dims once the pass says who reads the input)."""
    records = []
    candidates: dict[int, dict] = {}
    for path, t in named_tensors(batch):
        # A sparse or nested input has no dense values to measure: lineage only, like an integer one.
        rec = InputRecord(path=path, serial=serial(t), summary=TensorSummary(tuple(t.shape), str(t.dtype).replace("torch.", ""), 0.0, 0.0),
                          is_float=t.is_floating_point() and stats.measurable(t))
        records.append(rec)
        if not rec.is_float or t.numel() == 0:
            continue
        stats.summarize_exact(t, pending, lambda s, rec=rec: setattr(rec, "summary", s))
        if t.dim() >= 2:
            dims = [1] if t.dim() != 3 else [1, 2]
            rec.channel_dim = 1
            found: dict[int, Any] = candidates.setdefault(len(records) - 1, {})
            for d in dims:
                stats.channel_moments(t, d, pending, lambda m, s, d=d, c=found: c.__setitem__(d, (m, s)))
        if t.dim() == 2:
            stats.mean_abs_correlation(t, pending, lambda v, rec=rec: setattr(rec, "mean_abs_correlation", v))
    return records, candidates


# Fewer samples than this, and a per-feature mean/std says nothing (over 2 rows a feature's "std" is
# half the difference of two numbers): the input is judged as a whole.
MIN_ROWS_PER_FEATURE = 8


def choose_channel_dims(trace: Trace, candidates: dict[int, dict]) -> None:
    """Images and 1-D signals keep channels at dim 1; a 3-D input read by a Linear has features last. A
    2-D input is per feature (a table), unless it has fewer than MIN_ROWS_PER_FEATURE rows or a conv
    reads it as one channel (a raw waveform, `x.unsqueeze(1)` into a Conv1d): then it is one signal,
    judged by its overall mean and std."""
    from nnlint.trace.graph import Graph
    from nnlint.trace.vocab import is_passthrough

    graph = Graph.of(trace)
    for i, rec in enumerate(trace.inputs):
        found = candidates.get(i)
        if not found:
            continue
        shape = rec.summary.shape
        first = graph.first_consumer(rec.serial, through=is_passthrough)
        if len(shape) == 2 and (shape[0] < MIN_ROWS_PER_FEATURE or (first is not None and first.kind == "conv")):
            rec.channel_dim, rec.channel_mean, rec.channel_std = None, [rec.summary.mean], [rec.summary.std]
            continue
        dim = 1
        if 2 in found and (first is None or first.kind != "conv"):
            dim = 2
        rec.channel_dim = dim
        rec.channel_mean, rec.channel_std = found.get(dim, ([], []))


def optimizer_record(optimizer, model) -> Optional[OptimizerRecord]:
    """The optimizer as given: its class and, per parameter group, the hyperparameters the optimizer
    rules read and which of the model's parameters it holds (by name). Tensors that are no parameter
    of the model are kept apart (`foreign`), so that every name in `params` is a model parameter."""
    if optimizer is None:
        return None
    optimizer = unwrap_optimizer(optimizer)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for g in getattr(optimizer, "param_groups", []):
        tensors = list(g.get("params", []))
        groups.append({
            "weight_decay": _number(g.get("weight_decay", 0.0)) or 0.0,
            "lr": _number(g.get("lr")),
            "params": [names[id(p)] for p in tensors if id(p) in names],
            # A tensor handed to the optimizer that is no parameter of the model (an old head, a stray
            # tensor): its shape is what a message can say about it.
            "foreign": [{"shape": list(p.shape), "requires_grad": bool(getattr(p, "requires_grad", False))}
                        for p in tensors if id(p) not in names],
            # LBFGS, Rprop, SparseAdam have no weight decay at all; Adam(decoupled_weight_decay=True)
            # is AdamW: NN506 reads both.
            "supports_weight_decay": "weight_decay" in g,
            "decoupled_weight_decay": bool(g.get("decoupled_weight_decay", False)),
            "momentum": _number(g.get("momentum")),
            "betas": [_number(b) for b in g["betas"]] if isinstance(g.get("betas"), (tuple, list)) else None,
            "eps": _number(g.get("eps")) if not isinstance(g.get("eps"), (tuple, list)) else None,
            "dtypes": sorted({str(p.dtype).replace("torch.", "") for p in tensors if hasattr(p, "dtype")}),
        })
    return OptimizerRecord(type=type(optimizer).__name__, groups=groups)


def _number(value) -> Optional[float]:
    """A hyperparameter as a float: lr may be a 0-d tensor (capturable optimizers); None when absent."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def unwrap_optimizer(optimizer, depth: int = 0):
    """The torch optimizer inside a wrapper (accelerate's AcceleratedOptimizer keeps it in .optimizer,
    Lightning's LightningOptimizer in ._optimizer): its class is what the user chose."""
    for attr in ("optimizer", "_optimizer"):
        inner = getattr(optimizer, attr, None)
        if depth < 4 and inner is not None and inner is not optimizer and hasattr(inner, "param_groups"):
            return unwrap_optimizer(inner, depth + 1)
    return optimizer


def setup_locations(trace: Trace, batch, optimizer, train_transform, origins, loss_fn=None) -> None:
    """Where the batch, the optimizer, the train transform and the loss function were built, when the loader recorded it
    (keyed by id(object), like modules): the findings about them point at those lines."""
    origins = origins or {}
    if batch is not None and id(batch) in origins:
        trace.target_info["batch_location"] = origins[id(batch)]
    if optimizer is not None and id(optimizer) in origins:
        trace.target_info["optimizer_location"] = origins[id(optimizer)]
    if trace.train_transform is not None and id(train_transform) in origins:
        trace.train_transform["location"] = origins[id(train_transform)]
    if loss_fn is not None and id(loss_fn) in origins:
        trace.target_info["loss_location"] = origins[id(loss_fn)]


def describe_transform(transform) -> Optional[dict[str, Any]]:
    """A train transform as class names, recognised without importing torchvision."""
    if transform is None:
        return None
    steps = []
    dataset = None
    if _is_dataset(transform):
        # A training Dataset: its transform is what augments (torchvision datasets keep it in .transform).
        dataset, transform = type(transform).__name__, getattr(transform, "transform", None)
        if transform is None:
            return {"type": "None", "steps": [], "dataset": dataset}

    def walk(t, depth=0):
        if depth > 4:
            return
        inner = getattr(t, "transforms", None)
        if inner is None and type(t).__name__ == "Sequential" and hasattr(t, "children"):
            inner = list(t.children())   # torchvision's scriptable nn.Sequential(transforms...)
        if isinstance(inner, (list, tuple)):
            # Keep a wrapper's own name (RandomApply, RandomChoice, A.OneOf): it is what makes its
            # children random. Plain sequencing containers add nothing.
            if type(t).__name__ not in ("Compose", "Sequential", "ReplayCompose"):
                steps.append(type(t).__name__)
            for s in inner:
                walk(s, depth + 1)
        else:
            steps.append(type(t).__name__)

    walk(transform)
    out = {"type": type(transform).__name__, "steps": steps}
    if dataset is not None:
        out["dataset"] = dataset
    return out


def _is_dataset(obj) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and hasattr(obj, "transform") \
        and not callable(obj)
