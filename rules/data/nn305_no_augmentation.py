from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import as_location

# Recognised by class name, so that nnlint never imports torchvision, albumentations, kornia or timm.
# Every name starting with "Rand" (RandomResizedCrop, RandomApply, RandAugment, kornia's and
# albumentations' Random*) or containing "Augment"/"AugMix" (AutoAugment, TrivialAugmentWide,
# AugMixAugment) is random; these are the random ones without such a prefix.
RANDOM_STEPS = {
    "ColorJitter", "GaussianBlur", "ElasticTransform", "MixUp", "CutMix", "Mixup", "Cutout", "CoarseDropout",
    "GridDropout", "HorizontalFlip", "VerticalFlip", "Flip", "ShiftScaleRotate", "Affine", "Rotate",
    "SafeRotate", "HueSaturationValue", "RGBShift", "ChannelShuffle", "GaussNoise", "ISONoise", "MotionBlur",
    "MedianBlur", "Blur", "GridDistortion", "OpticalDistortion", "Perspective", "PiecewiseAffine", "CLAHE",
    "OneOf", "SomeOf", "TimeMasking", "FrequencyMasking",
}
# Steps that say the pipeline is for images (so flips and crops are the standard advice).
IMAGE_STEPS = {
    "ToTensor", "PILToTensor", "ToImage", "ToImageTensor", "ToDtype", "ConvertImageDtype", "Normalize",
    "Resize", "CenterCrop", "Grayscale", "Pad", "ToPILImage", "ToTensorV2", "SmallestMaxSize",
    "LongestMaxSize", "PadIfNeeded",
}
# Callables nnlint cannot see into: they may well augment, so the rule stays quiet.
OPAQUE_STEPS = {"function", "lambda", "partial", "Lambda", "builtin_function_or_method", "method", "LambdaTransform"}


def is_random_step(name: str) -> bool:
    return name.startswith("Rand") or "Augment" in name or "AugMix" in name or name in RANDOM_STEPS


class NoAugmentation(Rule):
    """## What it does
    Reads the training transform given to the check (`train_transform` in the model file, or the
    `transform` of a training Dataset) by the class names of its steps, and reports an image pipeline
    that contains no random augmentation: no random crop, flip, rotation, colour jitter,
    RandAugment/AutoAugment/TrivialAugment, erasing or mixing.

    A transform with a step nnlint cannot see into (a `lambda`, `transforms.Lambda`, a plain function)
    is not reported; neither is a pipeline that is not for images (no image step such as `ToTensor`,
    `Normalize`, `Resize`, and no 4-D image batch), where flips and crops are not the standard advice.

    ## Why is this bad?
    Without augmentation every epoch shows the network the same pixels, and a convolutional network
    memorizes them: on CIFAR-10 a ResNet-110 reaches 6.4% test error with random crops and flips and
    13.6% without (Huang et al., DenseNet, 2017, table 2). Random-resized crops and flips are
    the baseline of every ImageNet recipe; for small data sets, Cutout/RandomErasing and mixup add more.

    ## Options
    None.

    ## Fix safety
    No automatic fix: which augmentations keep the label (a flipped digit or text is another class) is
    a decision about the data.

    ## References
    - Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks" (2017).
    - Shorten & Khoshgoftaar, "A survey on Image Data Augmentation for Deep Learning" (2019).
    - DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout" (2017).
    """

    code = "NN305"
    name = "no-augmentation"
    severity = "info"
    summary = "the training image transform has no random augmentation"
    reads = frozenset({"transform"})
    about = "input"

    examples = (
        Faulty("""
            class Compose:          # stand-ins for torchvision.transforms: nnlint reads the class names
                def __init__(self, transforms):
                    self.transforms = transforms


            class ToTensor: ...
            class Normalize: ...
            class RandomHorizontalFlip: ...


            train_transform = Compose([ToTensor(), Normalize()])
            model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
            batch = torch.randn(16, 3, 32, 32)
            """, module=''),
        Healthy("""
            class Compose:          # stand-ins for torchvision.transforms: nnlint reads the class names
                def __init__(self, transforms):
                    self.transforms = transforms


            class ToTensor: ...
            class Normalize: ...
            class RandomHorizontalFlip: ...


            train_transform = Compose([RandomHorizontalFlip(), ToTensor(), Normalize()])
            model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
            batch = torch.randn(16, 3, 32, 32)
            """),
    )

    def check(self, trace):
        transform = trace.train_transform
        if not transform:
            return
        steps = list(transform.get("steps") or [])
        if any(is_random_step(s) for s in steps) or any(s in OPAQUE_STEPS for s in steps):
            return
        image_shape = next((list(rec.summary.shape) for rec in trace.inputs
                            if rec.is_float and len(rec.summary.shape) == 4), None)
        if image_shape is None and not any(s in IMAGE_STEPS for s in steps):
            return
        what = f"train_transform {transform.get('type', '?')}({', '.join(steps)})" if steps else "the training data"
        if transform.get("dataset"):
            what = f"the {transform['dataset']} dataset's transform" + (f" ({', '.join(steps)})" if steps else " (None)")
        yield self.diagnostic(
            "",
            f"{what} has no random augmentation: every epoch shows the model the same images; add "
            f"{suggestion(image_shape)} before ToTensor() (flips only where a mirrored image keeps its label)",
            location=as_location(transform.get("location")),
            evidence={"transform": transform.get("type"), "steps": steps, "dataset": transform.get("dataset"),
                      "image_shape": image_shape},
        )


def suggestion(image_shape) -> str:
    """Crops sized to the batch's images: padded random crops for small images (CIFAR's recipe),
    random-resized crops for large ones (ImageNet's)."""
    if image_shape is None:
        return "transforms.RandomResizedCrop(size) and transforms.RandomHorizontalFlip()"
    h = image_shape[-2]
    if h <= 64:
        return f"transforms.RandomCrop({h}, padding={max(h // 8, 1)}) and transforms.RandomHorizontalFlip()"
    return f"transforms.RandomResizedCrop({h}) and transforms.RandomHorizontalFlip()"
