"""Level 2 selection: the keep rules on running ITE statistics, and lazy re-selection.

Two rules (``--bilp-rule``), each pruning both tails at rate ``beta`` (``side="both"``: ``beta/2`` each), or only
the small (``side="small"``) or only the large (``side="large"``) tail at rate ``beta``:

* ``relative`` (the default): each row's *relative ITE* ``v = log ||ITE(x)|| - median over the batch of
  log ||ITE||`` (so a class or a freshly drawn network that scales every ITE of a batch moves nothing); one pair of
  running thresholds per statistics key, initialised at the normal quantiles of the first batch (Eq. 8
  statistics of ``v``), then tracked as running quantiles: at every selection each threshold ``q`` moves by
  ``GAIN * sigma * (p - share of the batch's v below q)``, ``sigma`` the Eq. 8 running std of ``v`` and ``p`` its
  target tail probability. Rows with ``low < v < high`` are kept.
* ``paper``: the paper's literal rule: Eq. 8 running mean and variance of the norms themselves, and the keep
  interval ``z_{beta/2} < ||ITE(x)|| < z_{1-beta/2}`` of ``z ~ N(mu, sigma^2)``.

Why the default is not the paper's: docs/method.md ("Level 2 keep rate"). A batch is never emptied: when fewer than
``min_keep`` rows pass, the ``min_keep`` rows nearest to the running mean are kept.
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
    from bilp_plugin.manager import RunHooks

GLOBAL = -1
"""The statistics key of the global (all classes) running statistics."""
GAIN = 0.5
"""Step of the tracked thresholds of the ``relative`` rule, in running standard deviations of ``v``."""


@dataclass
class RunningStats:
    """Exponential moving mean and variance of a batch statistic (ITE norms, or relative ITEs), initialised from the
    first batch; unbiased batch variance (Eq. 8)."""

    eta: float
    mean: float | None = None
    var: float | None = None

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().double()
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
    """The selector's memory across calls, per key (``GLOBAL``, or a class with per-class statistics): running
    statistics, and the ``relative`` rule's tracked thresholds."""

    eta: float
    per_class: bool = False
    stats: dict[int, RunningStats] = field(default_factory=dict)
    tracked: dict[int, tuple[float, float]] = field(default_factory=dict)

    def key(self, cls: int) -> int:
        return cls if self.per_class else GLOBAL

    def for_class(self, cls: int) -> RunningStats:
        key = self.key(cls)
        if key not in self.stats:
            self.stats[key] = RunningStats(self.eta)
        return self.stats[key]


@dataclass
class Selection:
    """What ``filter_batch`` returns: the keep mask, and (optionally) the numbers behind it for the record: the
    statistics the rule used (``mu``, ``sigma``: of the norms for ``paper``; for ``relative``, ``mu`` is the
    batch's median ITE norm and ``sigma`` the running std of ``v``) and the keep interval in ITE-norm units."""

    keep: torch.Tensor
    mu: float = float("nan")
    sigma: float = float("nan")
    low: float = float("-inf")
    high: float = float("inf")


def tails(beta: float, side: str) -> tuple[float | None, float | None]:
    """The tail probabilities below the low and the high threshold (``None``: that side is not pruned)."""
    if side == "both":
        return beta / 2, 1 - beta / 2
    if side == "small":
        return beta, None
    if side == "large":
        return None, 1 - beta
    raise ValueError(f"side must be both, small or large, got {side!r}")


def thresholds(mu: float, sigma: float, beta: float, side: str) -> tuple[float, float]:
    """The keep interval ``(low, high)`` of ``N(mu, sigma^2)`` for pruning rate ``beta`` on ``side``."""
    low_p, high_p = tails(beta, side)
    if beta <= 0 or not sigma > 0:
        return float("-inf"), float("inf")
    dist = NormalDist(mu, sigma)
    return (dist.inv_cdf(low_p) if low_p is not None else float("-inf"),
            dist.inv_cdf(high_p) if high_p is not None else float("inf"))


def _inside(values: torch.Tensor, low: float, high: float, centre: float, min_keep: int) -> torch.Tensor:
    """``low < values < high``; never fewer than ``min_keep`` rows (those nearest to ``centre``)."""
    keep = (values > low) & (values < high)
    need = min(min_keep, values.numel())
    if int(keep.sum()) < need:
        nearest = torch.argsort((values - centre).abs(), stable=True)[:need]
        keep = torch.zeros_like(keep)
        keep[nearest] = True
    return keep


def quantile_keep(norms: torch.Tensor, mu: float, sigma: float, beta: float, side: str,
                  min_keep: int = 1) -> Selection:
    """The ``paper`` rule's mask: rows inside the normal quantiles; never fewer than ``min_keep`` (those nearest to
    ``mu``)."""
    low, high = thresholds(mu, sigma, beta, side)
    keep = _inside(norms.detach().double(), low, high, mu, min_keep)
    return Selection(keep=keep.to(norms.device), mu=mu, sigma=sigma, low=low, high=high)


def relative_ite(norms: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``v = log ||ITE|| - median log ||ITE||`` over the batch (float64; zero norms count as the smallest positive
    float), and that median."""
    logs = norms.detach().double().clamp_min(torch.finfo(torch.float64).tiny).log()
    centre = float(torch.quantile(logs, 0.5))
    return logs - centre, centre


def relative_keep(norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection:
    """The ``relative`` rule's mask (module docstring); updates ``state``."""
    v, centre = relative_ite(norms)
    stats = state.for_class(cls)
    stats.update(v)
    assert stats.mean is not None
    key, sigma = state.key(cls), stats.std
    low_p, high_p = tails(config.beta, config.side)
    if not sigma > 0:  # nothing tells the rows apart yet
        return Selection(keep=torch.ones(len(norms), dtype=torch.bool, device=norms.device), mu=math.exp(centre),
                         sigma=sigma)
    if key not in state.tracked:
        state.tracked[key] = thresholds(stats.mean, sigma, config.beta, config.side)
    else:
        low, high = state.tracked[key]
        if low_p is not None:
            low += GAIN * sigma * (low_p - float((v < low).double().mean()))
        if high_p is not None:
            high += GAIN * sigma * (high_p - float((v < high).double().mean()))
        state.tracked[key] = (low, high)
    low, high = state.tracked[key]
    keep = _inside(v, low, high, stats.mean, config.min_keep)
    return Selection(keep=keep.to(norms.device), mu=math.exp(centre), sigma=sigma,
                     low=math.exp(centre + low) if math.isfinite(low) else 0.0,
                     high=math.exp(centre + high) if math.isfinite(high) else float("inf"))


@hookimpl(trylast=True)
def filter_batch(norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection:
    """Built-in: update the running statistics with this batch, then apply ``config.rule``."""
    if config.rule == "relative":
        return relative_keep(norms, cls, state, config)
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

    def __init__(self, config: BiLPConfig, hooks: RunHooks,
                 on_select: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.hooks = hooks
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
        norms = self.hooks.meta_grad(step, self.config.ite)
        selection = self.hooks.filter_batch(norms, step.cls, self.state, self.config)
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
