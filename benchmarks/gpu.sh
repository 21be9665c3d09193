#!/usr/bin/env bash
# The GPU check, prepared to run in a few minutes on one CUDA device (issue 17, part 4):
#   1. a check on CUDA leaves the CUDA RNG and the allocated memory as it found them, and reads the
#      statistics back once (one device-to-host copy per pass);
#   2. benchmarks/overhead.py --device cuda on ResNet-50 and GPT-2: time and peak-memory ratios.
# Usage: bash benchmarks/gpu.sh [output folder]    (needs torch with CUDA; torchvision/transformers
# make the models the real ones, else the local copies of benchmarks/models.py are used)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

python - <<'EOF' 2>&1 | tee "$OUT/invariants.txt"
import sys
import torch
import nnlint

assert torch.cuda.is_available(), "no CUDA device"
sys.path.insert(0, "benchmarks")
from models import build

for name in ("resnet50", "gpt2"):
    case = build(name, "cuda")
    torch.cuda.synchronize()
    rng = torch.cuda.get_rng_state_all()
    allocated = torch.cuda.memory_allocated()
    syncs = []
    real_tolist = torch.Tensor.tolist
    def counting(self, *a, **k):
        if self.is_cuda:
            syncs.append(tuple(self.shape))
        return real_tolist(self, *a, **k)
    torch.Tensor.tolist = counting
    try:
        report = nnlint.check(case.model, case.batch, progress=False, **case.check_arguments())
    finally:
        torch.Tensor.tolist = real_tolist
    torch.cuda.synchronize()
    same_rng = all(torch.equal(a, b) for a, b in zip(rng, torch.cuda.get_rng_state_all()))
    grown = torch.cuda.memory_allocated() - allocated
    print(f"{name}: {len(report.diagnostics)} findings "
          f"({', '.join(sorted({d.code for d in report.diagnostics})) or 'none'}), "
          f"CUDA RNG restored: {same_rng}, memory left allocated by the check: {grown} bytes, "
          f"device->host reads of statistics: {len(syncs)}, phases: "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report.phases.items()))
    assert same_rng, "the check changed the CUDA RNG"
    assert grown <= 0, "the check left memory allocated"
    del case, report
    torch.cuda.empty_cache()
EOF

python benchmarks/overhead.py --device cuda --models resnet50,gpt2 --repeats 5 --json "$OUT/overhead.json" \
    2>&1 | tee "$OUT/overhead.txt"
