"""Map every warning/error of a zoo.py JSON to its cause in TRIAGE.md, and count models per cause.
A finding no cause matches is printed as UNTRIAGED: a new false alarm (or a new true finding) to triage.

    python benchmarks/triage_causes.py zoo.json [more.json ...]
"""
from __future__ import annotations

import json
import re
import sys
from collections import defaultdict

# (cause id in TRIAGE.md, code, a regex over "model module message") -- first match wins.
CAUSES = [
    ("A", "NN402", r"\((pool|mean)\) to"),
    ("B", "NN406", r"(convnext|swin_v2_b|swin_t|swin_s|swin_b|efficientnet|swin3d|maxvit)"),
    ("C", "NN301", r"\['boxes'\]|\['masks'\]|\['keypoints'\]"),
    ("C", "NN302", r"\['boxes'\]|\['masks'\]|\['keypoints'\]"),
    ("D", "NN002", r"(log|add|sort|sqrt|masked_fill_?)\(\)"),
    ("E", "NN002", r"(empty|full)\(\)"),
    ("F", "NN406", r"timm/(nf_|eca_nfnet|dm_nfnet)"),
    ("G1", "NN103", r"encoder_attn\.(k|v)_proj"),
    ("G2", "NN103", r"hf/cohere"),
    ("G3", "NN401", r"over 1 layer\(s\)"),
    ("H1", "NN203", r"timm/cspdarknet"),
    ("H2", "NN203", r"gelu"),
    ("I", "NN301", r"input_values"),
    ("I", "NN302", r"input_values"),
    ("J", "NN103", r"(maxvit_t|coatnext)"),
    ("J", "NN401", r"maxvit_t"),
    ("K", "NN404", r"hf/modernbert"),
    ("L", "NN406", r"mask_token"),
    ("M", "NN406", r"\.lab\.bias"),
    ("N1", "NN103", r"inception_v3 fc "),
    ("N2", "NN103", r"(alexnet|box_head\.fc[67])"),
    ("N2", "NN401", r"alexnet"),
    ("P", "NN202", r"(retinanet|fcos)"),
    ("Q", "NN406", r"torchvision/ssd"),
    ("R", "NN203", r"raft_large"),
    ("S", "NN103", r"(retinanet|fasterrcnn_resnet50_fpn_v2|maskrcnn_resnet50_fpn_v2).*(head|rpn)"),
    ("S", "NN401", r"(retinanet|fasterrcnn_resnet50_fpn_v2|maskrcnn_resnet50_fpn_v2|ssd300)"),
    ("T", "NN201", r"raft_small"),
    ("T", "NN202", r"raft_small"),
    ("U", "NN403", r"raft_small"),
    ("U", "NN203", r"(raft_small|ssd300)"),
    ("V", "NN406", r"mvit_v2"),
    ("W", "NN203", r"squeezenet"),
    ("Y5", "NN702", r"hf/rwkv .*attention_mask"),
    ("Z3", "NN405", r"ssdlite320"),
]


def cause_of(model: str, f: dict) -> str:
    text = f"{model} {f['module']} {f['message']}"
    for cause, code, pattern in CAUSES:
        if f["code"] == code and re.search(pattern, text):
            return cause
    return "UNTRIAGED"


def main(paths: list[str]) -> int:
    models: dict[str, set[str]] = defaultdict(set)
    findings: dict[str, int] = defaultdict(int)
    untriaged = []
    for path in paths:
        for row in json.load(open(path))["rows"]:
            for check in row["checks"]:
                for f in check["findings"]:
                    if f["severity"] not in ("error", "warning"):
                        continue
                    cause = cause_of(row["name"], f)
                    models[cause].add(row["name"])
                    findings[cause] += 1
                    if cause == "UNTRIAGED":
                        untriaged.append(f"{row['name']} [{check['mode']}] {f['code']} {f['module']}: {f['message'][:160]}")
    for cause in sorted(models, key=lambda c: (-len(models[c]), c)):
        print(f"{cause:10s} {len(models[cause]):3d} models {findings[cause]:4d} findings  "
              + ", ".join(sorted(m.split('/', 1)[1] for m in models[cause])))
    for line in sorted(set(untriaged)):
        print("UNTRIAGED", line)
    return 1 if untriaged else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
