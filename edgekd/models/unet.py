"""Small U-Nets for binary segmentation: one logit per pixel at the input's resolution.

Only ops that quantize to full-integer int8 and have TensorFlow Lite Micro kernels: 3×3
convolutions (batch norm folds into them at export), ReLU, 2×2 max-pooling, nearest-neighbour ×2
upsampling (RESIZE_NEAREST_NEIGHBOR: no weights and no arithmetic, so int8 keeps it exact) and
channel concatenation of the skip connections. Nothing depends on the input size, so one model
takes any H × W divisible by 2^depth (every pooling halves the side and the decoder doubles it back);
with ``pad=True`` any H × W: zero-padded (PAD) to the next multiple inside the model, the logits
cropped back (STRIDED_SLICE), both with int8 and TFLite Micro kernels.

``num_classes`` is the number of output channels: 1 for binary masks (sigmoid per pixel).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.models.registry import MODELS


def _block(cin: int, cout: int, convs: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        conv = nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=not norm)
        layers += [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)] if norm else [conv, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder ``widths[0] … widths[-1]`` (a max-pool between levels), decoder back up with skips.

    ``convs``: 3×3 conv-BN-ReLU layers per level (2 in the original U-Net; 1 keeps a student's
    MACs down). Decoder level *i* upsamples level *i+1* by 2 (nearest), concatenates the encoder's
    level-*i* features and convolves back to ``widths[i]`` channels; a 1×1 conv gives the logits.
    ``norm=False`` drops batch norm (as TinyCNN: a CPU DDP run cannot share its batch statistics).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        widths: tuple[int, ...],
        convs: int = 2,
        norm: bool = True,
        pad: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError("a U-Net needs at least two levels")  # a factory's bug
        self.depth = len(widths) - 1  # number of poolings
        # pad: zero-pad the input's bottom and right to the next multiple of 2^depth (101×101 → 104×104
        # for two poolings) and crop the logits back, so masks keep the image's own size
        self.pad_input = pad
        self.encoder = nn.ModuleList(
            _block(cin, cout, convs, norm) for cin, cout in zip((in_channels, *widths[:-1]), widths)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # decoder[i] makes level i from (upsampled level i+1) ⊕ (encoder level i)
        self.decoder = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i], convs, norm) for i in range(self.depth)
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if self.pad_input:
            factor = 2**self.depth
            x = nn.functional.pad(x, (0, (-w) % factor, 0, (-h) % factor))  # zeros: the data's mean after normalization
        elif not (torch.jit.is_tracing() or torch.compiler.is_compiling()):  # export graphs stay check-free
            check_input_size(type(self).__name__, self.depth, (h, w))
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))  # (B, widths[level], H/2^level, W/2^level)
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(self.depth)):
            x = self.decoder[level](torch.cat([self.up(x), skips[level]], dim=1))
        x = self.head(x)  # (B, num_classes, H', W') logits
        return x[..., :h, :w] if self.pad_input else x  # the padded border cropped back: (B, num_classes, H, W)


def check_input_size(arch: str, depth: int, size: tuple[int, int]) -> None:
    """Every pooling halves the side and every upsampling doubles it: H and W must divide by 2^depth."""
    factor = 2**depth
    if size[0] % factor or size[1] % factor:
        fit = max(factor, (max(size) // factor) * factor)
        padded = f"{size[0] + (-size[0]) % factor}×{size[1] + (-size[1]) % factor}"
        raise EdgekdError(
            f"{arch} pools {depth} time(s): the input's height and width must be multiples of {factor}, "
            f"got {size[0]}×{size[1]} (set data.image_size={fit}, or kwargs {{pad: true}} to pad to {padded} "
            "inside the model and crop the masks back, or pick a shallower model)"
        )


def _unet(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    base: int,
    depth: int,
    convs: int,
    norm: bool,
    pad: bool = False,
) -> UNet:
    if base < 1 or depth < 1 or convs < 1:
        raise EdgekdError(f"{name}: base, depth and convs must be at least 1, got {base}, {depth}, {convs}")
    if not pad:
        check_input_size(name, depth, tuple(image_size))
    return UNet(num_classes, in_channels, tuple(base * 2**i for i in range(depth + 1)), convs, norm, pad)


def _segmentation(factory):
    """Mark a factory as a segmentation model (`edgekd models` shows it; tests pick models by it)."""
    factory.task = "segmentation"
    return factory


@MODELS.register("unet_small")
@_segmentation
def unet_small(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    base: int = 16,
    depth: int = 2,
    convs: int = 2,
    norm: bool = True,
    pad: bool = False,
) -> nn.Module:
    """U-Net segmentation teacher: 16-32-64 channels, two 3×3 convs per level, 2 poolings."""
    return _unet("unet_small", num_classes, in_channels, image_size, base, depth, convs, norm, pad)


@MODELS.register("unet_tiny")
@_segmentation
def unet_tiny(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    base: int = 4,
    depth: int = 2,
    convs: int = 1,
    norm: bool = True,
    pad: bool = False,
) -> nn.Module:
    """U-Net segmentation student for MCUs: 4-8-16 channels, one 3×3 conv per level, 2 poolings."""
    return _unet("unet_tiny", num_classes, in_channels, image_size, base, depth, convs, norm, pad)


@MODELS.register("test_unet")
@_segmentation
def test_unet(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    base: int = 3,
    depth: int = 2,
    convs: int = 1,
    norm: bool = True,
    pad: bool = False,
) -> nn.Module:
    """Tiny U-Net for tests: 3-6-12 channels, one 3×3 conv per level, 2 poolings (still learns shapes a little)."""
    return _unet("test_unet", num_classes, in_channels, image_size, base, depth, convs, norm, pad)
