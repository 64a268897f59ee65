"""BiLP hooks for VICO-UoE/DatasetCondensation: DC and DSA (``main.py``), DM (``main_DM.py``).

The meta losses ``meta_grad`` reproduces, per class ``c`` of one matching step:

* DC / DSA: ``utils.match_loss(gw_syn, gw_real, args)`` (``args.dis_metric``: ``ours``, ``mse``, ``cos``), where
  ``gw_real`` is the gradient of the mean cross-entropy of the real batch and ``gw_syn`` that of the class's
  synthetic rows, both w.r.t. every parameter of the step's network. ``G`` is the mean of the per-sample
  gradients (:func:`bilp_plugin.method.ite.per_sample_grads`), ``h(S)`` the synthetic gradient.
* DM: ``sum((embed(real).mean(0) - embed(syn).mean(0)) ** 2)``: ``G`` is the mean of the per-sample embeddings,
  ``h(S) = embed(S).mean(0)``.

The ITE is taken on the batch as ``get_images`` returns it, before DSA's augmentation (``docs/method.md``).
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

UPSTREAM = "dc"
METRICS = ("ours", "mse", "cos")


def is_dm(args: Any) -> bool:
    """``main_DM.py`` sets ``args.method = 'DM'``; ``main.py`` runs DC or DSA."""
    return getattr(args, "method", None) == "DM"


def _module(net: torch.nn.Module) -> torch.nn.Module:
    """The network itself (``get_network`` wraps it in ``DataParallel`` on several GPUs)."""
    return net.module if isinstance(net, torch.nn.DataParallel) else net


def _require_per_sample(net: torch.nn.Module) -> None:
    """Per-sample statistics are only defined when no layer mixes samples (BatchNorm in training mode)."""
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training:
            raise BiLPError(f"level 2 needs per-sample statistics, but BatchNorm layer {name!r} is in training "
                            "mode (it mixes the samples of a batch): use a model without BatchNorm, or "
                            "--bilp-beta 0")


def gradient_matching(step: MatchStep) -> ite.SeparableLoss:
    """DC / DSA: ``match_loss`` between the synthetic gradient and the mean per-sample real gradient."""
    net = _module(step.net)
    _require_per_sample(net)
    syn_labels = torch.full((len(step.syn),), step.cls, dtype=torch.long, device=step.syn.device)
    return ite.gradient_matching(net, step.real, step.real_labels, syn_labels, step.args.dis_metric)


def distribution_matching(step: MatchStep) -> ite.SeparableLoss:
    """DM: squared distance between the mean real and the mean synthetic embedding of ``net.embed``."""
    net: Any = _module(step.net)
    _require_per_sample(net)
    return ite.embedding_matching(net.embed, step.real)


@hookimpl
def meta_grad(step: MatchStep, method: str) -> torch.Tensor:
    """``||ITE(x)||`` of each row of the class's real batch on the meta gradient of its synthetic rows."""
    loss = distribution_matching(step) if is_dm(step.args) else gradient_matching(step)
    return ite.ite(loss, ite.leaf(step.syn), method)


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    """Refuse, before any work, settings this upstream cannot run with level 2."""
    if not config.level2:
        return
    if is_dm(args) and "BN" in args.model:
        raise BiLPError(f"level 2 (--bilp-beta {config.beta}) cannot run DM with --model {args.model}: its "
                        "BatchNorm path embeds all classes in one batch in training mode, so per-sample "
                        "embeddings are not defined; use --model ConvNet, or --bilp-beta 0")
    if not is_dm(args) and args.dis_metric not in METRICS:
        raise BiLPError(f"level 2 (--bilp-beta {config.beta}) supports --dis_metric {', '.join(METRICS)}; "
                        f"got {args.dis_metric!r}")
    if args.batch_real < 2:
        raise BiLPError(f"level 2 (--bilp-beta {config.beta}) needs --batch_real >= 2 to select within a "
                        f"batch, got {args.batch_real}")


@hookimpl
def check_level1(args: Any, config: BiLPConfig, subset: Subset) -> None:
    """Refuse a level-1 subset too small for ``--init real`` or DM's BatchNorm path, before any training."""
    fewest, cls = min((n, c) for c, n in enumerate(subset.kept_per_class))
    if args.init == "real" and fewest < args.ipc:
        raise BiLPError(f"--init real needs {args.ipc} real images per class (--ipc), but level 1 keeps only "
                        f"{fewest} of class {cls} (--bilp-alpha {config.alpha}): lower --bilp-alpha")
    if is_dm(args) and "BN" in args.model and fewest < args.batch_real:
        raise BiLPError(f"DM with --model {args.model} needs --batch_real {args.batch_real} real images per "
                        f"class, but level 1 keeps only {fewest} of class {cls} (--bilp-alpha {config.alpha}): "
                        "lower --bilp-alpha or --batch_real")


@hookimpl
def make_host(options: HostSettings, workdir: Path) -> Host:
    """``--host dc``: points run as launches of the patched DatasetCondensation (:mod:`bilp_adapters.dc.host`,
    imported only here: a patched upstream's process never needs the lab)."""
    from bilp_adapters.dc import host
    from bilp_plugin.lab.launched import refuse_unavailable

    refuse_unavailable(UPSTREAM, host.unavailable(options.dataset))
    return host.DcHost(options, workdir)
