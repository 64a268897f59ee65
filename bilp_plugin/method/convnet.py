"""ConvNet-D as in DatasetCondensation (``networks.ConvNet`` with relu, instance norm, average pooling).

Same modules in the same order, so parameter names (``features.0.weight``, ``features.1.weight``, ...,
``classifier.weight``) and the default-initialised values under one seed match the upstream's. Each of the
``depth`` blocks is conv 3x3 (padding 1; 3 on the first block of 1-channel input, as upstream, so 28x28 MNIST
maps like 32x32) -> ``GroupNorm(width, width)`` (instance norm with affine) -> ReLU -> 2x2 average pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from bilp_plugin.errors import BiLPError


class ConvNet(nn.Module):
    """ConvNet-``depth`` of ``width`` channels: ``channel`` x ``im_size`` inputs, ``num_classes`` outputs."""

    def __init__(self, channel: int, num_classes: int, width: int = 128, depth: int = 3,
                 im_size: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        height, wide = im_size
        for d in range(depth):
            padding = 3 if channel == 1 and d == 0 else 1
            layers += [nn.Conv2d(channel if d == 0 else width, width, kernel_size=3, padding=padding),
                       nn.GroupNorm(width, width, affine=True), nn.ReLU(inplace=True),
                       nn.AvgPool2d(kernel_size=2, stride=2)]
            height, wide = (height + 2 * padding - 2) // 2, (wide + 2 * padding - 2) // 2
            if min(height, wide) < 1:
                raise BiLPError(f"ConvNet depth {depth} pools {im_size[0]}x{im_size[1]} inputs to nothing: "
                                f"use depth <= {d}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * height * wide, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened features before the classifier."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
