"""BiLP for snu-mllab/Efficient-Dataset-Condensation (IDC): ``condense.py`` and its multi-process ImageNet variant
``condense_mp.py``.

Level 1 restricts the real training set (a torchvision or IDC ``ImageFolder`` dataset; the runtime's built-in
``restrict_real`` wraps it) before IDC builds its class loader, so every loader variant (``ClassMemDataLoader``,
``ClassDataLoader``, ``condense_mp.py``'s ``ClassPartMemDataLoader``), the synthetic initialisation and the network
updates see the kept samples only. Level 2 takes the ITE of the class's real batch, as
``loader_real.class_sample(c)`` returns it, on IDC's gradient-matching loss with respect to the **stored**
synthetic tensor of the class (``synset.data`` rows of class ``c``; in ``condense_mp.py`` the rows of its
position ``real_to_idx[c]`` in the process's classes, passed as ``row``): multi-formation decoding belongs to
``h(S)``.

The meta loss of one class is IDC's ``matchloss`` with ``match="grad"``::

    sum over kept layers of dist(G_l, grad_l CE(net(norm(decode(S_c))), y_syn))

with ``G_l`` the batch-mean gradient of the real batch (per-sample gradients, IDC's ConvNet normalises per
sample) and ``dist`` IDC's ``mse`` / ``l1`` / ``l1_mean`` / ``cos``. Two deliberate differences to the step the
upstream then takes, both because the ITE must consume no random numbers: IDC's differentiable augmentation is
left out (the ITE is taken on the batch before augmentation; only its normalisation is applied), and when the
decoded synthetic set exceeds ``--batch_syn_max`` all decoded images are used instead of a random subsample.
"""

from __future__ import annotations

import importlib
import sys
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

UPSTREAM = "idc"
SCRIPTS = ("condense.py", "condense_mp.py")
"""The scripts whose hook lines run BiLP (the manifest's ``scripts``); every other script that imports IDC's
``argument.py`` (``train.py``, ``test.py``, ``pretrain.py``, ``coreset.py``) parses the flags but calls no BiLP."""
SEPARABLE_NETS = ("convnet", "resnet", "resnet_ap")
COUPLING_NORMS = ("batch", "sn")


# ------------------------------------------------------------------------------------------------ level 1
@hookimpl
def real_images(real: Any, dataset: str | None) -> torch.Tensor:
    """All training images of ``real`` (IDC's ``trainset``), normalised as IDC feeds them to its networks:
    what level 1 scores when no ``--bilp-scores`` file is given."""
    images = torch.stack([real[i][0] for i in range(len(real))])
    if images.dtype == torch.uint8:
        images = images.float() / 255
    return _normalize(str(dataset), images)


# ------------------------------------------------------------------------------------------------ level 2
def _normalize(dataset: str, images: torch.Tensor) -> torch.Tensor:
    """IDC's ``utils.Normalize`` with its ``MEANS``/``STDS`` (the deterministic part of its augmentation)."""
    data = importlib.import_module("data")  # the upstream's data.py (the upstream runs with its folder on sys.path)
    shape = (1, -1, 1, 1)
    mean = torch.tensor(data.MEANS[dataset], device=images.device).reshape(shape)
    std = torch.tensor(data.STDS[dataset], device=images.device).reshape(shape)
    return (images - mean) / std


def distance(args: Any) -> ite.Distance:
    """IDC's ``matchloss`` distance with its layer selection (``--metric``, ``--bias``, ``--fc``)."""
    return ite.idc_distance(args.metric, bool(args.bias), bool(args.fc))


def rows(step: MatchStep) -> slice:
    """The class's rows of ``synset.data``: its ``row`` in the process's classes (``condense_mp.py`` passes
    ``real_to_idx[c]``), else the class itself (``condense.py``)."""
    row = int(step.extra.get("row", step.cls))
    return slice(step.syn.ipc * row, step.syn.ipc * (row + 1))


def meta_loss(step: MatchStep) -> ite.SeparableLoss:
    """IDC's gradient-matching loss of ``step.cls`` as ``L(h(S), G)``, ``S`` the stored synthetic rows of the
    class (``step.syn`` is IDC's ``Synthesizer``)."""
    args, synset, net = step.args, step.syn, step.net
    rows_c = rows(step)
    real = _normalize(args.dataset, step.real)
    stats = ite.per_sample_grads(net, real, step.real_labels.to(real.device))
    target = synset.targets[rows_c]
    _, target_dec = synset.decode(synset.data[rows_c].detach(), target, bound=args.batch_syn_max)
    grads = ite.synthetic_grads(net, target_dec)

    def synthetic(stored: torch.Tensor) -> ite.Stats:
        decoded, _ = synset.decode(stored, target, bound=args.batch_syn_max)
        return grads(_normalize(args.dataset, decoded))

    return ite.SeparableLoss(stats, synthetic, distance(args))


def stored(step: MatchStep) -> torch.Tensor:
    """The leaf the ITE is taken with respect to: a copy of the class's rows of ``synset.data``."""
    return ite.leaf(step.syn.data[rows(step)])


@hookimpl
def meta_grad(step: MatchStep, method: str) -> torch.Tensor:
    """``||ITE(x)||`` of IDC's real batch on its gradient-matching loss, w.r.t. the stored synthetic rows."""
    return ite.ite(meta_loss(step), stored(step), method)


# ------------------------------------------------------------------------------------------------ checks
@hookimpl
def check_script(script: str) -> None:
    """IDC's ``argument.py`` adds the flags to every script that imports it: refuse ``--bilp`` in those that call
    no BiLP, instead of running them unpruned."""
    if script not in SCRIPTS:
        raise BiLPError(f"{script} parses IDC's --bilp flags (argument.py) but runs no BiLP: only "
                        f"{' and '.join(SCRIPTS)} do; drop --bilp here")


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    """Refuse, before any work, level-2 settings IDC cannot run (see the messages)."""
    if not config.level2:
        return
    if args.match != "grad":
        raise BiLPError(f"level 2 (--bilp-beta {config.beta}) supports IDC's gradient matching only, got --match "
                        f"{args.match}: use --match grad, or --bilp-beta 0")
    if args.metric not in ("mse", "l1", "l1_mean", "cos"):
        raise BiLPError(f"IDC's dist() does not implement --metric {args.metric}: use mse, l1, l1_mean or cos")
    if args.net_type not in SEPARABLE_NETS or args.norm_type in COUPLING_NORMS:
        raise BiLPError(f"level 2 needs a network that treats samples independently (per-sample gradients); "
                        f"--net_type {args.net_type} --norm_type {args.norm_type} couples the batch: use --net_type "
                        f"one of {', '.join(SEPARABLE_NETS)} with --norm_type instance or none, or --bilp-beta 0")
    if args.batch_real < 2:
        raise BiLPError(f"level 2 needs a real batch of at least 2 samples, got --batch_real {args.batch_real}")
    if config.min_keep > args.batch_real:
        raise BiLPError(f"--bilp-min-keep {config.min_keep} exceeds --batch_real {args.batch_real}: lower it")


@hookimpl
def check_level1(args: Any, subset: Subset) -> None:
    """Refuse a level-1 subset too small for IDC's initialisation or its in-memory class loader."""
    kept_per_class = subset.kept_per_class
    fewest = min(kept_per_class)
    cls = kept_per_class.index(fewest)
    init_need = args.ipc * max(1, args.factor) ** 2 if args.init == "mix" else args.ipc
    if args.init in ("mix", "random") and fewest < init_need:
        raise BiLPError(f"level 1 keeps {fewest} samples of class {cls}, but --init {args.init} with --ipc "
                        f"{args.ipc} --factor {args.factor} takes {init_need} per class: lower --bilp-alpha")
    # condense.py's ClassMemDataLoader (the default) samples --batch_real rows of a class; condense_mp.py's
    # ClassPartMemDataLoader samples min(64, class size) rows (compat patch), so any class size works there
    if args.load_memory and fewest < args.batch_real and Path(sys.argv[0]).name != "condense_mp.py":
        raise BiLPError(f"level 1 keeps {fewest} samples of class {cls}, fewer than --batch_real {args.batch_real}, "
                        "which IDC's ClassMemDataLoader cannot sample: lower --bilp-alpha or --batch_real")


# ------------------------------------------------------------------------------------------------ host
@hookimpl
def make_host(options: HostSettings, workdir: Path) -> Host:
    """``--host idc``: points run as launches of the patched IDC, evaluated by IDC (:mod:`bilp_adapters.idc.host`,
    imported only here: a patched upstream's process never needs the lab)."""
    from bilp_adapters.idc import host
    from bilp_plugin.lab.launched import refuse_unavailable

    refuse_unavailable(UPSTREAM, host.unavailable(options.dataset))
    return host.IdcHost(options, workdir)
