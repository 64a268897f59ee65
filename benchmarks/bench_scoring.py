"""Empirical-loss scoring versus plain training of the same network: what does recording the losses cost?

    python benchmarks/bench_scoring.py                      # digits (ships with scikit-learn), seconds
    python benchmarks/bench_scoring.py --dataset mnist --data-root $BILP_DATA --subset 3000 --rounds 5

Protocol: one process, one dataset, one recipe (ConvNet-D of width W, SGD lr / momentum 0.9 / weight decay
5e-4, batch B, E epochs, no augmentation). "train" is a plain loop: the same seeded ConvNet, the same seeded
shuffling (tensor indexing, no DataLoader) and the mean cross-entropy. "score" is
``bilp_plugin.method.empirical_loss.empirical_loss`` in mode ``mean`` (per-sample losses from the training forward pass,
mapped back to dataset indices), progress bar off. Both first run one untimed warm-up epoch on one full and
one last-size batch (so every kernel shape exists); then they alternate for ``--rounds`` rounds, each timed
end to end (data to the device, training, results back). The ratio is the median over rounds of score / train
within a round (the two runs of a round are adjacent in time, so a busy shared machine slows both alike), on
wall-clock time and, beside it, on the process's CPU time (less sensitive to other processes). Goal: <= 1.05.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from bilp_plugin.config import ScoringConfig
from bilp_plugin.lab.datasets import DATASETS, load_dataset
from bilp_plugin.method.realset import RealSet
from bilp_plugin.method.empirical_loss import build_model, check_config, empirical_loss

GOAL = 1.05
Times = dict[str, list[tuple[float, float]]]


def plain_training(dataset: RealSet, config: ScoringConfig) -> None:
    """The reference: train the scorer's network the usual way, recording nothing."""
    device = check_config(config)
    model = build_model(dataset, config, config.seed, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    images, labels = dataset.images.to(device), dataset.labels.to(device)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(dataset), generator=generator).to(device)
        for index in order.split(config.batch_size):
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[RealSet, ScoringConfig], object], dataset: RealSet,
          config: ScoringConfig) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(dataset, config)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(dataset: RealSet, config: ScoringConfig, rounds: int) -> Times:
    """Warm both up, then alternate them for ``rounds`` rounds; (wall, cpu) seconds of every run."""
    warm_size = min(config.batch_size + len(dataset) % config.batch_size, len(dataset))
    warm = dataset.subset(torch.arange(warm_size))
    plain_training(warm, replace(config, epochs=1))
    empirical_loss(warm, replace(config, epochs=1))
    times: Times = {"train": [], "score": []}
    runs = [("train", plain_training), ("score", empirical_loss)]
    for r in range(rounds):
        for name, run in runs if r % 2 == 0 else runs[::-1]:
            wall, cpu = timed(run, dataset, config)
            times[name].append((wall, cpu))
            print(f"round {r + 1} {name:5s} {wall:8.2f} s wall {cpu:8.2f} s cpu "
                  f"({config.epochs * len(dataset) / wall:,.0f} samples/s)", flush=True)
    return times


def ratio(times: Times, clock: int) -> float:
    """Median over rounds of score / train on one clock (0 = wall, 1 = process CPU time)."""
    return statistics.median(s[clock] / t[clock] for s, t in zip(times["score"], times["train"], strict=True))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-root", default=None, help="torchvision layouts folder (default: $BILP_DATA)")
    p.add_argument("--subset", type=int, default=0, help="use the first N training samples (0 = all)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3, help="alternating timed rounds of train and score")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    dataset = load_dataset(args.dataset, args.data_root)
    if args.subset:
        dataset = dataset.subset(torch.arange(min(args.subset, len(dataset))))
    config = ScoringConfig(model_width=args.width, model_depth=args.depth, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                           progress=False)
    print(f"protocol: {dataset.name} n={len(dataset)} {tuple(dataset.images.shape[1:])}, "
          f"ConvNet-{args.depth} width {args.width}, {args.epochs} epochs, batch {args.batch_size}, "
          f"lr {args.lr}, seed {args.seed}, device {args.device}, torch threads {torch.get_num_threads()}, "
          f"{args.rounds} alternating rounds, ratio = median over rounds of score / train")
    times = measure(dataset, config, args.rounds)
    wall, cpu = ratio(times, 0), ratio(times, 1)
    print(f"score / train = {wall:.3f} wall, {cpu:.3f} cpu (goal <= {GOAL}: "
          f"{'met' if max(wall, cpu) <= GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
