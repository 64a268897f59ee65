"""What does level 2 remove? Plant known rows into real batches and see which ITE tail they land in.

    python benchmarks/planted_rows.py --dataset cifar10 --seeds 0,1,2 --out $OUT/planted
    python benchmarks/planted_rows.py --dataset mnist --seeds 0,1,2 --out $OUT/planted

Per seed, a ConvNet-3 (width ``--width``, instance norm, DatasetCondensation's) in two states: ``fresh`` (default
initialisation under the seed) and ``trained`` (``--train-steps`` SGD steps on real data, batch 256, lr 0.01,
momentum 0.9: the networks IDC and IDM match with are trained on real data; DM matches fresh networks only; DC's
inner loop trains on the synthetic set, between the two). For ``--classes`` classes ``c`` (seeded) and each kind of
planted row, one real batch of ``--batch`` rows of class ``c``: ``--planted`` planted rows, the rest drawn at
random from the class. Kinds:

* ``mislabeled``: images of other classes, labelled ``c``;
* ``noise``: Gaussian-noise images (N(0, 1) in the normalised pixel space);
* ``duplicate``: a copy of another row of the batch plus N(0, 0.05^2) pixel noise (only the copies count);
* ``hardest`` / ``easiest``: rows of ``c``'s largest-loss / smallest-loss decile (S1 / S10) of the level-1 score
  file ``--scores`` (default: the authors' ``<DATASET>_LossConverge.json`` in ``$BILP_SCORES_DIR``).

The synthetic row of ``c`` is one real image of ``c`` plus N(0, 0.1^2) (``--init real``); IDC and IDM decode it,
factor 2, into its four quadrants upsampled to full size (IDC's ``decode_zoom``, IDM's ``number_sign_augment``).
Scorers, each giving every row a number:

* the exact ITE norm (:func:`bilp_plugin.method.ite.ite_exact`) of each upstream's meta loss, built with the
  adapters' functions: ``dc`` (gradient matching, ``dis_metric ours``), ``dm`` (mean embedding), ``idc`` (gradient
  matching, IDC's default ``--metric l1``, through the decode), ``idm`` (mean embedding through the decode);
* cheap proxies: ``loss`` (the row's cross-entropy under the network), ``grad-norm`` (its per-sample gradient
  norm over all parameters), ``feature-dist`` (distance of its embedding from the batch's mean embedding).

Decisions: beta = ``--beta`` pruned from both tails, ``round(B beta / 2)`` rows each (the default ``relative``
rule in its running regime keeps the rows between two quantiles of the batch); chance: a planted row lands in each
tail with probability ``round(B beta / 2) / B``. Agreement of a proxy with an ITE: the share of the rows the ITE
drops that the proxy also drops (chance: the dropped share), and Spearman's rho of the two numbers over the rows.

Writes ``<out>/<dataset>-s<seed>.json`` per seed (counts, agreements, seconds; an existing file is kept, so a rerun
resumes). ``benchmarks/level2_doc.py`` pools them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method import ite, scorefile
from bilp_plugin.method.convnet import ConvNet
from bilp_plugin.method.realset import RealSet

KINDS = ("mislabeled", "noise", "duplicate", "hardest", "easiest")
LOSSES = ("dc", "dm", "idc", "idm")
PROXIES = ("loss", "grad-norm", "feature-dist")
STATES = ("fresh", "trained")
SCORE_FILES = {"cifar10": "CIFAR10_LossConverge.json", "mnist": "MNIST_LossConverge.json"}


def deciles(scores: torch.Tensor, labels: torch.Tensor, cls: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``cls``'s largest-loss (S1) and smallest-loss (S10) deciles."""
    pool = (labels == cls).nonzero().flatten()
    order = pool[torch.argsort(scores[pool], descending=True, stable=True)]
    tenth = len(order) // 10
    return order[:tenth], order[-tenth:]


def plant(data: RealSet, strata: tuple[torch.Tensor, torch.Tensor], cls: int, kind: str, batch: int, planted: int,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of class ``cls`` whose first ``planted`` rows are of ``kind``; all labelled ``cls``."""
    pool = (data.labels == cls).nonzero().flatten()
    base = data.images[pool[torch.randperm(len(pool), generator=gen)[:batch - planted]]]
    if kind == "mislabeled":
        other = (data.labels != cls).nonzero().flatten()
        rows = data.images[other[torch.randperm(len(other), generator=gen)[:planted]]]
    elif kind == "noise":
        rows = torch.randn(planted, *base.shape[1:], generator=gen)
    elif kind == "duplicate":
        rows = base[torch.randperm(len(base), generator=gen)[:planted]]
        rows = rows + 0.05 * torch.randn(rows.shape, generator=gen)
    else:
        source = strata[0] if kind == "hardest" else strata[1]
        rows = data.images[source[torch.randperm(len(source), generator=gen)[:planted]]]
    return torch.cat([rows, base]), torch.full((batch,), cls, dtype=torch.long)


def decode(syn: torch.Tensor) -> torch.Tensor:
    """Factor-2 multi-formation: each row's four quadrants, upsampled (bilinear) to full size."""
    h, w = syn.shape[-2:]
    quads = [syn[..., i * h // 2:(i + 1) * h // 2, j * w // 2:(j + 1) * w // 2] for i in range(2) for j in range(2)]
    return torch.cat([F.interpolate(q, size=(h, w), mode="bilinear", align_corners=False) for q in quads])


def ite_norms(net: ConvNet, real: torch.Tensor, labels: torch.Tensor, syn: torch.Tensor, cls: int,
              grads: ite.Stats, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exact ITE norm of every row under each upstream's meta loss."""
    one = torch.full((len(syn),), cls)
    four = torch.full((4 * len(syn),), cls)
    dc_h = ite.synthetic_grads(net, one)
    idc_h = ite.synthetic_grads(net, four)
    losses = {
        "dc": ite.SeparableLoss(grads, dc_h, ite.dc_distance("ours")),
        "dm": ite.SeparableLoss((embeddings,), lambda s: (net.embed(s).mean(0),), ite.MEAN_EMBEDDING),
        "idc": ite.SeparableLoss(grads, lambda s: idc_h(decode(s)), ite.idc_distance("l1")),
        "idm": ite.SeparableLoss((embeddings,), lambda s: (net.embed(decode(s)).mean(0),), ite.MEAN_EMBEDDING),
    }
    return {name: ite.ite_norms(ite.ite_exact(loss, ite.leaf(syn))) for name, loss in losses.items()}


def proxies(net: ConvNet, real: torch.Tensor, labels: torch.Tensor, grads: ite.Stats,
            embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        loss = F.cross_entropy(net(real), labels, reduction="none")
    grad_norm = torch.cat([g.reshape(len(real), -1) for g in grads], dim=1).norm(dim=1)
    return {"loss": loss, "grad-norm": grad_norm,
            "feature-dist": (embeddings - embeddings.mean(0, keepdim=True)).norm(dim=1)}


def tails(values: torch.Tensor, tail: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of the ``tail`` smallest and the ``tail`` largest rows."""
    order = torch.argsort(values, stable=True)
    small = torch.zeros(len(values), dtype=torch.bool)
    large = torch.zeros(len(values), dtype=torch.bool)
    small[order[:tail]] = True
    large[order[-tail:]] = True
    return small, large


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def train(net: ConvNet, data: RealSet, steps: int, gen: torch.Generator) -> ConvNet:
    """A copy of ``net`` after ``steps`` SGD steps on random real batches of 256."""
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(steps):
        idx = torch.randint(len(data.labels), (256,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(data.images[idx]), data.labels[idx]).backward()
        opt.step()
    return net


def accuracy(net: ConvNet, data: RealSet, gen: torch.Generator, rows: int = 2000) -> float:
    idx = torch.randperm(len(data.labels), generator=gen)[:rows]
    with torch.no_grad():
        return float((net(data.images[idx]).argmax(1) == data.labels[idx]).double().mean())


def empty_counts() -> dict[str, dict[str, dict[str, int]]]:
    return {s: {k: {"planted": 0, "small": 0, "large": 0} for k in KINDS} for s in (*LOSSES, *PROXIES)}


def measure(args: argparse.Namespace, data: RealSet, scores: torch.Tensor, seed: int,
            say: Callable[[str], None]) -> dict[str, Any]:
    """Counts and agreements of one seed, both network states."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fresh = ConvNet(data.channel, data.num_classes, width=args.width, im_size=data.im_size)
    tail = round(args.batch * args.beta / 2)
    classes = torch.randperm(data.num_classes, generator=gen)[:args.classes].tolist()
    out: dict[str, Any] = {"seed": seed, "classes": classes, "tail": tail, "states": {}}
    for state in STATES:
        start = time.process_time()
        net = fresh if state == "fresh" else train(fresh, data, args.train_steps, gen)
        counts = empty_counts()
        agree = {f"{p}|{s}": {"both": 0, "dropped": 0, "rho": []} for p in PROXIES for s in LOSSES}
        for cls in classes:
            strata = deciles(scores, data.labels, cls)
            for kind in KINDS:
                real, labels = plant(data, strata, cls, kind, args.batch, args.planted, gen)
                pool = (data.labels == cls).nonzero().flatten()
                syn = data.images[pool[torch.randint(len(pool), (1,), generator=gen)]]
                syn = syn + 0.1 * torch.randn(syn.shape, generator=gen)
                grads = ite.per_sample_grads(net, real, labels)
                with torch.no_grad():
                    embeddings = net.embed(real)
                numbers = {**ite_norms(net, real, labels, syn, cls, grads, embeddings),
                           **proxies(net, real, labels, grads, embeddings)}
                masks = {name: tails(values, tail) for name, values in numbers.items()}
                for name, (small, large) in masks.items():
                    c = counts[name][kind]
                    c["planted"] += args.planted
                    c["small"] += int(small[:args.planted].sum())
                    c["large"] += int(large[:args.planted].sum())
                for p in PROXIES:
                    for s in LOSSES:
                        a = agree[f"{p}|{s}"]
                        dropped = masks[s][0] | masks[s][1]
                        a["dropped"] += int(dropped.sum())
                        a["both"] += int((dropped & (masks[p][0] | masks[p][1])).sum())
                        a["rho"].append(spearman(numbers[p], numbers[s]))
        seconds = time.process_time() - start
        out["states"][state] = {"counts": counts, "agreement": agree, "cpu_s": seconds,
                                "accuracy": accuracy(net, data, gen)}
        say(f"planted: {args.dataset} seed {seed} {state}: {seconds:.0f} s CPU")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(SCORE_FILES), default="cifar10")
    p.add_argument("--data", default=os.environ.get("BILP_DATA"), help="data root (default: $BILP_DATA)")
    p.add_argument("--scores", default=None, help="level-1 score file (default: the authors' in $BILP_SCORES_DIR)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--classes", type=int, default=4, help="classes per seed")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--planted", type=int, default=8, help="planted rows per batch")
    p.add_argument("--beta", type=float, default=0.2)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=200)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not 0 < args.planted < args.batch or not 0 < args.beta < 1 or args.classes < 1:
        p.error("need 0 < --planted < --batch, 0 < --beta < 1 and --classes >= 1")
    scores_path = args.scores or os.path.join(os.environ.get("BILP_SCORES_DIR", ""), SCORE_FILES[args.dataset])
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, args.data)
    scores = torch.as_tensor(scorefile.load(scores_path).scores, dtype=torch.float64)
    if len(scores) != len(data.labels):
        p.error(f"{scores_path} holds {len(scores)} scores for {len(data.labels)} rows of {args.dataset}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        target = out / f"{args.dataset}-s{seed}.json"
        if target.exists():
            continue
        result = measure(args, data, scores, seed, lambda line: print(line, file=sys.stderr, flush=True))
        result["settings"] = {k: v for k, v in vars(args).items() if k != "out"} | {"scores": Path(scores_path).name,
                                                                                   "torch": torch.__version__}
        target.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
