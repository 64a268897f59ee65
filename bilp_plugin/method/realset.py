"""The real training set as the method sees it: normalised image tensors and labels, in the upstream's order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class RealSet:
    """A real image set: normalised float32 images ``N x C x H x W``, int64 labels, in torchvision order; for a
    folder dataset, ``files``: each sample's path relative to the dataset folder, in the same order."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    files: list[str] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channel(self) -> int:
        return int(self.images.shape[1])

    @property
    def im_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: Any) -> RealSet:
        """The samples at ``indices`` (in that order), same name, classes and normalisation."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        files = None if self.files is None else [self.files[i] for i in index.tolist()]
        return RealSet(self.name, self.images[index], self.labels[index], self.num_classes, self.mean,
                       self.std, files)
