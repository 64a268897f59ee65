"""Level 1 scores by empirical loss (``docs/method.md``, level 1): the default ``score_samples``.

Train the ConvNet on the full real set (SGD with momentum and weight decay, no augmentation) and score
each sample by its cross-entropy. ``mode="mean"``: the per-sample loss of the training forward pass itself,
averaged over epochs, so scoring costs what training costs. ``mode="final"``: the loss of the trained network
in eval mode. Both average over ``trials`` runs with seeds ``seed .. seed + trials - 1``. Each trial
initialises the network under its seed (inside ``torch.random.fork_rng``) and shuffles with its own
``torch.Generator``, so scores are reproducible and the caller's global RNG state is left untouched.
Lower score = more valuable; level 1 prunes the largest.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from bilp_plugin import hookimpl
from bilp_plugin.method import data_parallel, scorefile
from bilp_plugin.config import ScoringConfig, check_positive
from bilp_plugin.method.realset import RealSet
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say
from bilp_plugin.method.convnet import ConvNet

MODES = ("mean", "final")
POSTFIX_EVERY = 20  # batches between loss read-outs for the progress bar (each one syncs with the device)
ESTIMATE_AFTER = 10
"""Batches of the first epoch timed (after the first, which also warms up) before the estimated total is said."""
ESTIMATE_MIN_S = 60.0
"""Runs estimated to take less than this say nothing."""


def empirical_loss(dataset: RealSet, config: ScoringConfig) -> scorefile.ScoreFile:
    """Score every sample of ``dataset`` by its cross-entropy (module docstring); float64, dataset order."""
    device = check_config(config)
    start = time.perf_counter()
    images, labels = dataset.images.to(device), dataset.labels.to(device)
    total = config.trials * config.epochs * len(dataset)
    world = data_parallel.current()
    with tqdm(total=total, unit="sample", unit_scale=True, desc=f"scoring {dataset.name}",
              disable=not config.progress or not world.is_main) as bar:
        runs = [_trial(dataset, images, labels, config, config.seed + t, bar) for t in range(config.trials)]
    values = torch.stack(runs).mean(0).cpu().numpy()
    label_array = dataset.labels.cpu().numpy()
    meta = scorefile.dataset_meta(dataset.name, label_array, dataset.files)
    meta.update(model="convnet", width=config.model_width, depth=config.model_depth, epochs=config.epochs,
                trials=config.trials, mode=config.mode, seed=config.seed, lr=config.lr,
                momentum=config.momentum, weight_decay=config.weight_decay, batch_size=config.batch_size,
                elapsed_s=round(time.perf_counter() - start, 3), device=str(device))
    if world.active:
        meta.update(world_size=world.size)
    return scorefile.ScoreFile(values, label_array, meta)


@hookimpl(trylast=True)
def score_samples(dataset: RealSet, config: ScoringConfig) -> scorefile.ScoreFile:
    """Built-in, answers last: the empirical-loss scorer."""
    return empirical_loss(dataset, config)


def check_config(config: ScoringConfig) -> torch.device:
    """Validate the recipe; returns the device to train on."""
    if config.mode not in MODES:
        raise BiLPError(f"scoring mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    for name in ("epochs", "trials", "batch_size", "model_width", "model_depth"):
        if getattr(config, name) < 1:
            raise BiLPError(f"scoring {name} must be >= 1, got {getattr(config, name)}")
    check_positive("scoring lr", config.lr)
    try:
        device = torch.device(config.device)
    except RuntimeError:
        raise BiLPError(f"unknown device {config.device!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BiLPError(f"device {config.device!r} asked for but CUDA is not available: use --device cpu")
    return device


def build_model(dataset: RealSet, config: ScoringConfig, seed: int, device: torch.device) -> ConvNet:
    """The scoring ConvNet, initialised under ``seed`` without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvNet(dataset.channel, dataset.num_classes, config.model_width, config.model_depth,
                        dataset.im_size)
    return model.to(device)


def _trial(dataset: RealSet, images: torch.Tensor, labels: torch.Tensor, config: ScoringConfig, seed: int,
           bar: tqdm) -> torch.Tensor:
    """One training run; per-sample losses (float64, dataset order) as ``config.mode`` defines them."""
    model = build_model(dataset, config, seed, images.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(dataset), dtype=torch.float64, device=images.device)
    world = data_parallel.current()
    model.train()
    timed = 0.0
    for epoch in range(config.epochs):
        order = torch.randperm(len(dataset), generator=generator).to(images.device)
        for step, batch in enumerate(order.split(config.batch_size)):
            index = world.shard(batch)
            losses = F.cross_entropy(model(images[index]), labels[index], reduction="none")
            optimizer.zero_grad(set_to_none=True)
            if world.active:  # this rank's share of the mean over the whole batch, summed over ranks
                (losses.sum() / len(batch)).backward()
                world.sum_grads(model)
            else:
                losses.mean().backward()
            optimizer.step()
            if config.mode == "mean":
                total.index_add_(0, index, losses.detach().double())
            bar.update(len(batch))
            if seed == config.seed and epoch == 0 and step in (0, ESTIMATE_AFTER) and world.is_main:
                timed = _estimate(timed, step, len(dataset), config)
            if step % POSTFIX_EVERY == 0 and not bar.disable:
                bar.set_postfix(trial=seed - config.seed, epoch=epoch, loss=f"{losses.mean().item():.3f}")
    if config.mode == "final":
        return _eval_losses(model, images, labels, config.batch_size, world)
    return world.sum(total) / config.epochs


def _estimate(started: float, step: int, samples: int, config: ScoringConfig) -> float:
    """At the end of batch 0 returns the time; at the end of batch ``ESTIMATE_AFTER`` says, once, about how long
    the whole scoring takes at the pace of the batches in between (when that is at least ``ESTIMATE_MIN_S``)."""
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    now = time.perf_counter()
    if step == 0:
        return now
    total = (now - started) / (ESTIMATE_AFTER * config.batch_size) * samples * config.epochs * config.trials
    if total >= ESTIMATE_MIN_S:
        say(f"scoring {samples} samples x {config.epochs} epochs x {config.trials} trial(s) on {config.device}: "
            f"about {total / 60:.0f} min in all (from the pace of the first {ESTIMATE_AFTER + 1} batches)")
    return now


@torch.no_grad()
def _eval_losses(model: ConvNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 world: data_parallel.World) -> torch.Tensor:
    model.eval()
    if world.active:  # each rank evaluates its share; the others' entries stay 0 until the sum
        mine = world.shard(torch.arange(len(labels), device=labels.device))
        losses = torch.zeros(len(labels), dtype=torch.float64, device=labels.device)
        losses[mine] = _eval_losses(model, images[mine], labels[mine], batch_size, data_parallel.World())
        return world.sum(losses)
    return torch.cat([F.cross_entropy(model(x), y, reduction="none").double()
                      for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True)])
