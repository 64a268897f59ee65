"""The built-in host: a compact DC (gradient matching) and DM (distribution matching) loop that drives BiLP
through exactly the facade a patched upstream calls (``runtime.prune_real``, ``runtime.select_batch``), with
the ``builtin`` adapter (``adapters/builtin/plugin.py``) answering ``meta_grad``. It is the reference host of the
tests and the default host of ``bilp demo`` and ``bilp sweep``; it is not a second implementation of BiLP::

    python -m bilp_plugin.lab.host --method DM --ipc 10 --iterations 100 \\
        --bilp --bilp-alpha 0.3 --bilp-beta 0.2 --bilp-scores scores.npz --bilp-out runs/dm

The loops follow DatasetCondensation's ``main.py`` / ``main_DM.py`` (ConvNet with instance norm, a fresh random
network per iteration, SGD on the synthetic images with momentum 0.5; DC's outer/inner loops; DM's mean
embeddings), without differentiable augmentation. The meta losses are :func:`ite.dc_distance` and
:data:`ite.MEAN_EMBEDDING`, the same functions the adapter takes the ITE of. Evaluation trains
``--eval-models`` fresh ConvNets on the synthetic set (SGD momentum 0.9, weight decay 5e-4, lr x0.1 halfway, no
augmentation) and tests them on the test split. With ``--bilp-out DIR`` the result goes to ``DIR/result.json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bilp_plugin import runtime
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method import ite
from bilp_plugin.method.convnet import ConvNet
from bilp_plugin.method.realset import RealSet
from bilp_plugin.runtime.record import write_result

UPSTREAM = "builtin"
METHODS = ("DC", "DM")
LR_IMG = {"DC": 0.1, "DM": 1.0}  # DatasetCondensation's defaults


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bilp_plugin.lab.host", description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=METHODS, default="DM")
    p.add_argument("--dataset", default="digits", help="digits, or a dataset read from --data-root")
    p.add_argument("--data-root", dest="data_root", default=None)
    p.add_argument("--ipc", type=int, default=10, help="synthetic images per class")
    p.add_argument("--iterations", type=int, default=100, help="updates of the synthetic set")
    p.add_argument("--batch-real", dest="batch_real", type=int, default=64, help="real batch per class")
    p.add_argument("--lr-img", dest="lr_img", type=float, default=None, help="default: DC 0.1, DM 1.0")
    p.add_argument("--lr-net", dest="lr_net", type=float, default=0.01)
    p.add_argument("--outer-loop", dest="outer_loop", type=int, default=None, help="DC: default min(ipc, 10)")
    p.add_argument("--inner-loop", dest="inner_loop", type=int, default=None,
                   help="DC: network epochs on the synthetic set between outer steps; default 1 at ipc 1, else 10")
    p.add_argument("--dis-metric", dest="dis_metric", choices=("ours", "mse", "cos"), default="ours")
    p.add_argument("--init", choices=("real", "noise"), default="real")
    p.add_argument("--width", type=int, default=32, help="ConvNet width")
    p.add_argument("--depth", type=int, default=3, help="ConvNet depth")
    p.add_argument("--batch-train", dest="batch_train", type=int, default=256)
    p.add_argument("--eval-models", dest="eval_models", type=int, default=2, help="fresh networks evaluated")
    p.add_argument("--eval-epochs", dest="eval_epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    runtime.add_arguments(p)
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parsed and checked host arguments (defaults filled in)."""
    args = build_parser().parse_args(list(argv))
    if args.ipc < 1 or args.iterations < 0 or args.batch_real < 1 or args.eval_models < 1:
        raise BiLPError(f"--ipc, --batch-real and --eval-models must be >= 1 and --iterations >= 0, got "
                        f"{args.ipc}, {args.batch_real}, {args.eval_models}, {args.iterations}")
    args.lr_img = LR_IMG[args.method] if args.lr_img is None else args.lr_img
    args.outer_loop = args.outer_loop or min(args.ipc, 10)
    args.inner_loop = args.inner_loop or (1 if args.ipc == 1 else 10)
    return args


@dataclass
class Distilled:
    images: torch.Tensor
    labels: torch.Tensor
    real_kept: int
    seconds: float


def network(real: RealSet, args: argparse.Namespace, seed: int) -> ConvNet:
    """A ConvNet initialised under ``seed`` (the caller's global RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ConvNet(real.channel, real.num_classes, args.width, args.depth, real.im_size)
    return net.to(args.device)


class Sampler:
    """DC's ``get_images(c, n)``: ``n`` random members of class ``c`` among the kept indices (seeded)."""

    def __init__(self, images: torch.Tensor, indices_class: list[list[int]], generator: torch.Generator) -> None:
        self.images = images
        self.indices = [torch.as_tensor(idx, dtype=torch.long) for idx in indices_class]
        self.generator = generator

    def __call__(self, c: int, n: int) -> torch.Tensor:
        idx = self.indices[c]
        return self.images[idx[torch.randperm(len(idx), generator=self.generator)[:n]].to(self.images.device)]


Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: told after each distillation iteration and each evaluated network."""


def _silent(phase: str, done: int, total: int) -> None:
    """The default :data:`Progress`: says nothing."""


def distill(args: argparse.Namespace, real: RealSet, progress: Progress = _silent) -> Distilled:
    """Learn ``ipc`` synthetic images per class; BiLP enters through the two facade calls only."""
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    images = real.images.to(device)
    indices_class = [torch.nonzero(real.labels == c).flatten().tolist() for c in range(real.num_classes)]
    indices_class = runtime.prune_real(args, indices_class, real.labels, upstream=UPSTREAM, dataset=real.name,
                                       images=real.images)
    get_images = Sampler(images, indices_class, generator)
    start = time.perf_counter()
    n, ipc = real.num_classes, args.ipc
    syn = torch.randn((n * ipc, *images.shape[1:]), generator=generator).to(device)
    if args.init == "real":
        syn = torch.cat([get_images(c, ipc) for c in range(n)])
    syn.requires_grad_(True)
    syn_labels = torch.arange(n, device=device).repeat_interleave(ipc)
    optimizer = torch.optim.SGD([syn], lr=args.lr_img, momentum=0.5)
    step = _dc_iteration if args.method == "DC" else _dm_iteration
    for it in range(args.iterations):
        net = network(real, args, seed=int(torch.randint(2**31, (1,), generator=generator)))
        step(args, it, net, syn, syn_labels, optimizer, get_images, n)
        progress("distill", it + 1, args.iterations)
    return Distilled(syn.detach().cpu(), syn_labels.cpu(), sum(map(len, indices_class)),
                     time.perf_counter() - start)


def _dm_iteration(args: argparse.Namespace, it: int, net: ConvNet, syn: torch.Tensor, syn_labels: torch.Tensor,
                  optimizer: torch.optim.Optimizer, get_images: Sampler, n: int) -> None:
    """DM: squared distance of the mean real and mean synthetic embeddings of a random network."""
    net.train()
    for p in net.parameters():
        p.requires_grad_(False)
    loss = torch.zeros((), device=syn.device)
    for c in range(n):
        rows = syn[c * args.ipc:(c + 1) * args.ipc]
        img_real = get_images(c, args.batch_real)
        img_real = runtime.select_batch(args, c, img_real, net=net, syn=rows, iteration=it)
        loss = loss + ite.MEAN_EMBEDDING((net.embed(rows).mean(0),), (net.embed(img_real).detach().mean(0),))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _dc_iteration(args: argparse.Namespace, it: int, net: ConvNet, syn: torch.Tensor, syn_labels: torch.Tensor,
                  optimizer: torch.optim.Optimizer, get_images: Sampler, n: int) -> None:
    """DC: match the gradients of real and synthetic batches per class; train the network between steps."""
    net.train()
    params = list(net.parameters())
    net_optimizer = torch.optim.SGD(params, lr=args.lr_net)
    distance = ite.dc_distance(args.dis_metric)
    for outer in range(args.outer_loop):
        loss = torch.zeros((), device=syn.device)
        for c in range(n):
            rows = syn[c * args.ipc:(c + 1) * args.ipc]
            img_real = get_images(c, args.batch_real)
            img_real = runtime.select_batch(args, c, img_real, net=net, syn=rows, iteration=it)
            lab_real = torch.full((len(img_real),), c, dtype=torch.long, device=syn.device)
            gw_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(img_real), lab_real), params)]
            gw_syn = torch.autograd.grad(F.cross_entropy(net(rows), syn_labels[c * args.ipc:(c + 1) * args.ipc]),
                                         params, create_graph=True)
            loss = loss + distance(tuple(gw_syn), tuple(gw_real))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if outer == args.outer_loop - 1:
            break
        fixed = syn.detach()
        for _ in range(args.inner_loop):
            _epoch(net, net_optimizer, fixed, syn_labels, args.batch_train, get_images.generator)


def _epoch(net: ConvNet, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
           batch: int, generator: torch.Generator | None) -> None:
    order = torch.randperm(len(images), generator=generator).to(images.device)
    for index in order.split(batch):
        optimizer.zero_grad()
        F.cross_entropy(net(images[index]), labels[index]).backward()
        optimizer.step()


def evaluate(distilled: Distilled, real: RealSet, test: RealSet, args: argparse.Namespace, seed: int) -> float:
    """Test accuracy of a fresh ConvNet trained on the synthetic set (DC's ``evaluate_synset``, no augmentation)."""
    net = network(real, args, seed)
    images, labels = distilled.images.to(args.device), distilled.labels.to(args.device)
    generator = torch.Generator().manual_seed(seed)
    lr = args.lr_net
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    net.train()
    for ep in range(args.eval_epochs):
        if ep == args.eval_epochs // 2 + 1:
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.1
        _epoch(net, optimizer, images, labels, args.batch_train, generator)
    net.eval()
    correct = 0
    with torch.no_grad():
        for x, y in zip(test.images.split(1024), test.labels.split(1024), strict=True):
            correct += int((net(x.to(args.device)).argmax(1).cpu() == y).sum())
    return correct / len(test)


_warm = False


def warm_up(real: RealSet, args: argparse.Namespace) -> None:
    """Pay torch's one-off first-call costs (about 2 s of CPU, mostly ``torch.func``) once per process, before
    any timed run, so that the first run of a process is not slower than the others."""
    global _warm
    if not _warm:
        net = network(real, args, seed=0)
        ite.per_sample_grads(net, real.images[:2].to(args.device), real.labels[:2].to(args.device))
        _warm = True


def run(args: argparse.Namespace, progress: Progress = _silent) -> dict[str, Any]:
    """Distill, evaluate, write ``result.json`` beside the run record (with ``--bilp-out``); returns the result."""
    if args.threads:
        torch.set_num_threads(args.threads)
    real = load_dataset(args.dataset, args.data_root)
    test = load_dataset(args.dataset, args.data_root, train=False)
    warm_up(real, args)
    distilled = distill(args, real, progress)
    record = runtime.finish(args)
    start = time.perf_counter()
    accs = []
    for m in range(args.eval_models):
        accs.append(evaluate(distilled, real, test, args, seed=args.seed * 1000 + m))
        progress("evaluate", m + 1, args.eval_models)
    result = {
        "host": UPSTREAM, "method": args.method, "dataset": real.name, "ipc": args.ipc,
        "iterations": args.iterations, "seed": args.seed, "real_total": len(real), "real_kept": distilled.real_kept,
        "accuracy": accs, "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
        "distill_s": distilled.seconds, "eval_s": time.perf_counter() - start,
        "eval": {"models": args.eval_models, "epochs": args.eval_epochs, "model": f"convnet-{args.depth}x{args.width}"},
    }
    if record is not None:
        write_result(record, result)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    result = run(parse(sys.argv[1:] if argv is None else argv))
    print(f"{result['method']} {result['dataset']} ipc {result['ipc']}: accuracy "
          f"{100 * result['accuracy_mean']:.2f} +- {100 * result['accuracy_std']:.2f} % "
          f"({result['real_kept']} of {result['real_total']} real kept, distill {result['distill_s']:.1f} s)")


if __name__ == "__main__":
    main()
