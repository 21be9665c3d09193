"""timm: 50+ architectures across families, `pretrained=False` (timm's own init).

Each entry is (model name, family, input size, builder kwargs). Sizes are the smallest the model
accepts: 64x64 where it adapts, the size its fixed position embeddings or window partitions need
otherwise. `img_size=` (timm's own argument) shrinks ViT-style models without changing their init.
"""
from __future__ import annotations

from functools import partial

import timm

from corpus import Case, inputs, seeded

MODELS = [
    # ResNet / ResNeXt / RegNet and relatives
    ("resnet18", "resnet", 64, {}), ("resnet50d", "resnet", 64, {}), ("resnext26ts", "resnet", 64, {}),
    ("seresnet18", "resnet", 64, {}), ("skresnet18", "resnet", 64, {}), ("resnest14d", "resnet", 64, {}),
    ("res2net50_14w_8s", "resnet", 64, {}), ("regnetx_002", "regnet", 64, {}), ("regnety_002", "regnet", 64, {}),
    ("regnetz_005", "regnet", 64, {}), ("tresnet_m", "resnet", 64, {}),
    # EfficientNet / MobileNet and other mobile nets
    ("efficientnet_b0", "efficientnet", 64, {}), ("tf_efficientnetv2_b0", "efficientnet", 64, {}),
    ("mobilenetv3_small_050", "mobilenet", 64, {}), ("mobilenetv3_large_100", "mobilenet", 64, {}),
    ("mobilenetv4_conv_small", "mobilenet", 64, {}), ("ghostnet_050", "mobilenet", 64, {}),
    ("rexnet_100", "mobilenet", 64, {}), ("hgnetv2_b0", "mobilenet", 64, {}), ("fastvit_t8", "mobilenet", 64, {}),
    # ConvNeXt and other modern convnets
    ("convnext_atto", "convnext", 64, {}), ("convnextv2_atto", "convnext", 64, {}),
    ("inception_next_atto", "convnext", 64, {}), ("mambaout_femto", "convnext", 64, {}),
    ("starnet_s050", "convnext", 64, {}), ("poolformer_s12", "metaformer", 64, {}),
    # ViT / DeiT / BEiT / Swin and transformers
    ("vit_tiny_patch16_224", "vit", 64, {"img_size": 64}), ("deit_tiny_patch16_224", "vit", 64, {"img_size": 64}),
    ("deit3_small_patch16_224", "vit", 64, {"img_size": 64}), ("beit_base_patch16_224", "vit", 64, {"img_size": 64}),
    ("eva02_tiny_patch14_224", "vit", 56, {"img_size": 56}), ("cait_xxs24_224", "vit", 64, {"img_size": 64}),
    ("xcit_nano_12_p16_224", "vit", 64, {"img_size": 64}), ("flexivit_small", "vit", 64, {"img_size": 64}),
    ("swin_tiny_patch4_window7_224", "swin", 224, {}), ("swinv2_cr_tiny_ns_224", "swin", 224, {}),
    ("pvt_v2_b0", "vit", 64, {}), ("levit_128s", "vit", 224, {}), ("tiny_vit_5m_224", "vit", 224, {}),
    ("efficientvit_b0", "vit", 64, {}), ("mobilevit_xxs", "vit", 64, {}), ("edgenext_xx_small", "vit", 64, {}),
    ("davit_tiny", "vit", 64, {}), ("hiera_tiny_224", "vit", 224, {}), ("gcvit_xxtiny", "vit", 224, {}),
    # MLP-Mixer and MLPs
    ("mixer_s16_224", "mlp-mixer", 64, {"img_size": 64}), ("resmlp_12_224", "mlp-mixer", 64, {"img_size": 64}),
    ("gmlp_ti16_224", "mlp-mixer", 64, {"img_size": 64}), ("sequencer2d_s", "mlp-mixer", 64, {}),
    # NFNet: no normalization, scaled weight standardization
    ("nf_resnet26", "nfnet", 64, {}), ("nf_regnet_b0", "nfnet", 64, {}), ("eca_nfnet_l0", "nfnet", 64, {}),
    ("dm_nfnet_f0", "nfnet", 64, {}),
    # CoAtNet / MaxViT
    ("coatnet_nano_rw_224", "coatnet", 224, {}), ("maxvit_nano_rw_256", "coatnet", 256, {}),
    ("coatnext_nano_rw_224", "coatnet", 224, {}),
    # RepVGG, CSP, DLA, HRNet, Inception, DenseNet, others
    ("repvgg_a0", "repvgg", 64, {}), ("cspresnet50", "csp", 64, {}), ("cspdarknet53", "csp", 64, {}),
    ("dla34", "dla", 64, {}), ("hrnet_w18_small", "hrnet", 64, {}), ("inception_v3", "inception", 299, {}),
    ("inception_resnet_v2", "inception", 299, {}), ("densenet121", "densenet", 64, {}),
    ("selecsls42b", "other-cnn", 64, {}), ("dpn48b", "other-cnn", 64, {}), ("ese_vovnet19b_dw", "other-cnn", 64, {}),
    ("botnet26t_256", "attention-cnn", 256, {}), ("halonet26t", "attention-cnn", 256, {}),
    ("lambda_resnet26t", "attention-cnn", 256, {}),
]
FAST = {"resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "nf_regnet_b0", "convnext_atto"}
COMPILE = {"resnet18", "vit_tiny_patch16_224"}


def _build(name: str, size: int, kwargs: dict):
    model = seeded(lambda: timm.create_model(name, pretrained=False, **kwargs))
    return model, inputs.images(4, size)


def cases() -> list[Case]:
    return [Case(f"timm/{name}", "timm", family, partial(_build, name, size, kwargs),
                 note=f"4x3x{size}x{size} standardized" + (f"; built with {kwargs}" if kwargs else ""),
                 compile=name in COMPILE, fast=name in FAST)
            for name, family, size, kwargs in MODELS]


VERSION = timm.__version__
