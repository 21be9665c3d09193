"""torchvision: every classification model, plus detection, segmentation, video and optical flow.

All at torchvision's own init (`weights=None`, and `weights_backbone=None` where a builder would
otherwise download a backbone). Images are standardized at the smallest resolution a model accepts
(64x64 for most; models with fixed-size position embeddings or window partitions get what they need).
"""
from __future__ import annotations

from functools import partial

import torch
import torchvision
from torchvision import models as tvm

from corpus import Case, inputs, seeded

# Classification models that do not accept 64x64, with the input size they need and why.
SIZE = {
    "inception_v3": (299, "the aux head (training mode) pools 17x17 maps after Mixed_6e: 299x299"),
    "maxvit_t": (224, "window/grid partition of 7 at every stage: input divisible by 224"),
}
# Builder arguments that keep a model at its library's init but fit it to a small input.
KWARGS = {
    "vit_b_16": {"image_size": 64}, "vit_b_32": {"image_size": 64}, "vit_l_16": {"image_size": 64},
    "vit_l_32": {"image_size": 64}, "vit_h_14": {"image_size": 56},
}
# Families by name prefix, for --family.
FAMILIES = [
    ("alexnet", "alexnet"), ("convnext", "convnext"), ("densenet", "densenet"), ("efficientnet", "efficientnet"),
    ("googlenet", "inception"), ("inception", "inception"), ("maxvit", "maxvit"), ("mnasnet", "mobilenet"),
    ("mobilenet", "mobilenet"), ("regnet", "regnet"), ("resnext", "resnet"), ("wide_resnet", "resnet"),
    ("resnet", "resnet"), ("shufflenet", "shufflenet"), ("squeezenet", "squeezenet"), ("swin", "swin"),
    ("vgg", "vgg"), ("vit", "vit"),
]
FAST = {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"}   # small: CI stays fast
COMPILE = {"resnet18", "mobilenet_v3_small", "vit_b_32"}


def family_of(name: str) -> str:
    return next(f for prefix, f in FAMILIES if name.startswith(prefix))


def _size(name: str) -> int:
    return KWARGS.get(name, {}).get("image_size") or SIZE.get(name, (64, ""))[0]


def _classifier(name: str):
    size = _size(name)
    model = seeded(lambda: tvm.get_model(name, weights=None, **KWARGS.get(name, {})))
    return model, inputs.images(4, size)


def classification_cases() -> list[Case]:
    out = []
    for name in tvm.list_models(module=tvm):
        size, why = _size(name), SIZE.get(name, (0, ""))[1]
        note = why or (f"built with {KWARGS[name]}" if name in KWARGS else "")
        out.append(Case(f"torchvision/{name}", "torchvision", family_of(name), partial(_classifier, name),
                        note=f"4x3x{size}x{size} standardized" + (f"; {note}" if note else ""),
                        compile=name in COMPILE, fast=name in FAST))
    return out


# ----- detection --------------------------------------------------------------------------------

DETECTION_SMALL = {"min_size": 128, "max_size": 128}   # GeneralizedRCNNTransform resizes to 800 by default


def _targets(kind: str, n_images: int, size: int, classes: int) -> list[dict]:
    """Two boxes per image, with what each head's loss needs (masks, keypoints)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n_images):
        xy = torch.rand(2, 2, generator=g) * size * 0.5
        wh = torch.rand(2, 2, generator=g) * size * 0.4 + size * 0.1
        target = {"boxes": torch.cat([xy, xy + wh], dim=1), "labels": torch.randint(1, classes, (2,), generator=g)}
        if kind == "mask":
            target["masks"] = (torch.rand(2, size, size, generator=g) > 0.5).to(torch.uint8)
        if kind == "keypoint":
            kp = torch.rand(2, 17, 3, generator=g) * size
            kp[..., 2] = 1.0
            target["keypoints"] = kp
        out.append(target)
    return out


def _detector(name: str, kind: str, size: int, kwargs: dict):
    model = seeded(lambda: tvm.get_model(name, weights=None, weights_backbone=None, **kwargs))
    images = inputs.unit_images(2, size)
    return model, (images, _targets(kind, 2, size, kwargs.get("num_classes", 91)))


def detection_cases() -> list[Case]:
    out = []
    for name in tvm.list_models(module=tvm.detection):
        kind = "mask" if name.startswith("maskrcnn") else "keypoint" if name.startswith("keypointrcnn") else "box"
        if name.startswith("ssd"):
            size, kwargs = (300 if name.startswith("ssd300") else 320), {}
        else:
            size, kwargs = 128, dict(DETECTION_SMALL)
        if kind == "keypoint":
            kwargs["num_classes"] = 2
        out.append(Case(f"torchvision/{name}", "torchvision", "detection", partial(_detector, name, kind, size, kwargs),
                        note=f"2 images 3x{size}x{size} in [0, 1] (the model normalizes them) with {kind} targets: "
                             "model(images, targets) returns the loss dict in training mode" +
                             (f"; built with {kwargs}" if kwargs else ""), tags=("detection",)))
    return out


# ----- segmentation, video, optical flow ------------------------------------------------------------

def _segmenter(name: str):
    model = seeded(lambda: tvm.get_model(name, weights=None, weights_backbone=None))
    return model, inputs.images(4, 64)


def _video(name: str, frames: int, size: int):
    model = seeded(lambda: tvm.get_model(name, weights=None))
    return model, inputs.video(2, frames, size)


VIDEO_SIZE = {   # (frames, size): models with fixed-size pooling or position embeddings need more
    "s3d": (16, 224, "final AvgPool3d(2, 7, 7): 16x224x224"),
    "mvit_v1_b": (16, 224, "fixed 16x224x224 position embeddings"),
    "mvit_v2_s": (16, 224, "relative positions sized for 16x224x224"),
}


def _flow(name: str):
    model = seeded(lambda: tvm.get_model(name, weights=None))
    image1, image2 = inputs.images(2, 128, seed=1), inputs.images(2, 128, seed=2)
    return model, {"image1": image1, "image2": image2, "num_flow_updates": 4}


def other_cases() -> list[Case]:
    out = [Case(f"torchvision/{n}", "torchvision", "segmentation", partial(_segmenter, n),
                note="4x3x64x64 standardized; output dict out/aux", tags=("segmentation",))
           for n in tvm.list_models(module=tvm.segmentation)]
    for n in tvm.list_models(module=tvm.video):
        frames, size, why = VIDEO_SIZE.get(n, (8, 64, ""))
        out.append(Case(f"torchvision/{n}", "torchvision", "video", partial(_video, n, frames, size),
                        note=f"2x3x{frames}x{size}x{size} standardized clips" + (f"; {why}" if why else ""),
                        tags=("video",)))
    out += [Case(f"torchvision/{n}", "torchvision", "optical-flow", partial(_flow, n),
                 note="two 2x3x128x128 standardized frames (128: the correlation pyramid's minimum), num_flow_updates=4 (default 12)", tags=("flow",))
            for n in tvm.list_models(module=tvm.optical_flow)]
    return out


def cases() -> list[Case]:
    return classification_cases() + detection_cases() + other_cases()


VERSION = torchvision.__version__
