"""Level 2 selection: running ITE statistics (Eq. 8), the normal-quantile keep rule, lazy re-selection.

The built-in ``filter_batch`` updates the running mean and variance of the ITE norms with the batch, then keeps
``x`` when ``z_{beta/2} < ||ITE(x)|| < z_{1-beta/2}`` for ``z ~ N(mu, sigma^2)`` (``side="both"``), or prunes
only one tail at rate ``beta`` (``small``: keep ``> z_beta``; ``large``: keep ``< z_{1-beta}``). A batch is never
emptied: when fewer than ``min_keep`` rows pass, the ``min_keep`` rows nearest to ``mu`` are kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import torch

from bilp_plugin import hookimpl
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.matchstep import MatchStep

if TYPE_CHECKING:
    from bilp_plugin.manager import PluginManager

GLOBAL = -1
"""The statistics key of the global (all classes) running statistics."""


@dataclass
class RunningStats:
    """Exponential moving mean and variance of ITE norms, initialised from the first batch (Eq. 8)."""

    eta: float
    mean: float | None = None
    var: float | None = None

    def update(self, norms: torch.Tensor) -> None:
        values = norms.detach().double()
        batch_mean = float(values.mean())
        batch_var = float(values.var(unbiased=True)) if values.numel() > 1 else 0.0
        if self.mean is None or self.var is None:
            self.mean, self.var = batch_mean, batch_var
        else:
            self.mean = (1 - self.eta) * self.mean + self.eta * batch_mean
            self.var = (1 - self.eta) * self.var + self.eta * batch_var

    @property
    def std(self) -> float:
        return math.sqrt(self.var) if self.var is not None else float("nan")


@dataclass
class SelectionState:
    """The selector's memory across calls: running statistics per key (``GLOBAL`` or a class)."""

    eta: float
    per_class: bool = False
    stats: dict[int, RunningStats] = field(default_factory=dict)

    def for_class(self, cls: int) -> RunningStats:
        key = cls if self.per_class else GLOBAL
        if key not in self.stats:
            self.stats[key] = RunningStats(self.eta)
        return self.stats[key]


@dataclass
class Selection:
    """What ``filter_batch`` returns: the keep mask, and (optionally) the numbers behind it for the record."""

    keep: torch.Tensor
    mu: float = float("nan")
    sigma: float = float("nan")
    low: float = float("-inf")
    high: float = float("inf")


def thresholds(mu: float, sigma: float, beta: float, side: str) -> tuple[float, float]:
    """The keep interval ``(low, high)`` of ``N(mu, sigma^2)`` for pruning rate ``beta`` on ``side``."""
    if beta <= 0 or not sigma > 0:
        return float("-inf"), float("inf")
    dist = NormalDist(mu, sigma)
    if side == "both":
        return dist.inv_cdf(beta / 2), dist.inv_cdf(1 - beta / 2)
    if side == "small":
        return dist.inv_cdf(beta), float("inf")
    if side == "large":
        return float("-inf"), dist.inv_cdf(1 - beta)
    raise ValueError(f"side must be both, small or large, got {side!r}")


def quantile_keep(norms: torch.Tensor, mu: float, sigma: float, beta: float, side: str,
                  min_keep: int = 1) -> Selection:
    """Keep rows inside the normal quantiles; never fewer than ``min_keep`` (those nearest to ``mu``)."""
    low, high = thresholds(mu, sigma, beta, side)
    values = norms.detach().double()
    keep = (values > low) & (values < high)
    need = min(min_keep, values.numel())
    if int(keep.sum()) < need:
        nearest = torch.argsort((values - mu).abs(), stable=True)[:need]
        keep = torch.zeros_like(keep)
        keep[nearest] = True
    return Selection(keep=keep.to(norms.device), mu=mu, sigma=sigma, low=low, high=high)


@hookimpl(trylast=True)
def filter_batch(norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection:
    """Built-in: update the running statistics with this batch, then apply the quantile rule."""
    stats = state.for_class(cls)
    stats.update(norms)
    assert stats.mean is not None
    return quantile_keep(norms, stats.mean, stats.std, config.beta, config.side, config.min_keep)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LazySelector:
    """Level 2 for one experiment: every ``config.interval``-th draw of a class computes the ITE norms
    (``meta_grad``) and the keep mask (``filter_batch``); the draws in between reuse that class's kept batch."""

    def __init__(self, config: BiLPConfig, manager: PluginManager,
                 on_select: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.manager = manager
        self.on_select = on_select
        self.state = SelectionState(config.eta, per_class=config.stats == "class")
        self.draws: dict[int, int] = {}
        self.kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, step: MatchStep) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept rows of ``step.real`` and ``step.real_labels`` (or the reused ones)."""
        draw = self.draws.get(step.cls, 0)
        self.draws[step.cls] = draw + 1
        if draw % self.config.interval and step.cls in self.kept:
            return self.kept[step.cls]
        device = step.real.device
        _sync(device)
        start = time.perf_counter()
        norms = self.manager.meta_grad(step, self.config.ite)
        selection = self.manager.filter_batch(norms, step.cls, self.state, self.config)
        _sync(device)
        elapsed = time.perf_counter() - start
        keep = _checked_mask(selection.keep, len(step.real)).to(device)
        kept = (step.real[keep], step.real_labels[keep])
        self.kept[step.cls] = kept
        if self.on_select is not None:
            self.on_select({
                "iteration": step.iteration, "class": step.cls, "draw": draw, "batch": len(step.real),
                "kept": int(keep.sum()), "mu": selection.mu, "sigma": selection.sigma, "low": selection.low,
                "high": selection.high, "ite_s": elapsed,
            })
        return kept


def _checked_mask(keep: torch.Tensor, batch: int) -> torch.Tensor:
    if keep.dtype != torch.bool or keep.shape != (batch,) or not bool(keep.any()):
        raise BiLPError(f"filter_batch must return a non-empty boolean mask of shape ({batch},), got dtype "
                        f"{keep.dtype}, shape {tuple(keep.shape)}, {int(keep.sum())} kept")
    return keep
