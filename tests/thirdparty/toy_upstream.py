"""A toy distillation "upstream" with the three BiLP calls a hook patch inserts, for the third-party adapter test.

Distribution matching on random 1x8x8 images of 3 classes: a fresh random linear embedding per iteration, one
synthetic image per class, loss = squared distance of the mean real and mean synthetic embeddings. Its real set is
a :class:`ToyReal` (a structure no built-in ``restrict_real`` knows), and it passes no images to ``prune_real``,
so level 1 needs the adapter's ``restrict_real`` and ``real_images``.

    python toy_upstream.py --iterations 20 --bilp --bilp-alpha 0.5 --bilp-beta 0.2 --bilp-out DIR
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

import bilp_plugin.runtime as bilp

CLASSES, PER_CLASS, DIM = 3, 20, 8


@dataclass
class ToyReal:
    """The real set: images, labels, and each class's dataset indices."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: dict[int, list[int]]


def toy_real(seed: int = 0) -> ToyReal:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    images = torch.randn(len(labels), 1, 8, 8, generator=g) + labels.view(-1, 1, 1, 1).float()
    return ToyReal(images, labels, {c: torch.nonzero(labels == c).flatten().tolist() for c in range(CLASSES)})


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch-real", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    bilp.add_arguments(parser)
    args = parser.parse_args(argv)
    real = toy_real()
    real = bilp.prune_real(args, real, real.labels, upstream="toy", dataset="toy")
    g = torch.Generator().manual_seed(args.seed)
    syn = torch.stack([real.images[real.indices[c][0]] for c in range(CLASSES)]).requires_grad_(True)
    optimizer = torch.optim.SGD([syn], lr=0.1)
    for it in range(args.iterations):
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=g)))
            net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, DIM))
        loss = torch.zeros(())
        for c in range(CLASSES):
            pool = real.indices[c]
            batch = real.images[[pool[int(i)] for i in torch.randperm(len(pool), generator=g)[:args.batch_real]]]
            batch = bilp.select_batch(args, c, batch, net=net, syn=syn[c:c + 1], iteration=it)
            loss = loss + ((net(batch).detach().mean(0) - net(syn[c:c + 1]).mean(0)) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    record = bilp.finish(args)
    centroids = syn.detach().reshape(CLASSES, -1)
    full = toy_real()
    predicted = torch.cdist(full.images.reshape(len(full.labels), -1), centroids).argmin(1)
    accuracy = float((predicted == full.labels).float().mean())
    if record is not None:
        kept = sum(len(v) for v in real.indices.values())
        (record / "result.json").write_text(json.dumps({
            "accuracy": [accuracy], "accuracy_mean": accuracy, "accuracy_std": 0.0, "real_kept": kept,
            "real_total": len(full.labels), "distill_s": 0.0, "eval_s": 0.0, "method": "toy"}))
    return accuracy


if __name__ == "__main__":
    print(f"accuracy {main():.3f}")
