"""The three BiLP hooks.

Every hook is ``firstresult``: pluggy calls implementations from the last registered (and ``tryfirst``)
to the first (and ``trylast``), and stops at the first one that returns something other than ``None``.
The built-in implementations are registered ``trylast``, so any adapter or user plugin can take over a hook
by returning a value, or decline a call by returning ``None``.

Where to implement them: in an adapter (``adapters/<name>/plugin.py``, registered when a patched upstream of that
name starts), or in a third-party plugin exposed under the ``bilp`` entry-point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from bilp_plugin import PROJECT

if TYPE_CHECKING:
    import torch

    from bilp_plugin.adaptive import Selection, SelectionState
    from bilp_plugin.config import BiLPConfig, ScoringConfig
    from bilp_plugin.datasets import RealSet
    from bilp_plugin.scores import ScoreFile
    from bilp_plugin.step import MatchStep

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec(firstresult=True)
def score_samples(dataset: RealSet, config: ScoringConfig) -> ScoreFile | None:
    """Score every real training sample for level 1 (preemptive pruning); lower = more valuable.

    Called by: ``bilp score``, and by ``runtime.prune_real`` when a patched upstream runs with ``--bilp`` and a
    level-1 criterion that needs scores (``loss``, ``stratum``), once per experiment, before distillation.

    :param dataset: the real training set in the upstream's sample order (images, labels, name).
    :param config: how to score: a score file to import (``config.scores_path``), or the empirical-loss recipe
        (model, epochs, trials, mode, seed, device).
    :return: a :class:`~bilp_plugin.scores.ScoreFile` whose ``scores[i]`` belongs to ``dataset`` sample ``i``,
        or ``None`` to let the next implementation answer. Built-ins: the score-file importer (answers when
        ``config.scores_path`` is set) and the empirical-loss scorer (answers otherwise).
    """


@hookspec(firstresult=True)
def meta_grad(step: MatchStep, method: str) -> torch.Tensor | None:
    """Per-sample causal effect (ITE) of the real batch on the meta gradient of the synthetic data (level 2).

    Called by: ``runtime.select_batch`` on a selection iteration (every ``--bilp-interval`` draws of a class),
    right after the patched upstream draws a class's real batch for its matching step, before augmentation.

    :param step: what the upstream has in scope at that line: the real batch and its labels, the synthetic data
        of the matched class, the network of the current step, the upstream's ``args`` and method name.
    :param method: ``"exact"`` (factored exact ITE), ``"taylor"`` (Eq. 7, mean aggregate) or ``"taylor-sum"``
        (Eq. 7 with the paper's literal sum aggregate).
    :return: a 1-D tensor of ``||ITE(x)||`` for the ``B`` rows of ``step.real``, or ``None`` to defer. The
        upstream's adapter implements this with that upstream's own meta loss; the math is in
        :mod:`bilp_plugin.ite`. There is no built-in implementation: an upstream without an adapter that answers
        cannot run level 2.
    """


@hookspec(firstresult=True)
def filter_batch(norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection | None:
    """Decide which rows of a real batch to keep, from their ITE norms (level 2).

    Called by: ``runtime.select_batch`` right after ``meta_grad``, on selection iterations only (lazy reuse of the
    kept batch in between is done by the caller).

    :param norms: ``||ITE(x)||`` of the ``B`` rows of the batch, 1-D, on any device.
    :param cls: the class of the batch (for per-class statistics).
    :param state: the selector's state across calls (running statistics); the implementation may update it.
    :param config: the run's configuration (``beta``, ``side``, ``eta``, ``stats``, ``min_keep``).
    :return: a :class:`~bilp_plugin.adaptive.Selection` whose ``keep`` is a boolean mask of length ``B`` with at
        least one ``True``, or ``None`` to defer. Built-in: the paper's two-sided normal-quantile rule on running
        ITE statistics (Eq. 8).
    """
