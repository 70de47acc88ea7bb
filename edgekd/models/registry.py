"""The model registry. A factory takes (num_classes, in_channels, image_size, **kwargs)."""

from __future__ import annotations

from edgekd.registry import Registry

MODELS: Registry = Registry(
    "model",
    providers=[
        "edgekd.models.plain",
        "edgekd.models.resnet_cifar",
        "edgekd.models.mobilenet",
        "edgekd.models.mobilenetv3",
        "edgekd.models.tiny",
        "edgekd.models.unet",
        "edgekd.models.airbench",
    ],
)
