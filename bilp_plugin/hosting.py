"""What a host is, at the hook spec's layer: the distillation settings it runs with (:class:`HostSettings`), one
point it runs (:class:`Point`), and the :class:`Host` protocol an adapter's ``make_host`` hook returns. ``bilp
demo``, ``bilp sweep`` and ``bilp ablate`` (:mod:`bilp_plugin.lab`) run their points on such a host."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bilp_plugin.config import flag_args


S = TypeVar("S", bound="HostSettings")


@dataclass(frozen=True)
class HostSettings:
    """The distillation setting every point of a command shares (``bilp demo/sweep/ablate``'s host flags)."""

    host: str = "auto"
    method: str = "DM"
    dataset: str = "digits"
    data_root: str | None = None
    ipc: int = 1
    iterations: int = 100
    batch_real: int = 64
    width: int = 32
    model: str | None = None
    eval_models: int = 3
    eval_epochs: int = 150
    threads: int = 1
    device: str = "cpu"
    upstream_args: str | None = None

    @classmethod
    def from_options(cls: type[S], options: Any) -> S:
        """These settings (of this class or a subclass: a command's own) from a command's parsed options, an object
        with these attributes (absent ones default)."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls) if hasattr(options, f.name)})


@dataclass(frozen=True)
class Point:
    """One distillation run: level-1 criterion and alpha (stratum K for ``stratum``), level-2 beta and the ITE
    tail(s) it prunes (``side``), seed."""

    name: str
    criterion: str = "loss"
    alpha: float = 0.0
    beta: float = 0.0
    seed: int = 0
    stratum: int | None = None
    side: str = "both"

    def bilp_flags(self, scores: Path) -> list[str]:
        """The ``--bilp`` flags of this point (:func:`bilp_plugin.config.flag_args`); ``scores``: the level-1 score
        file, passed unless the criterion is ``random``."""
        return flag_args({"criterion": self.criterion, "alpha": self.alpha, "beta": self.beta, "seed": self.seed,
                          "side": self.side if self.beta and self.side != "both" else None,
                          "stratum": self.stratum, "scores": scores if self.criterion != "random" else None})


class Host(Protocol):
    """Runs points: the built-in host in this process, or a patched upstream launched per point."""

    name: str

    def run(self, point: Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        """Distill and evaluate ``point``; its record and ``result.json`` go to ``run_dir``. Returns the result."""
        ...
