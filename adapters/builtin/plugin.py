"""BiLP hooks for the built-in host (``bilp_plugin.lab.host``): its DC and DM meta losses, from ``ite`` pieces.

* ``--method DC``: ``ite.dc_distance(args.dis_metric)(gw_syn, gw_real)``, ``gw_real`` the gradient of the mean
  cross-entropy of the real batch and ``gw_syn`` that of the class's synthetic rows, w.r.t. every parameter of
  the step's network. ``G`` is the mean of the per-sample gradients, ``h(S)`` the synthetic gradient.
* ``--method DM``: ``ite.MEAN_EMBEDDING`` between the mean real and the mean synthetic ``net.embed``.

The host computes its meta loss with the same ``ite`` distances, so the ITE here is the ITE of the loss the
host optimises (tests/test_demo.py checks it against the leave-one-out definition).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bilp_plugin import hookimpl
from bilp_plugin.method import ite
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.level1 import Subset
from bilp_plugin.method.matchstep import MatchStep

if TYPE_CHECKING:
    from bilp_plugin.hosting import Host, HostSettings



def gradient_matching(step: MatchStep) -> ite.SeparableLoss:
    syn_labels = torch.full((len(step.syn),), step.cls, dtype=torch.long, device=step.syn.device)
    return ite.gradient_matching(step.net, step.real, step.real_labels, syn_labels, step.args.dis_metric)


def distribution_matching(step: MatchStep) -> ite.SeparableLoss:
    net: Any = step.net  # a ConvNet: ``embed`` is the feature extractor
    return ite.embedding_matching(net.embed, step.real)


@hookimpl
def meta_grad(step: MatchStep, method: str) -> torch.Tensor:
    """``||ITE(x)||`` of each row of the class's real batch on the meta gradient of its synthetic rows."""
    loss = distribution_matching(step) if step.args.method == "DM" else gradient_matching(step)
    return ite.ite(loss, ite.leaf(step.syn), method)


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    """Refuse settings the host cannot run, before any training."""
    if config.level2 and args.batch_real < 2:
        raise BiLPError(f"level 2 (--bilp-beta {config.beta}) needs --batch-real >= 2, got {args.batch_real}")


@hookimpl
def check_level1(args: Any, config: BiLPConfig, subset: Subset) -> None:
    """``--init real`` copies ``ipc`` real images per class: level 1 must keep that many."""
    fewest, cls = min((n, c) for c, n in enumerate(subset.kept_per_class))
    if args.init == "real" and fewest < args.ipc:
        raise BiLPError(f"--init real needs {args.ipc} real images per class (--ipc), but level 1 keeps only "
                        f"{fewest} of class {cls}: lower --bilp-alpha or --ipc")


@hookimpl
def make_host(options: HostSettings, workdir: Path) -> Host:
    """The built-in host: points run in this process (:class:`bilp_plugin.lab.hosts.BuiltinHost`)."""
    from bilp_plugin.lab.hosts import BuiltinHost

    return BuiltinHost(options)
