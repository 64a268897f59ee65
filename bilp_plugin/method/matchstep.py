"""What a patched upstream hands to level 2 at the line where it draws a class's real batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class MatchStep:
    """One class's matching step, as the upstream has it in scope.

    ``syn`` is the synthetic data of the matched class in the form the adapter expects (DC: the rows of the
    optimised tensor; IDC: the synthetic-set object that decodes its stored tensor); ``net`` the network of the
    current step; ``args`` the upstream's parsed arguments.
    """

    upstream: str
    cls: int
    real: torch.Tensor
    real_labels: torch.Tensor
    net: torch.nn.Module
    syn: Any
    args: Any
    iteration: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
