"""nnlint.guard under torch.distributed: DDP with the gloo backend, 2 processes on the CPU.

Each rank checks its own shard of the batch; the ranks' findings are merged (one all_gather), rank 0
reports once, and every rank raises or continues together: no rank is left waiting in a collective.
The ranks' payloads differ in size (only one rank finds the fault), and the README's bare environment
(CI's first pass) has no NumPy, which torch's all_gather_object would need: both are covered here.
"""
from __future__ import annotations

import gc
import json
import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed")

WORLD = 2


class Net(nn.Module):
    def __init__(self, dead_on_rank: int | None):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc1.bias)
        self.dead_on_rank = dead_on_rank

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def shard(rank: int, dead_on_rank: int | None) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(32, 16, generator=g)
    if dead_on_rank == rank:
        # A broken shard (all zeros, e.g. a failed decode): with zero biases no ReLU unit fires on it.
        # Only this rank can see the fault.
        x = torch.zeros_like(x)
    return x


def worker(rank: int, store: str, out_dir: str, dead_on_rank, use_guard: bool) -> None:
    import nnlint
    from nnlint.config import Config
    from nnlint.guard import UnhealthyModelError

    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=WORLD)
    result: dict = {"rank": rank}
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(Net(dead_on_rank))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        if use_guard:
            nnlint.guard(model, optimizer, config=Config(), select=["NN2"])
        x = shard(rank, dead_on_rank)
        y = torch.arange(32) % 4
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                result["outcome"] = "trained"
                result["loss"] = loss.item()
                result["weights"] = [p.detach().flatten().tolist() for p in model.parameters()]
            except UnhealthyModelError as exc:
                result["outcome"] = "raised"
                result["message"] = str(exc)
                result["ranks"] = sorted({r for d in exc.report.diagnostics for r in d.evidence.get("ranks", [])})
        result["warnings"] = [str(w.message) for w in caught if "nnlint" in str(w.message)]
        dist.barrier()   # would hang (and time out the test) if one rank were stuck in a collective
    finally:
        # DDP's reducer goes before the process group, as PyTorch's teardown expects: left to interpreter
        # exit, it was destroyed after the group about one run in ten, and gloo aborted the process.
        model = optimizer = None
        gc.collect()
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(tmp_path, dead_on_rank, use_guard=True) -> list[dict]:
    out = tmp_path / ("guarded" if use_guard else "plain")
    out.mkdir()
    ctx = mp.get_context("spawn")
    # a TCP store on a free port: no file:// path, so it also runs where file stores do not (Windows)
    store = f"tcp://127.0.0.1:{free_port()}"
    procs = [ctx.Process(target=worker, args=(r, store, str(out), dead_on_rank, use_guard))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("a rank hung: the ranks did not agree")
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_a_fault_seen_by_one_rank_stops_every_rank_and_rank_0_reports_it(tmp_path):
    results = run(tmp_path, dead_on_rank=1)
    assert [r["outcome"] for r in results] == ["raised", "raised"]
    assert "NN203" in results[0]["message"] and "act" in results[0]["message"]   # rank 0 prints the table
    assert "rank 0 prints" in results[1]["message"]
    assert results[0]["ranks"] == [1]          # the finding came from rank 1's shard
    assert "NN203 on act: rank 1" in results[0]["message"]


def test_a_healthy_run_continues_on_every_rank_and_its_first_step_is_unchanged(tmp_path):
    guarded = run(tmp_path, dead_on_rank=None)
    plain = run(tmp_path, dead_on_rank=None, use_guard=False)
    assert [r["outcome"] for r in guarded] == ["trained", "trained"]
    for g, p in zip(guarded, plain):
        assert g["loss"] == p["loss"] and g["weights"] == p["weights"]
    assert not guarded[1]["warnings"]
