"""Every BiLP extension point, as a pluggy hook.

How results combine: a ``firstresult`` hook stops at the first implementation that returns something other than
``None``; pluggy calls implementations from the last registered (and ``tryfirst``) to the first (and ``trylast``).
The built-in implementations are registered ``trylast``, so an adapter or a user plugin takes over such a hook by
returning a value, or declines a call by returning ``None``. The ``check_*`` hooks call every implementation; any
of them refuses by raising :class:`~bilp_plugin.errors.BiLPError` (one line: the bad value and the fix).

Where to implement them: in an adapter (one per upstream, found through the ``bilp.adapters`` entry-point group and
registered when a patched upstream of that name starts), or in a shared plugin exposed under the ``bilp`` group
(always registered). Every hook a run calls reaches the shared plugins and that run's adapter only, never another
adapter registered in the same process (:class:`bilp_plugin.manager.RunHooks`), so an adapter answers for its own
upstream without asking which upstream runs. Hooks that concern one upstream also pass its adapter name
(``upstream``; ``make_host``: ``name``) for the shared plugins; an implementation takes only the arguments it
uses (pluggy passes any subset of a hook's arguments), so an adapter leaves the name out.

This module imports only pluggy and typing at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

PROJECT = "bilp"
"""The pluggy project name: hook markers, and the ``bilp`` / ``bilp.adapters`` entry-point groups."""

hookspec = pluggy.HookspecMarker(PROJECT)

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch

    from bilp_plugin.config import BiLPConfig, ScoringConfig
    from bilp_plugin.hosting import Host, HostSettings
    from bilp_plugin.method.level1 import Subset
    from bilp_plugin.method.level2 import Selection, SelectionState
    from bilp_plugin.method.matchstep import MatchStep
    from bilp_plugin.method.realset import RealSet
    from bilp_plugin.method.scorefile import ScoreFile


# ------------------------------------------------------------------------------------------ the three card hooks
@hookspec(firstresult=True)
def score_samples(dataset: RealSet, config: ScoringConfig) -> ScoreFile | None:
    """Score every real training sample for level 1 (preemptive pruning); lower = more valuable.

    Called by: ``bilp score``; ``bilp demo``, ``bilp sweep`` and ``bilp ablate`` for their score file (without
    ``--scores``); and the runtime when a patched upstream runs with ``--bilp`` and a level-1 criterion that needs
    scores (``loss``, ``stratum``), once per process, before distillation.

    :param dataset: the real training set in the upstream's sample order (images, labels, name).
    :param config: how to score: a score file to import (``config.scores_path``), or the empirical-loss recipe
        (model, epochs, trials, mode, seed, device).
    :return: a :class:`~bilp_plugin.method.scorefile.ScoreFile` whose ``scores[i]`` belongs to ``dataset`` sample
        ``i``, or ``None`` to let the next implementation answer. Built-ins: the score-file importer (answers when
        ``config.scores_path`` is set) and the empirical-loss scorer (answers otherwise).
    """


@hookspec(firstresult=True)
def meta_grad(step: MatchStep, method: str) -> torch.Tensor | None:
    """Per-sample causal effect (ITE) of the real batch on the meta gradient of the synthetic data (level 2).

    Called by: the level-2 selector on a selection draw (every ``--bilp-interval`` draws of a class), right after
    the patched upstream draws a class's real batch for its matching step, before augmentation.

    :param step: what the upstream has in scope at that line: the real batch and its labels, the synthetic data
        of the matched class, the network of the current step, the upstream's ``args`` and adapter name.
    :param method: ``"exact"`` (factored exact ITE), ``"taylor"`` (Eq. 7, mean aggregate) or ``"taylor-sum"``
        (Eq. 7 with the paper's literal sum aggregate).
    :return: a 1-D tensor of ``||ITE(x)||`` for the ``B`` rows of ``step.real``, or ``None`` to defer. The
        upstream's adapter implements it with that upstream's own meta loss; the math is in
        :mod:`bilp_plugin.method.ite`. No built-in: an upstream whose adapter does not answer cannot run level 2.
    """


@hookspec(firstresult=True)
def filter_batch(norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection | None:
    """Decide which rows of a real batch to keep, from their ITE norms (level 2).

    Called by: the level-2 selector right after ``meta_grad``, on selection draws only (lazy reuse of the kept
    batch in between is the selector's).

    :param norms: ``||ITE(x)||`` of the ``B`` rows of the batch, 1-D, on any device.
    :param cls: the class of the batch.
    :param state: the selector's state across calls (running statistics, tracked thresholds); the
        implementation may update it.
    :param config: the run's configuration (``beta``, ``side``, ``rule``, ``eta``, ``stats``, ``min_keep``).
    :return: a :class:`~bilp_plugin.method.level2.Selection` whose ``keep`` is a boolean mask of length ``B``
        with at least one ``True``, or ``None`` to defer. Built-in: the rule ``config.rule`` names on running
        ITE statistics: ``relative`` (default) or the paper's literal Eq. 8 rule (``docs/method.md``).
    """


# ------------------------------------------------------------------------------- what an adapter tells the runtime
@hookspec
def check_script(upstream: str, script: str) -> None:
    """Refuse ``--bilp`` in a script that parses the flags but runs no BiLP, before the script does any work.

    Called by: the runtime while the upstream's parser parses ``--bilp``, when the hook patch added the flags with
    ``bilp.add_arguments(parser, upstream=NAME)``: a parser module shared by several scripts (IDC's
    ``argument.py``, imported by ``condense.py`` and by ``train.py``, ``test.py``, ...). Every implementation is
    called.

    :param upstream: the adapter name the patched parser passes.
    :param script: the file name of the running script (``sys.argv[0]``'s last part, e.g. ``"train.py"``).
    :return: nothing; raise :class:`~bilp_plugin.errors.BiLPError` to refuse (one line naming the scripts that
        run BiLP). Built-in: none.
    """


@hookspec
def check_run(upstream: str, args: Any, config: BiLPConfig) -> None:
    """Refuse a ``--bilp`` run that this upstream cannot do, before any work.

    Called by: the runtime as the patched script parses its flags, when its hook patch names the upstream
    (``bilp.add_arguments(parser, upstream=NAME)``: before the script loads data or makes a folder), and again at
    the first BiLP call (``prune_real``), before the run record is created, data is scored or the upstream trains.
    A script that parses its command line twice is checked at each parse with what that parse knows (DATM.py's
    first parse holds only ``--cfg`` and the ``bilp_*`` flags). Every implementation is called; it reads only
    ``args`` and ``config`` (and files they name).

    :param upstream: the adapter name the patched script passes (``"dc"``, ``"idc"``, ...).
    :param args: the upstream's parsed arguments (with the ``bilp_*`` flags).
    :param config: the run's :class:`~bilp_plugin.config.BiLPConfig`.
    :return: nothing; raise :class:`~bilp_plugin.errors.BiLPError` to refuse. Built-in: none.
    """


@hookspec
def check_level1(upstream: str, args: Any, config: BiLPConfig, subset: Subset) -> None:
    """Refuse a real subset that level 1 left and the upstream cannot distill from, before distillation starts.

    Called by: the runtime once per process, right after level 1 selected its subset (not when level 1 is off),
    before the subset is written to the run record. Every implementation is called.

    :param upstream: the adapter name.
    :param args: the upstream's parsed arguments.
    :param config: the run's configuration.
    :param subset: the dataset's labels, the kept indices and level 1's summary (``subset.kept_per_class``).
    :return: nothing; raise :class:`~bilp_plugin.errors.BiLPError` to refuse. Built-in: level 2 needs at least 2
        real rows per class.
    """


@hookspec
def after_level1(upstream: str, args: Any, config: BiLPConfig, subset: Subset) -> None:
    """Record or verify the real subset this process distills from, where another stage must see the same one.

    Called by: the runtime once per process, at the first experiment, after level 1 and ``check_level1`` (also
    when level 1 is off: then ``subset.kept`` is ``None``, the full set). Every implementation is called.

    :param upstream: the adapter name.
    :param args: the upstream's parsed arguments.
    :param config: the run's configuration.
    :param subset: the dataset's labels, the kept indices (``None``: the full set) and level 1's summary.
    :return: nothing; raise :class:`~bilp_plugin.errors.BiLPError` to refuse (e.g. MTT's ``distill.py`` given
        experts trained on another subset). Built-in: none.
    """


@hookspec(firstresult=True)
def restrict_real(upstream: str, real: Any, kept: np.ndarray) -> Any | None:
    """The upstream's own real-set structure restricted to the kept dataset indices (level 1).

    Called by: ``runtime.prune_real`` once per experiment when level 1 keeps a subset.

    :param upstream: the adapter name.
    :param real: what the patched script passes: per-class index lists (DC, IDM), tensors in dataset order (MTT),
        a dataset object (IDC), or a tuple of several.
    :param kept: the kept dataset indices, int64, ascending.
    :return: ``real`` restricted, in its own type, or ``None`` when this implementation does not know the type.
        Built-ins (``trylast``): lists of per-class index lists, tensors in dataset order, map-style datasets
        with ``targets`` (a :class:`~bilp_plugin.runtime.kept.KeptDataset` view), tuples of those.
    """


@hookspec(firstresult=True)
def real_files(upstream: str, real: Any) -> list[str] | None:
    """The files of the upstream's real training set, in dataset order, relative to the dataset's folder.

    Called by: the runtime at level 1 when a score file is used, to check that the file was made on the same files
    in the same order (a ``bilp score --dataset imagefolder`` file records their checksum); the check is skipped
    when no implementation answers.

    :param upstream: the adapter name.
    :param real: the structure the patched script passed to ``prune_real``.
    :return: one path per sample (``"n01440764/n01440764_10026.JPEG"``), or ``None`` when ``real`` is not read from
        files. Built-in (``trylast``): torchvision's ``DatasetFolder`` and its subclasses (IDC's and IDM's
        ``ImageFolder``): ``samples`` relative to ``root``.
    """


@hookspec(firstresult=True)
def real_images(upstream: str, real: Any, dataset: str | None) -> torch.Tensor | None:
    """All real training images of the upstream's real-set structure, normalised as the upstream feeds them.

    Called by: the runtime when level 1 scores on the fly (no ``--bilp-scores``) and the patched script passed no
    images itself. May load the whole set.

    :param upstream: the adapter name.
    :param real: the structure the patched script passed to ``prune_real``.
    :param dataset: the upstream's dataset name.
    :return: an ``N x C x H x W`` tensor in dataset order, or ``None`` (then level 1 asks for ``--bilp-scores``).
    """


@hookspec(firstresult=True)
def read_accuracy(upstream: str, line: str) -> dict[str, Any] | None:
    """The test accuracy that a line the upstream prints reports, for the run record (``summary.json``).

    Called by: the run record of a ``--bilp`` run, with every line the patched script prints on ``sys.stdout``
    from the record's creation to its summary (only when an implementation reaches the run).

    :param upstream: the adapter name.
    :param line: one printed line, without its newline.
    :return: ``{"mean": m, "std": s, "networks": n, "final": f}`` (accuracies as fractions in [0, 1]; ``std`` and
        ``networks`` may be ``None``; ``final``: the line sums up the whole run, not one evaluation), or ``None``
        when the line reports no accuracy (:mod:`bilp_plugin.runtime.printed` parses the upstreams' lines).
    """


@hookspec(firstresult=True)
def make_host(name: str, options: HostSettings, workdir: Path) -> Host | None:
    """A host on which ``bilp demo``, ``bilp sweep`` and ``bilp ablate`` run their distillation points.

    Called by: those commands once, before the first point, with ``--host NAME``: the call reaches adapter
    ``NAME`` (and the shared plugins).

    :param name: the host asked for (an adapter name: ``builtin``, ``dc``, ...).
    :param options: the command's distillation settings (method, dataset, ipc, iterations, evaluation, threads,
        ...).
    :param workdir: the command's output folder (a host may keep a patched copy of its upstream there).
    :return: a :class:`~bilp_plugin.hosting.Host` (an object with ``name`` and ``run(point, run_dir, scores)``),
        or ``None`` when this implementation offers none; raise :class:`~bilp_plugin.errors.BiLPError` when the
        host cannot run here (the message says why).
    """
