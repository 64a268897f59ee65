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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from bilp_plugin.errors import BiLPError
from bilp_plugin.method.matchstep import MatchStep
from bilp_plugin.runtime import flags
from bilp_plugin.runtime.session import Session

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


def add_arguments(parser: argparse.ArgumentParser, upstream: str | None = None, level2: bool = True) -> None:
    """Add ``--bilp`` and the ``--bilp-*`` flags to the upstream's parser. Pass ``upstream`` where the parser is
    shared by scripts that run BiLP and scripts that do not (IDC's ``argument.py``): ``--bilp`` then refuses the
    latter as it is parsed (the ``check_script`` hook). ``level2=False``: the script has no real batch to prune
    (MTT), so ``--help`` hides the level-2 flags and says why (the adapter refuses them)."""
    flags.add_arguments(parser, upstream, level2)


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
    """Level 1: ``real`` restricted to the kept samples, in its own type (the ``restrict_real`` hook).

    Call it where the upstream has materialised its real set, once per experiment. ``labels`` is the label of
    every training sample in dataset order; ``images`` (optional) lets level 1 score on the fly when no
    ``--bilp-scores`` file is given (without it, the ``real_images`` hook is asked).
    Starts a new experiment for level 2. The run record is created here, once level 1 is accepted; a refusal
    before the first matching step removes it again.
    """
    if not enabled(args):
        return real
    current = session(args, upstream)
    first = current.record is None
    try:
        kept = current.start_experiment(labels, images, dataset, real)
        return real if kept is None else current.hooks.restrict_real(real, kept)
    except BiLPError:
        if first:  # refused before its first matching step: the run leaves no record
            current.discard()
        raise


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
        current.record.draw()  # the matching loop's clock (summary.json), with level 2 or without
        return real if labels is None else (real, labels)
    cls = int(cls)  # a numpy integer where the upstream iterates over an array of classes (IDC's condense_mp.py)
    step_labels = labels if labels is not None else torch.full((len(real),), cls, dtype=torch.long,
                                                               device=real.device)
    step = MatchStep(current.upstream, cls, real, step_labels, net, syn, args, iteration, extra)
    kept_real, kept_labels = current.select(step)
    return kept_real if labels is None else (kept_real, kept_labels)


def finish(args: Any) -> Path | None:
    """Write the summary of ``args``' run record now and return its folder (``None`` without ``--bilp``).

    A host that runs several experiments in one process calls it after each; otherwise it is written at exit.
    """
    if not enabled(args) or _session is None or _session.args is not args or _session.record is None:
        return None
    _session.record.close()
    return _session.record.dir
