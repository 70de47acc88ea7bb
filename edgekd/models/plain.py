"""The TAKD paper's plain CNN family (Mirzadeh et al. 2020): conv-BN-ReLU stacks with max-pooling,
then fully connected layers. ``plainN`` has N conv layers.

The even sizes are the paper's CIFAR-10 table; the odd sizes sit between them (one conv more than
the size below) so that teacher-assistant searches have a finer ladder. Spatial size comes from the
data: a max-pool is skipped once the feature map is down to 1 pixel, so 8×8 digits work as well as
32×32 CIFAR.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.layers import check_width
from edgekd.models.registry import MODELS

# "C<n>": 3×3 conv with n channels (+BN+ReLU); "M": 2×2 max-pool; "F<n>": hidden FC with n units.
PLAIN_LAYOUTS: dict[int, list[str]] = {
    2: ["C16", "M", "C16", "M"],
    3: ["C16", "C16", "M", "C32", "M"],
    4: ["C16", "C16", "M", "C32", "C32", "M"],
    5: ["C16", "C16", "M", "C32", "C32", "M", "C64", "M"],
    6: ["C16", "C16", "M", "C32", "C32", "M", "C64", "C64", "M"],
    7: ["C16", "C16", "M", "C32", "C32", "M", "C64", "C64", "M", "C128", "M", "F64"],
    8: ["C16", "C16", "M", "C32", "C32", "M", "C64", "C64", "M", "C128", "C128", "M", "F64"],
    9: ["C32", "C32", "M", "C64", "C64", "M", "C128", "C128", "M", "C256", "C256", "C256", "M", "F128"],
    10: ["C32", "C32", "M", "C64", "C64", "M", "C128", "C128", "M", "C256", "C256", "C256", "C256", "M", "F128"],
}


class PlainCNN(nn.Module):
    def __init__(
        self, layout: list[str], num_classes: int, in_channels: int, image_size: tuple[int, int], width: float = 1.0
    ):
        super().__init__()
        check_width(width)
        layers: list[nn.Module] = []
        c, (h, w) = in_channels, image_size
        for item in layout:
            if item == "M":
                if min(h, w) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    h, w = h // 2, w // 2
            elif item.startswith("C"):
                out = max(1, int(round(int(item[1:]) * width)))
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        fc: list[nn.Module] = [nn.Flatten()]
        units = c * h * w
        for item in layout:
            if item.startswith("F"):
                hidden = max(1, int(round(int(item[1:]) * width)))
                fc += [nn.Linear(units, hidden), nn.ReLU(inplace=True)]
                units = hidden
        fc.append(nn.Linear(units, num_classes))
        self.classifier = nn.Sequential(*fc)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, num_classes)


def _register_plain(depth: int) -> None:
    def factory(num_classes: int, in_channels: int, image_size: tuple[int, int], width: float = 1.0) -> nn.Module:
        return PlainCNN(PLAIN_LAYOUTS[depth], num_classes, in_channels, image_size, width)

    factory.__name__ = f"plain{depth}"
    factory.__doc__ = f"TAKD plain CNN with {depth} conv layers: {' '.join(PLAIN_LAYOUTS[depth])}"
    MODELS.register(f"plain{depth}")(factory)


for _depth in PLAIN_LAYOUTS:
    _register_plain(_depth)
