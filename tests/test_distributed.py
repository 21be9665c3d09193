"""nnlint under torch.distributed: 2 CPU processes on gloo, with DDP, FSDP2 (fully_shard) and tensor
parallelism (parallelize_module), as torchrun would start them.

Each rank checks its own shard of the batch; the ranks' statistics are reduced into those of the whole
batch, so the findings are those of one process checking the model on the whole batch, the same
report on every rank, printed by rank 0; all ranks raise or continue together (one rank's failure or a
NaN in one rank's shard must not leave the other waiting in a collective); and the first step trains
exactly as it would without the guard.

Starting processes is what costs here (~10 s per process on a busy 2-core machine), so the two ranks
are started once for the module: each runs every scenario in turn (SCENARIOS), writes what it saw, and
the tests compare that with a single-process check of the same model on the whole batch, run here. A
rank that hangs is killed after TIMEOUT seconds (and gloo gives up on a collective after
COLLECTIVE_TIMEOUT): the tests then fail, naming the scenario that hung, instead of blocking CI.
"""
from __future__ import annotations

import gc
import json
import math
import os
import time
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


def _has_fully_shard() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401  (FSDP2: torch 2.6 and later)
    except ImportError:
        return False
    return True


def _has_tensor_parallel() -> bool:
    try:
        from torch.distributed.tensor.parallel import parallelize_module  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed"),
    pytest.mark.skipif(dist.is_available() and not dist.is_gloo_available(),
                       reason="torch built without the gloo backend (the CPU collectives these tests run on)"),
]
HAS_FSDP2 = dist.is_available() and _has_fully_shard()
HAS_TP = dist.is_available() and _has_tensor_parallel()
needs_fsdp2 = pytest.mark.skipif(not HAS_FSDP2, reason="torch.distributed.fsdp.fully_shard (FSDP2) is not in this torch")
needs_tp = pytest.mark.skipif(not HAS_TP, reason="torch.distributed.tensor.parallel is not in this torch")
WRAPS = ["ddp", pytest.param("fsdp", marks=needs_fsdp2)]

WORLD = 2
ROWS = 32            # samples per rank
TIMEOUT = 150        # seconds for the whole run of both ranks
COLLECTIVE_TIMEOUT = 60


# ---------------------------------------------------------------------------------------------
# The models and the data: the same in the ranks and in the single-process reference


class Net(nn.Module):
    """Planted faults whose evidence needs the whole batch: a tanh layer drawn from N(0, 1) (NN103;
    72% of its inputs saturate: NN202, an error, so the guard stops training)."""

    def __init__(self, faulty: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(16, 64)
        self.act1 = nn.Tanh()
        self.fc2 = nn.Linear(64, 32)
        self.act2 = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.fc3 = nn.Linear(32, 4)
        nn.init.xavier_normal_(self.fc1.weight, gain=nn.init.calculate_gain("tanh"))
        nn.init.kaiming_normal_(self.fc2.weight, nonlinearity="relu")
        if faulty:
            nn.init.normal_(self.fc1.weight, std=1.0)

    def forward(self, x):
        return self.fc3(self.drop(self.act2(self.fc2(self.act1(self.fc1(x))))))


def build(faulty: bool = True, dropout: float = 0.0, zero: bool = False) -> Net:
    """`zero`: a healthy net with fc2's weight all zero (NN101) and a 5-way head, whose 5 rows FSDP2
    splits unevenly (3 and 2): each rank's shard has its own shape, std and fans; the whole has one."""
    torch.manual_seed(0)
    model = Net(faulty and not zero, dropout)
    if zero:
        nn.init.zeros_(model.fc2.weight)
        model.fc3 = nn.Linear(32, 5)
    return model


def whole_batch(nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of every rank together: rank r's shard is rows [r * ROWS, (r + 1) * ROWS). The shards
    are off-center in opposite directions, so a shard's statistics are not the whole batch's."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(WORLD * ROWS, 16, generator=g)
    x[:ROWS] += 1.5
    x[ROWS:] -= 1.5
    if nan:
        x[ROWS + 3, 5] = float("nan")   # in rank 1's shard only
    y = torch.randint(0, 4, (WORLD * ROWS,), generator=g)
    return x, y


def shard(rank: int, nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = whole_batch(nan)
    return x[rank * ROWS:(rank + 1) * ROWS], y[rank * ROWS:(rank + 1) * ROWS]


def loss_step(model, batch):
    """A training step up to the loss, as a framework's callback gives it to the check (step=)."""
    x, y = batch
    return F.cross_entropy(model(x), y)


def findings(report) -> list[dict]:
    """What a test compares of a report: each finding's code, module, severity and numbers."""
    out = []
    for d in sorted(report.diagnostics, key=lambda d: (d.code, d.module)):
        numbers = {k: v for k, v in d.evidence.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out.append({"code": d.code, "module": d.module, "severity": d.severity, "numbers": numbers})
    return out


def params_of(model) -> dict[str, list]:
    from torch.distributed.tensor import DTensor

    return {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().flatten().tolist()
            for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------
# What each rank runs


def fsdp(model):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    for layer in (model.fc1, model.fc2, model.fc3):
        fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


WRAP = {"ddp": lambda m: nn.parallel.DistributedDataParallel(m), "fsdp": fsdp}


def guarded_step(rank, wrap, *, faulty=True, nan=False, zero=False):
    """A training loop's first step with nnlint.guard on: what it raised or warned, and the report."""
    import nnlint
    from nnlint.config import Config
    from nnlint.guard import UnhealthyModelError

    model = WRAP[wrap](build(faulty, zero=zero))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = nnlint.guard(model, optimizer, config=Config())
    x, y = shard(rank, nan)
    out: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            out["outcome"] = "trained"
        except UnhealthyModelError as exc:
            out["outcome"] = "raised"
            out["message"] = str(exc)
    out["warnings"] = [str(w.message) for w in caught if "nnlint" in str(w.message)]
    out["findings"] = findings(guard.report) if guard.report is not None else None
    if guard.report is not None and guard.report.trace is not None:
        out["params"] = {n: [r.std, r.grad_norm, r.fan_in, r.fan_out, list(r.shape), r.all_zero]
                         for n, r in guard.report.trace.params.items()}
        out["inputs"] = [[i.summary.shape, i.summary.mean, i.summary.std] for i in guard.report.trace.inputs]
    return out


def callback_check(rank, wrap):
    """The training callbacks' shared check (TrainingCheck, as Lightning's and the HF Trainer's use
    it) with the real loss: its gradients are the whole batch's, so they match to the last digits."""
    from nnlint.config import Config
    from nnlint.integrations import TrainingCheck

    model = WRAP[wrap](build(faulty=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    check = TrainingCheck(on_error="warn", config=Config())
    check.start(model, optimizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check.check_step(shard(rank), loss_step)
    report = check.report
    return {"findings": findings(report), "warnings": [str(w.message) for w in caught if "nnlint" in str(w.message)],
            "grads": {n: r.grad_norm for n, r in report.trace.params.items()}, "loss": report.trace.loss,
            "notes": report.notes}


def untouched(rank, wrap):
    """The first step with the guard equals the first step without it: weights, optimizer state, RNG."""
    import nnlint
    from nnlint.config import Config

    runs = {}
    for guarded in (True, False):
        model = WRAP[wrap](build(faulty=False, dropout=0.2))
        torch.manual_seed(100 + rank)   # each rank's own dropout masks
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        if guarded:
            nnlint.guard(model, optimizer, config=Config(), ignore=["NN3"])
        x, y = shard(rank)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        state = [v.full_tensor().flatten().tolist() if hasattr(v, "full_tensor") else v.flatten().tolist()
                 for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        runs[guarded] = {"loss": loss.item(), "params": params_of(model), "optimizer": state,
                         "rng": torch.get_rng_state().tolist(), "warnings": [str(w.message) for w in caught]}
    return {"same": {k: runs[True][k] == runs[False][k] for k in ("loss", "params", "optimizer", "rng")},
            "warnings": runs[True]["warnings"]}


def one_rank_fails(rank, wrap):
    """An exception inside nnlint's check on rank 1 only (after its pass, while the rules run)."""
    import nnlint.api

    original = nnlint.api.run_rules

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in a rule on this rank")

    if rank == 1:
        nnlint.api.run_rules = broken
    try:
        return guarded_step(rank, wrap)
    finally:
        nnlint.api.run_rules = original


def unusable_batch_on_one_rank(rank, wrap):
    """The callbacks' check is given a batch rank 1 cannot check (empty): no rank starts the collective
    pass (FSDP2's forward all-gathers), every rank checks the first batch its forward sees instead."""
    from nnlint.config import Config
    from nnlint.integrations import TrainingCheck

    model = WRAP[wrap](build(faulty=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    check = TrainingCheck(on_error="warn", config=Config())
    check.start(model, optimizer)
    x, y = shard(rank)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check.check_step((x[:0], y[:0]) if rank == 1 else (x, y), loss_step)
        skipped = check.report is None
        F.cross_entropy(model(x), y).backward()    # checked here, on every rank
        optimizer.step()
    return {"skipped": skipped, "findings": findings(check.report),
            "warnings": [str(w.message) for w in caught if "nnlint" in str(w.message)]}


def tensor_parallel(rank, wrap):
    """A column-parallel Linear and a row-parallel one (parallelize_module on a 2-rank CPU mesh): every
    rank has the same batch; the parameters are DTensor shards, judged whole."""
    import nnlint
    from nnlint.config import Config
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    model = build(faulty=True)
    parallelize_module(model, init_device_mesh("cpu", (WORLD,)),
                       {"fc1": ColwiseParallel(), "fc2": RowwiseParallel()})
    x, _ = whole_batch()
    report = nnlint.check(model, x, config=Config())
    return {"findings": findings(report), "shapes": {n: list(p.shape) for n, p in model.named_parameters()},
            "local": list(model.fc1.weight.to_local().shape),
            "params": {n: [r.std, r.fan_in, r.grad_norm] for n, r in report.trace.params.items()}}


def module_names(rank, wrap):
    """nnlint.check on the DDP wrapper itself: the user's module names."""
    import nnlint
    from nnlint.config import Config

    report = nnlint.check(WRAP[wrap](build(faulty=True)), shard(rank)[0], config=Config(), select=["NN1"])
    return {"modules": sorted(d.module for d in report.diagnostics),
            "trace": sorted(report.trace.modules), "type": report.trace.model_type}


SCENARIOS = [
    ("ddp_faulty", guarded_step, "ddp", {}),
    ("fsdp_faulty", guarded_step, "fsdp", {}),
    ("fsdp_zero", guarded_step, "fsdp", {"zero": True}),
    ("ddp_callback", callback_check, "ddp", {}),
    ("fsdp_callback", callback_check, "fsdp", {}),
    ("ddp_untouched", untouched, "ddp", {}),
    ("fsdp_untouched", untouched, "fsdp", {}),
    ("ddp_nan", guarded_step, "ddp", {"nan": True, "faulty": False}),
    ("fsdp_nan", guarded_step, "fsdp", {"nan": True, "faulty": False}),
    ("ddp_fails", one_rank_fails, "ddp", {}),
    ("fsdp_fails", one_rank_fails, "fsdp", {}),
    ("fsdp_unusable", unusable_batch_on_one_rank, "fsdp", {}),
    ("tp", tensor_parallel, None, {}),
    ("ddp_names", module_names, "ddp", {}),
    ("fsdp_names", module_names, "fsdp", {}),
]


def worker(rank: int, store: str, out_dir: str) -> None:
    from datetime import timedelta

    # One thread per rank: two ranks of two threads each on a 2-core CI runner thrash (gloo's waits spin).
    torch.set_num_threads(1)
    with open(os.path.join(out_dir, f"rank{rank}.progress"), "a") as f:
        f.write(f"started {time.perf_counter():.2f}\n")
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT))
    results: dict = {}
    progress = os.path.join(out_dir, f"rank{rank}.progress")
    try:
        for name, scenario, wrap, kwargs in SCENARIOS:
            if (wrap == "fsdp" and not HAS_FSDP2) or (scenario is tensor_parallel and not HAS_TP):
                continue
            with open(progress, "a") as f:
                f.write(f"{name} {time.perf_counter():.2f}\n")
            try:
                results[name] = scenario(rank, wrap, **kwargs)
            except Exception:
                results[name] = {"crashed": traceback.format_exc()}
            # DDP's reducer goes before the process group, as PyTorch's teardown expects: left to
            # interpreter exit, it was destroyed after the group about one run in ten and gloo aborted.
            gc.collect()
            dist.barrier()   # would hang (and time out the run) if one rank were stuck in a collective
    finally:
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
        dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    ctx = mp.get_context("spawn")
    # a TCP store on a free port: no file:// path, so it also runs where file stores do not (Windows)
    store = f"tcp://127.0.0.1:{free_port()}"
    procs = [ctx.Process(target=worker, args=(r, store, str(out))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=TIMEOUT)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    if hung:
        last = [(out / f"rank{r}.progress").read_text().split()[-2:-1] for r in range(WORLD)]
        pytest.fail(f"rank(s) {hung} hung (the ranks did not agree); last scenarios started: {last}")
    for r, p in enumerate(procs):
        assert p.exitcode == 0, f"rank {r} exited with {p.exitcode}"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def result(ranks, name: str) -> list[dict]:
    got = [r[name] for r in ranks]
    for r, g in enumerate(got):
        assert "crashed" not in g, f"rank {r} crashed in {name}:\n{g['crashed']}"
    return got


# ---------------------------------------------------------------------------------------------
# The single-process references: the same model on the whole batch


def reference_guard(*, faulty=True, nan=False, zero=False) -> dict:
    import nnlint
    from nnlint.config import Config
    from nnlint.guard import UnhealthyModelError

    model = build(faulty, zero=zero)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = nnlint.guard(model, optimizer, config=Config())
    x, y = whole_batch(nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            outcome = "trained"
        except UnhealthyModelError:
            outcome = "raised"
    return {"outcome": outcome, "findings": findings(guard.report), "report": guard.report}


def same_findings(got: list[dict], want: list[dict], *, rel: float = 1e-4, skip: tuple = ()) -> None:
    """The same codes on the same modules, with the same severities and numbers (the whole batch's)."""
    assert [(f["code"], f["module"], f["severity"]) for f in got] == \
        [(f["code"], f["module"], f["severity"]) for f in want]
    for g, w in zip(got, want):
        for key, value in w["numbers"].items():
            if key in skip or not math.isfinite(value):
                continue
            assert g["numbers"][key] == pytest.approx(value, rel=rel, abs=1e-6), (g["code"], g["module"], key)


@pytest.mark.parametrize("wrap", WRAPS)
def test_the_findings_are_those_of_one_process_on_the_whole_batch(ranks, wrap):
    got = result(ranks, f"{wrap}_faulty")
    want = reference_guard()
    # NN303: each shard's features are barely correlated; the whole batch's are (the shards' offsets)
    assert want["outcome"] == "raised" and {"NN103", "NN202", "NN303"} <= {f["code"] for f in want["findings"]}
    for rank in got:
        # Gradient numbers differ in the last digits: without a loss the check's surrogate weights the
        # shard's rows (test_callback... compares the real loss's gradients exactly).
        same_findings(rank["findings"], want["findings"], skip=("grad_norm", "ratio", "relative"))
    # The whole batch's input statistics (each shard alone is 1.5 off-center, the two together are not)
    (shape, mean, std), = got[0]["inputs"]
    wx, _ = whole_batch()
    assert shape == [WORLD * ROWS, 16] and mean == pytest.approx(wx.mean().item(), abs=1e-6)
    assert std == pytest.approx(wx.std(unbiased=False).item(), rel=1e-5)
    # Sharded or not, a parameter is judged whole: the std of fc1's full 64x16 weight
    assert got[0]["params"]["fc1.weight"][0] == pytest.approx(want["report"].trace.params["fc1.weight"].std, rel=1e-6)


@needs_fsdp2
def test_a_zero_layer_is_found_whole_and_no_shard_is_judged_by_its_own_fans(ranks):
    """FSDP2 shards every weight along dim 0 (fc3's 5 rows: 3 on rank 0, 2 on rank 1). The zero fc2 is
    NN101 on the whole weight, and the healthy layers, measured per shard, would have other stds and
    fans (a 3x32 shard's fan_out is 3, not 5): the findings, the shapes, stds and fans are the ones of
    the unsharded model, on every rank."""
    got = result(ranks, "fsdp_zero")
    want = reference_guard(faulty=False, zero=True)
    codes = {f["code"] for f in want["findings"]}
    assert ("NN101", "fc2") in {(f["code"], f["module"]) for f in want["findings"]} and "NN103" not in codes
    for rank in got:
        same_findings(rank["findings"], want["findings"], skip=("grad_norm", "ratio", "relative"))
        for name, rec in want["report"].trace.params.items():
            std, _, fan_in, fan_out, shape, all_zero = rank["params"][name]
            assert (shape, fan_in, fan_out, all_zero) == (list(rec.shape), rec.fan_in, rec.fan_out, rec.all_zero), name
            assert std == pytest.approx(rec.std, rel=1e-6, abs=1e-9), name
    assert got[0]["params"]["fc3.weight"][4] == [5, 32]


@pytest.mark.parametrize("wrap", WRAPS)
def test_one_report_on_rank_0_and_every_rank_stops(ranks, wrap):
    got = result(ranks, f"{wrap}_faulty")
    assert [r["outcome"] for r in got] == ["raised", "raised"]
    assert "NN202" in got[0]["message"] and "act1" in got[0]["message"]   # rank 0 prints the table
    assert "rank 0 prints" in got[1]["message"] and "NN202" not in got[1]["message"]
    assert got[0]["findings"] == got[1]["findings"]                         # one report, on every rank
    assert not got[1]["warnings"]


@pytest.mark.parametrize("wrap", WRAPS)
def test_the_callbacks_check_measures_the_gradients_of_the_whole_batch(ranks, wrap):
    from nnlint.config import Config
    from nnlint.integrations import TrainingCheck

    got = result(ranks, f"{wrap}_callback")
    check = TrainingCheck(on_error="warn", config=Config())
    model = build(faulty=True)
    check.start(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check.check_step(whole_batch(), loss_step)
    want = check.report
    for rank in got:
        same_findings(rank["findings"], findings(want))
        for name, norm in rank["grads"].items():
            assert norm == pytest.approx(want.trace.params[name].grad_norm, rel=1e-5), name
        assert rank["loss"] == pytest.approx(want.trace.loss, rel=1e-6)
    assert got[0]["warnings"] and not got[1]["warnings"]                    # rank 0 warns, once


@pytest.mark.parametrize("wrap", WRAPS)
def test_the_first_step_is_bit_identical_to_one_without_the_guard(ranks, wrap):
    got = result(ranks, f"{wrap}_untouched")
    for rank in got:
        assert rank["same"] == {"loss": True, "params": True, "optimizer": True, "rng": True}
    # the tanh layer's warnings (NN201, NN202) are printed once, by rank 0
    assert [len(r["warnings"]) for r in got] == [1, 0] and "NN201" in got[0]["warnings"][0]


@pytest.mark.parametrize("wrap", WRAPS)
def test_a_nan_in_one_ranks_shard_stops_every_rank_as_one_process_would(ranks, wrap):
    got = result(ranks, f"{wrap}_nan")
    want = reference_guard(faulty=False, nan=True)
    assert want["outcome"] == "raised"
    assert [r["outcome"] for r in got] == ["raised", "raised"]
    for rank in got:
        same_findings(rank["findings"], want["findings"], skip=("grad_norm", "ratio", "relative"))


@pytest.mark.parametrize("wrap", WRAPS)
def test_a_check_that_fails_on_one_rank_lets_every_rank_go_on(ranks, wrap):
    got = result(ranks, f"{wrap}_fails")
    assert [r["outcome"] for r in got] == ["trained", "trained"]
    assert any("on rank 1: RuntimeError: a bug in a rule on this rank" in w for w in got[0]["warnings"])
    assert not got[1]["warnings"]


@needs_fsdp2
def test_a_batch_one_rank_cannot_check_stops_no_rank_in_a_collective(ranks):
    got = result(ranks, "fsdp_unusable")
    assert [r["skipped"] for r in got] == [True, True]
    assert any("on rank 1: the batch is empty" in w for w in got[0]["warnings"])
    assert got[0]["findings"] == got[1]["findings"] and "NN202" in {f["code"] for f in got[0]["findings"]}


@needs_tp
def test_tensor_parallel_parameters_are_judged_on_their_full_shape(ranks):
    import nnlint
    from nnlint.config import Config

    got = result(ranks, "tp")
    x, _ = whole_batch()
    want = nnlint.check(build(faulty=True), x, config=Config())
    for rank in got:
        assert rank["shapes"]["fc1.weight"] == [64, 16] and rank["local"] == [32, 16]
        for name, (std, fan_in, grad_norm) in rank["params"].items():
            rec = want.trace.params[name]
            assert std == pytest.approx(rec.std, rel=1e-6) and fan_in == rec.fan_in, name
            assert grad_norm == pytest.approx(rec.grad_norm, rel=1e-5), name
        init = [f for f in rank["findings"] if f["code"] in ("NN101", "NN102", "NN103")]
        same_findings(init, [f for f in findings(want) if f["code"] in ("NN101", "NN102", "NN103")],
                      skip=("measured_gain", "gain", "output_std", "input_std"))


@pytest.mark.parametrize("wrap", WRAPS)
def test_findings_name_the_users_modules(ranks, wrap):
    for rank in result(ranks, f"{wrap}_names"):
        assert rank["modules"] == ["fc1"] and "fc1" in rank["trace"]
        assert not any(m.startswith("module") for m in rank["trace"]) and rank["type"] == "Net"


def test_two_shards_traces_reduce_into_the_whole_batchs_in_one_process():
    """nnlint.rankmerge without processes: the all-reduces are plain sums and maxima over the two shards'
    traces. With the loss of a training step, what the loss call saw (its targets' class counts, minima,
    maxima, the sample std, the entropy of the label frequencies) is the whole batch's too."""
    import nnlint
    from nnlint.config import Config
    from nnlint.rankmerge import FlatTrace

    def trace(batch):
        model = build(faulty=True)
        return nnlint.check(model, batch, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), config=Config(),
                            step=loss_step).trace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flats = [FlatTrace(t, sum(float(i.summary.numel) for i in t.inputs)) for t in map(trace, map(shard, range(WORLD)))]
        want = trace(whole_batch())
    assert flats[0].fingerprint == flats[1].fingerprint
    firsts = [f.first() for f in flats]
    sums = [sum(v) for v in zip(*(s for s, _ in firsts))]
    maxes = [max(v) for v in zip(*(m for _, m in firsts))]
    got = flats[0].rebuild(sums, maxes, [sum(v) for v in zip(*(f.second(sums) for f in flats))])

    (rec,), (ref,) = got.inputs, want.inputs
    assert rec.summary.shape == ref.summary.shape == (WORLD * ROWS, 16)
    assert (rec.summary.mean, rec.summary.std) == pytest.approx((ref.summary.mean, ref.summary.std), rel=1e-5, abs=1e-6)
    assert rec.channel_mean == pytest.approx(ref.channel_mean, abs=1e-5)
    (call,), (ref_call,) = got.objective.calls, want.objective.calls
    assert call.target.class_counts == ref_call.target.class_counts and sum(call.target.class_counts) == WORLD * ROWS
    assert call.target.shape == ref_call.target.shape and call.input.shape == ref_call.input.shape
    for side in ("input", "target"):
        a, b = getattr(call, side), getattr(ref_call, side)
        assert (a.min, a.max, a.mean, a.std) == pytest.approx((b.min, b.max, b.mean, b.std), rel=1e-5, abs=1e-6), side
    assert call.input.row_sum == pytest.approx(ref_call.input.row_sum, rel=1e-6)
    assert call.prior_entropy == pytest.approx(ref_call.prior_entropy, rel=1e-6)
    assert got.loss == pytest.approx(want.loss, rel=1e-6)
