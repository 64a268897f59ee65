"""BiLP hooks for IDM (uitrbn/IDM): its distribution-matching step as a separable meta loss, and its traps as checks.

IDM's per-class step (``IDM_cifar10.py`` l.284-331 at the pinned commit; the CIFAR-100 and Tiny scripts have the
same lines, shifted) draws ``img_real``, takes the class's rows of ``image_syn`` (the tensor the optimiser
updates), splits each into four upsampled quadrants with ``number_sign_augment`` under ``--aug`` (the partitioned
images), applies DSA to both sides with one shared seed, then minimises::

    sum((mean_i e(real_i) - mean_j e(syn_j)) ** 2)  +  ce_weight * syn_ce

with ``e = embed_channel_avg(., last=embed_last)`` of the network drawn from the model queue for this step, in
eval mode. The real batch enters only through ``G = mean_i e(real_i)``, so the loss is ``MEAN_EMBEDDING(h(S), G)``
with ``h(S) = mean_j e(number_sign_augment(S)_j)``; the synthetic-CE term does not see ``G`` and drops out of
every ITE. The loss is quadratic in ``G``: the Taylor ITE equals the exact ITE.

The ITE is taken where the hook sits, on the batch as drawn, before DSA: the augmentation's seed is read from
the wall clock after the hook, and BiLP draws from no shared clock or RNG (``docs/method.md``: before augmentation).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bilp_plugin import hookimpl
from bilp_plugin.method import ite, level1
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.matchstep import MatchStep

if TYPE_CHECKING:
    from bilp_plugin.hosting import Host, HostSettings

UPSTREAM = "idm"
TOPK_SCRIPT = "IDM_cifar10.py"
TOPK = 2560
"""``IDM_cifar10.py`` with ``--ipc 1`` and no ``--aug`` keeps the ``TOPK`` lowest-loss rows of each augmented real
batch (``torch.topk(k=2560)``, l.302-307): it needs ``TOPK`` rows, and its loss is no longer a mean of the batch."""


def decode(syn: torch.Tensor, aug: bool) -> torch.Tensor:
    """The synthetic images IDM embeds for the stored rows ``syn``: with ``--aug``, IDM's own
    ``number_sign_augment`` (each row's four quadrants, upsampled to full size), else the rows themselves."""
    if not aug:
        return syn
    # the upstream's own module: its folder is on sys.path in its process
    from dc_utils import number_sign_augment

    labels = torch.zeros(len(syn), dtype=torch.long, device=syn.device)
    return number_sign_augment(syn, labels)[0]


def embedding(step: MatchStep) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> embed(x, last=embed_last)`` with the step's own embedding function (the hook passes ``embed``,
    which is ``net.module.embed_channel_avg`` under DataParallel)."""
    embed = step.extra.get("embed") or step.net.embed_channel_avg
    last = step.args.embed_last
    return lambda x: embed(x, last=last)


def matching_loss(step: MatchStep) -> ite.SeparableLoss:
    """IDM's embedding-matching term as ``L(h(S), G)``: per-sample real embeddings, ``h`` the mean embedding of
    the decoded synthetic rows, the squared distance of the means."""
    embed = embedding(step)
    with torch.no_grad():
        real = embed(step.real).detach()

    def synthetic(syn: torch.Tensor) -> ite.Stats:
        return (embed(decode(syn, bool(step.args.aug))).mean(0),)

    return ite.SeparableLoss((real,), synthetic, ite.MEAN_EMBEDDING)


@hookimpl
def meta_grad(step: MatchStep, method: str) -> torch.Tensor:
    """``||ITE(x)||`` of the rows of ``step.real`` on the gradient of IDM's loss w.r.t. the class's rows of
    ``image_syn`` (``step.syn``)."""
    return ite.ite(matching_loss(step), ite.leaf(step.syn), method)


def _topk_filter(args: Any) -> bool:
    return Path(sys.argv[0]).name == TOPK_SCRIPT and args.ipc == 1 and not args.aug


def _needs(args: Any) -> list[tuple[int, str]]:
    """(rows, why) every class must keep after level 1."""
    needs = []
    if args.init == "real":
        needs.append((args.ipc, f"--init real copies --ipc {args.ipc} real images per class"))
    if _topk_filter(args):
        why = f"{TOPK_SCRIPT} with --ipc 1 and no --aug keeps the {TOPK} lowest-loss rows of each class's batch"
        needs.append((TOPK, why))
    return needs


@hookimpl
def check_level1(args: Any, config: BiLPConfig, subset: level1.Subset) -> None:
    """Refuse a level-1 subset that leaves a class fewer rows than IDM's settings take."""
    for rows, why in _needs(args):
        level1.require_rows(subset.kept_per_class, rows, why, config.alpha)


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    """Refuse, before any work, settings this upstream cannot run (see the messages)."""
    if _topk_filter(args) and args.batch_real < TOPK:
        raise BiLPError(f"{TOPK_SCRIPT} with --ipc 1 and no --aug keeps the {TOPK} lowest-loss rows of each real "
                        f"batch (torch.topk(k={TOPK})), so it needs --batch_real >= {TOPK}, got {args.batch_real}: "
                        "add --aug (the published ipc-1 setting) or raise --batch_real")
    if config.level2 and _topk_filter(args):
        raise BiLPError(f"level 2 cannot model {TOPK_SCRIPT}'s low-loss filter (--ipc 1 without --aug keeps the "
                        f"{TOPK} lowest-loss rows of each augmented batch, after the ITE is taken): add --aug "
                        "(the published setting) or use --bilp-beta 0")
    if config.level2 and args.batch_real < 2:
        raise BiLPError(f"level 2's ITE needs --batch_real >= 2, got {args.batch_real}")


@hookimpl
def make_host(options: HostSettings, workdir: Path) -> Host:
    """``--host idm``: points run as launches of the patched IDM with its own evaluation
    (:mod:`bilp_adapters.idm.host`, imported only here: a patched upstream's process never needs the lab)."""
    from bilp_adapters.idm import host
    from bilp_plugin.lab.launched import refuse_unavailable

    refuse_unavailable(UPSTREAM, host.unavailable(options.dataset))
    return host.IdmHost(options, workdir)
