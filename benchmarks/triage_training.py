"""Short training runs behind TRIAGE.md's verdicts: each corpus model as built against the same model
with nnlint's suggested change for one finding (`nnlint.fix(..., select=[code])`, applied in memory;
the re-init its message names, by hand, where the fixer rolls its fix back), same init, same data,
same order, with Adam (1e-3) and with SGD (0.01, momentum 0.9). A third arm re-draws the layer the
finding names at its own std (a control: any re-draw moves a short run). A true finding shows as
nnlint's change beating both; a false alarm as no difference beyond the control's.

    python benchmarks/triage_training.py [--steps 150] [--only alexnet] [--optimizer adam|sgd] [--seeds 3]
        [--lrs 0.003,0.01,0.03]

Tasks (no download): images get a 10-class task of fixed random prototypes plus noise (standardized,
the corpus's resolution), trained with cross-entropy on the first 10 logits; Hugging Face masked LMs
reconstruct their input ids (the model's own loss with labels = input ids); detectors find two
rectangles per image, each filled with its class's colour over faint noise (the model's own loss dict,
summed); optical-flow models track a smooth random texture shifted by a whole number of pixels (the
L1 error of every refinement's flow, weighted 0.8 per step back from the last, as RAFT trains).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch                                 # noqa: E402
import torch.nn.functional as F              # noqa: E402

import corpus                                # noqa: E402

# (case, the finding whose fix is tried, why it is here)
RUNS = [
    ("torchvision/mobilenet_v3_small", "NN402", "SE pooled vector: false alarm?"),
    ("torchvision/alexnet", "NN401", "default init before ReLU: true (RULES.md calibration)?"),
    ("hf/albert", "NN401", "one small projection between two norms: false alarm?"),
    ("torchvision/squeezenet1_1", "NN203", "20-50% of un-normalized ReLU channels inactive at init: true?"),
    ("torchvision/retinanet_resnet50_fpn", "NN103", "detection head convs at std 0.01 with no norm (S, true but "
                                                    "mild?)"),
    ("torchvision/fasterrcnn_mobilenet_v3_large_320_fpn", "NN103", "R-CNN box head fc6/fc7 at PyTorch's default "
                                                                   "init before ReLU; the fix holds bbox_pred (N2)"),
    ("torchvision/ssdlite320_mobilenet_v3_large", "NN405", "stem conv at std 0.03 before a BatchNorm: relative "
                                                           "gradient 2449x the later layers' (Z3, true?)"),
    ("torchvision/raft_small", "NN403", "context encoder's residual blocks with no norm (norm_layer=None): "
                                        "variance x1.9 per block (U, true but mild?)"),
    ("timm/inception_v3", "NN103", "classifier drawn at std 0.1 (fan_in 2048, 3.9x the Xavier std): "
                                   "over-confident at init (N1, true but mild?)"),
]


def image_task(batch: torch.Tensor, steps: int, seed: int = 0):
    """Batches of 16 noisy class prototypes, the same sequence for every model."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(10, *batch.shape[1:], generator=g)
    for _ in range(steps):
        y = torch.randint(0, 10, (16,), generator=g)
        x = protos[y] + 0.5 * torch.randn(16, *batch.shape[1:], generator=g)
        yield (x - x.mean()) / x.std(), y


def image_loss(model, x, y):
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    return F.cross_entropy(logits[:, :10], y)


def text_task(batch: dict, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = batch["input_ids"]
    for _ in range(steps):
        x = torch.randint(5, 64, (8, ids.shape[1]), generator=g)
        yield {"input_ids": x, "attention_mask": torch.ones_like(x)}, x


def text_loss(model, x, y):
    return model(**x, labels=y).loss


def detection_task(batch, steps: int, seed: int = 0):
    """Images of the corpus's size, two rectangles each, a fixed colour per class (1-10)."""
    images, _ = batch
    size = images[0].shape[-1]
    g = torch.Generator().manual_seed(seed)
    palette = torch.rand(11, 3, generator=g)
    for _ in range(steps):
        xs, targets = [], []
        for _ in range(len(images)):
            image = 0.1 * torch.rand(3, size, size, generator=g)
            labels = torch.randint(1, 11, (2,), generator=g)
            xy = (torch.rand(2, 2, generator=g) * size * 0.5).floor()
            wh = (torch.rand(2, 2, generator=g) * size * 0.4 + size * 0.1).floor()
            boxes = torch.cat([xy, xy + wh], dim=1)
            for (x0, y0, x1, y1), label in zip(boxes.int().tolist(), labels.tolist()):
                image[:, y0:y1, x0:x1] = palette[label].view(3, 1, 1)
            xs.append(image)
            targets.append({"boxes": boxes, "labels": labels})
        yield (xs, targets), None


def detection_loss(model, x, y):
    return sum(model(*x).values())


def flow_task(batch, steps: int, seed: int = 0):
    """Pairs of frames: a smoothed noise texture and the same texture shifted by (dx, dy) in [-4, 4]."""
    n, _, h, w = batch["image1"].shape
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        texture = F.avg_pool2d(torch.randn(n, 3, h, w, generator=g), 5, stride=1, padding=2)
        texture = (texture - texture.mean()) / texture.std()
        shift = torch.randint(-4, 5, (n, 2), generator=g)
        moved = torch.stack([t.roll((int(dy), int(dx)), dims=(1, 2)) for t, (dx, dy) in zip(texture, shift.tolist())])
        flow = shift.float().view(n, 2, 1, 1).expand(n, 2, h, w)
        yield {**batch, "image1": texture, "image2": moved}, flow


def flow_loss(model, x, flow):
    predictions = model(**x)
    last = len(predictions) - 1
    return sum(0.8 ** (last - i) * (p - flow).abs().mean() for i, p in enumerate(predictions))


def _is_flow(batch) -> bool:
    return isinstance(batch, dict) and "image1" in batch and "image2" in batch


def _is_detection(batch) -> bool:
    return isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[1], list)


DEFAULT_LR = {"adam": 1e-3, "sgd": 0.01}


def train(model, task, loss_fn, optimizer: str, lr: float) -> list[float]:
    model.train()
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    losses = []
    for x, y in task:
        loss = loss_fn(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def apply_suggested(model, batch, code: str) -> list[str]:
    """nnlint.fix for one code; when it applies nothing (its re-check rolled the fix back), the
    re-init each finding's message suggests, applied by hand: the change a user would make."""
    import nnlint

    result = nnlint.fix(model, batch, select=[code])
    applied = [f"{o.diagnostic.code} {o.diagnostic.module} (nnlint.fix)" for o in result.applied]
    if applied:
        return applied
    for d in nnlint.check(model, batch, select=[code]).diagnostics:
        params = d.fix.params if d.fix is not None and d.fix.kind == "reinit" else None
        if params is None:
            continue
        layer = model.get_submodule(d.fix.target)
        spec = params.spec                       # a ReinitParams: the message's own init call
        with torch.no_grad():
            getattr(torch.nn.init, spec.initializer)(getattr(layer, params.param), **spec.runtime_kwargs())
            if getattr(layer, "bias", None) is not None:
                if params.bias is not None:
                    layer.bias.fill_(params.bias)
                elif params.zero_bias:
                    layer.bias.zero_()
        applied.append(f"{d.code} {d.fix.target} (by hand: {spec.initializer})")
    return applied


def redrawn(model, changed: list[str]):
    """The control: the changed layers' weights drawn again at their own std (a new random draw of
    the library's scale), so 'any re-draw moves the curve' is told apart from 'the fix helps'."""
    control = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name in changed:
            w = control.get_submodule(name).weight
            w.copy_(torch.randn(w.shape, generator=g) * w.std())
    return control


def compare(name: str, code: str, steps: int, optimizer: str, seeds: int, lrs: list[float]) -> str:
    """Each arm at each learning rate of `lrs`; with several, each arm is shown at its own best (the
    lowest mean of the last 20 steps over the seeds), as fix_training.py compares its arms: a model
    whose signal is held at init takes larger gradients, and a fixed rate favours one arm."""
    case = corpus.select(corpus.all_cases(), only=[name])[0]
    built, batch = case.build()
    fixed = copy.deepcopy(built)
    applied = apply_suggested(fixed, batch, code)
    control = redrawn(built, [a.split()[1] for a in applied])
    task_of, loss_fn = ((flow_task, flow_loss) if _is_flow(batch) else (text_task, text_loss) if isinstance(batch, dict)
                        else (detection_task, detection_loss) if _is_detection(batch) else (image_task, image_loss))
    lines = []
    for label, model in (("as built", built), ("re-drawn", control), ("nnlint's fix", fixed)):
        per_lr = {}
        for lr in lrs:
            runs = []
            for seed in range(seeds):
                torch.manual_seed(seed)
                runs.append(train(copy.deepcopy(model), task_of(batch, steps, seed), loss_fn, optimizer, lr))
            per_lr[lr] = runs
        best = min(lrs, key=lambda lr: _tail_mean(per_lr[lr]))
        others = "; ".join(f"lr {lr:g}: {_tail_mean(per_lr[lr]):.3f}" for lr in lrs if lr != best)
        lines.append(f"    {label:13s} lr {best:g}: {_summary(per_lr[best])}" + (f" [{others}]" if others else ""))
    return f"{name} [{code}, {optimizer}] changes: {applied or 'none'}\n" + "\n".join(lines)


def _tails(runs: list[list[float]]) -> list[float]:
    return [sum(r[-20:]) / len(r[-20:]) for r in runs]


def _tail_mean(runs: list[list[float]]) -> float:
    tails = _tails(runs)
    mean = sum(tails) / len(tails)
    return mean if mean == mean else float("inf")     # a NaN run ranks last


def _summary(runs: list[list[float]]) -> str:
    first = [r[0] for r in runs]
    tails = _tails(runs)
    return (f"loss first {sum(first) / len(first):.3f}, mean of the last 20 steps "
            + ", ".join(f"{t:.3f}" for t in tails) + f" (seeds; mean {sum(tails) / len(tails):.3f})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--only", action="append")
    p.add_argument("--optimizer", action="append", choices=["adam", "sgd"], help="default: both")
    p.add_argument("--seeds", type=int, default=3, help="data seeds per arm")
    p.add_argument("--lrs", help="learning rates, comma-separated (default: Adam 1e-3, SGD 0.01); with "
                                 "several, each arm is shown at its own best")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    for name, code, why in RUNS:
        if args.only and not any(o in name for o in args.only):
            continue
        print(f"--- {why}")
        for optimizer in args.optimizer or ["adam", "sgd"]:
            lrs = [float(v) for v in args.lrs.split(",")] if args.lrs else [DEFAULT_LR[optimizer]]
            print(compare(name, code, args.steps, optimizer, args.seeds, lrs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
