"""The facade a patched upstream calls: three functions, each a no-op unless the run has ``--bilp``.

In an upstream script (the hook patch inserts exactly these calls)::

    import bilp_plugin.runtime as bilp
    bilp.add_arguments(parser)                                   # next to the upstream's argparse setup
    indices_class = bilp.prune_real(args, indices_class, labels_all, upstream="dc",
                                    dataset=args.dataset, images=images_all)      # level 1
    img_real = bilp.select_batch(args, c, img_real, net=net, syn=image_syn[c * ipc:(c + 1) * ipc])  # level 2

Without ``--bilp`` every call returns its input object untouched, consumes no random numbers and writes nothing.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable
from functools import singledispatch
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from bilp_plugin import config as config_mod
from bilp_plugin import preemptive
from bilp_plugin.adaptive import LazySelector
from bilp_plugin.config import BiLPConfig, ScoringConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say
from bilp_plugin.manager import PluginManager, get_manager
from bilp_plugin.record import RunRecord
from bilp_plugin.scores import ScoreFile
from bilp_plugin.step import MatchStep



F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Inside an upstream's process a bad input ends the run with one line and exit status 2, like argparse,
    instead of a traceback through the upstream's code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BiLPError as err:
            print(f"bilp: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--bilp`` and the ``--bilp-*`` flags to the upstream's parser."""
    config_mod.add_arguments(parser)


class Session:
    """One ``--bilp`` process: its config, adapter, run record, level-1 subset and level-2 selector."""

    def __init__(self, args: Any, upstream: str, manager: PluginManager | None = None) -> None:
        self.args = args
        self.upstream = upstream
        self.config: BiLPConfig = config_mod.from_args(args)
        self.manager = manager or get_manager()
        self.manager.register_adapter(upstream)
        self.adapter = importlib.import_module(f"bilp_adapters.{upstream}.plugin")
        self._check(None)
        self.record = RunRecord(self.config.out, self.config, upstream, args)
        self.kept: np.ndarray | None = None
        self.level1_summary: dict[str, Any] | None = None
        self.selector: LazySelector | None = None
        say(f"BiLP run record: {self.record.dir}")

    def _check(self, kept_per_class: list[int] | None) -> None:
        """Level 2's own need after level 1, then the adapter's checks of the upstream's arguments (before any
        training)."""
        if kept_per_class is not None and self.config.level2:
            preemptive.require_rows(kept_per_class, 2, "level 2's ITE needs at least 2 real rows per batch (or "
                                    "--bilp-beta 0 turns level 2 off)", self.config.alpha)
        check = getattr(self.adapter, "check", None)
        if check is not None:
            check(self.args, self.config, kept_per_class)

    def start_experiment(self, labels: Any, images: torch.Tensor | None, dataset: str | None,
                         real: Any = None) -> np.ndarray | None:
        """Level 1 for a new experiment: the kept indices (``None`` when level 1 is off); resets level 2.
        ``real`` (the upstream's own real set) lets the adapter's ``real_images`` supply images to score."""
        first = self.record.new_experiment() == 0
        self.selector = LazySelector(self.config, self.manager, self.record.selection)
        label_array = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
        if self.config.level1 and self.kept is None:
            self.kept = self._level1(label_array, images, dataset, real)
        if first:
            self._after_level1(label_array)
        return self.kept

    def _after_level1(self, labels: np.ndarray) -> None:
        """The adapter's ``after_level1(args, config, labels, kept, summary)``, once per process, right after
        level 1 (``kept`` and ``summary`` are ``None`` when level 1 is off): where a two-stage upstream records
        or verifies the subset its other stage uses."""
        after = getattr(self.adapter, "after_level1", None)
        if after is not None:
            after(self.args, self.config, labels, self.kept, self.level1_summary)

    def _level1(self, labels: np.ndarray, images: torch.Tensor | None, dataset: str | None,
                real: Any = None) -> np.ndarray:
        score_file = None if self.config.criterion == "random" else self._scores(labels, images, dataset, real)
        kept = preemptive.select(score_file.scores if score_file else None, labels, self.config.alpha,
                                 self.config.criterion, self.config.seed, self.config.stratum)
        summary = preemptive.summary(
            kept, labels, dataset=dataset, alpha=self.config.alpha, criterion=self.config.criterion,
            stratum=self.config.stratum, scores=score_file.path if score_file else None,
            scores_sha256=score_file.sha256 if score_file else None,
            scores_meta=score_file.meta if score_file else None)
        self._check(summary["kept_per_class"])
        self.record.level1(kept, summary)
        self.level1_summary = summary
        rule = (f"stratum S{self.config.stratum} of {config_mod.STRATA}" if self.config.criterion == "stratum"
                else f"{self.config.criterion}, alpha={self.config.alpha}")
        say(f"BiLP level 1: kept {len(kept)} of {len(labels)} real samples ({rule})")
        return kept

    def _scores(self, labels: np.ndarray, images: torch.Tensor | None, dataset: str | None,
                real: Any = None) -> ScoreFile:
        from bilp_plugin import scores as score_io
        from bilp_plugin.datasets import RealSet

        real_images = getattr(self.adapter, "real_images", None)
        if self.config.scores is None and images is None and real is not None and real_images is not None:
            images = real_images(real, dataset)  # only when scoring on the fly: it may load the whole set
        if self.config.scores is None and images is None:
            raise BiLPError("level 1 needs --bilp-scores FILE here (this upstream passes no images to score)")
        scoring = ScoringConfig(scores_path=self.config.scores, epochs=self.config.score_epochs,
                                seed=self.config.seed, device=str(images.device) if images is not None else "cpu")
        real = RealSet(name=str(dataset), images=images if images is not None else torch.empty(0),
                       labels=torch.as_tensor(labels), num_classes=int(labels.max()) + 1, mean=(), std=())
        score_file = self.manager.score_samples(real, scoring)
        score_io.check_matches(score_file, labels, dataset)
        if score_file.path is None:
            score_io.save(self.record.dir / "scores.npz", score_file)
        return score_file

    def select(self, step: MatchStep) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.selector is not None, "start_experiment creates the selector"
        self.record.draw()
        return self.selector(step)


_session: Session | None = None


def session(args: Any, upstream: str) -> Session:
    """The process's BiLP session, created on first use."""
    global _session
    if _session is None or _session.args is not args:
        _session = Session(args, upstream)
    return _session


def enabled(args: Any) -> bool:
    return bool(getattr(args, "bilp", False))


@user_errors
def prune_real(args: Any, real: Any, labels: Any, *, upstream: str, dataset: str | None = None,
               images: torch.Tensor | None = None) -> Any:
    """Level 1: ``real`` restricted to the kept samples, in its own type (see :func:`restrict`).

    Call it where the upstream has materialised its real set, once per experiment. ``labels`` is the label of
    every training sample in dataset order; ``images`` (optional) lets level 1 score on the fly when no
    ``--bilp-scores`` file is given (without it, the adapter's optional ``real_images(real, dataset)`` is asked).
    Starts a new experiment for level 2.
    """
    if not enabled(args):
        return real
    kept = session(args, upstream).start_experiment(labels, images, dataset, real)
    return real if kept is None else restrict(real, kept)


@user_errors
def select_batch(args: Any, cls: int, real: torch.Tensor, *, net: torch.nn.Module, syn: Any,
                 labels: torch.Tensor | None = None, iteration: int | None = None, **extra: Any) -> Any:
    """Level 2: the kept rows of a class's real batch (and of ``labels`` when given: then a pair is returned).

    Call it right after the upstream draws the batch for its matching step, before augmentation. Between
    selections (every ``--bilp-interval`` draws of the class) the last kept batch is returned instead.
    """
    if not enabled(args):
        return real if labels is None else (real, labels)
    if _session is None:
        raise BiLPError("select_batch was called before prune_real: the hook patch is incomplete")
    current = _session
    if not current.config.level2:
        return real if labels is None else (real, labels)
    step_labels = labels if labels is not None else torch.full((len(real),), cls, dtype=torch.long,
                                                               device=real.device)
    step = MatchStep(current.upstream, cls, real, step_labels, net, syn, args, iteration, extra)
    kept_real, kept_labels = current.select(step)
    return kept_real if labels is None else (kept_real, kept_labels)


def finish(args: Any) -> Path | None:
    """Write the summary of ``args``' run record now and return its folder (``None`` without ``--bilp``).

    A host that runs several experiments in one process calls it after each; otherwise it is written at exit.
    """
    if not enabled(args) or _session is None or _session.args is not args:
        return None
    _session.record.close()
    return _session.record.dir


@singledispatch
def restrict(real: Any, kept: np.ndarray) -> Any:
    """``real`` restricted to the dataset indices ``kept``. Adapters register their upstream's own types."""
    raise BiLPError(f"level 1 cannot restrict a {type(real).__name__}: register it with runtime.restrict")


@restrict.register
def _(real: list, kept: np.ndarray) -> list:
    """Per-class index lists (DC, IDM ``indices_class``): each keeps its kept members, in order."""
    return [np.asarray(idx, dtype=np.int64)[np.isin(idx, kept)].tolist() for idx in real]


@restrict.register
def _(real: torch.Tensor, kept: np.ndarray) -> torch.Tensor:
    """Rows of a tensor in dataset order (MTT ``images_all``, ``labels_all``)."""
    return real[torch.as_tensor(kept, device=real.device)]


@restrict.register
def _(real: tuple, kept: np.ndarray) -> tuple:
    """Several parallel containers at once."""
    return tuple(restrict(part, kept) for part in real)
