"""Cost of the ITE per selection, side by side in one run: naive exact (Eq. 6, one meta gradient per left-out
sample), factored exact and Taylor (Eq. 7), against one plain matching step of one class.

    python benchmarks/bench_ite.py                                 # CPU, random CIFAR-sized data, B=256
    python benchmarks/bench_ite.py --device cuda --data-root $BILP_DATA --ipc 1 10

Protocol: ConvNet-3 (width 128, instance norm) as in DC, CIFAR-10 sized inputs (real CIFAR-10 class 0 when
--data-root is given, else random tensors: timings do not depend on pixel values), a real batch of B samples,
the synthetic rows of one class (ipc), DC's `ours` distance for gradient matching and DM's mean-embedding
distance for distribution matching. Each time is the median of --repeats runs after one warm-up. The matching
step is what the upstream does per class: real gradient, synthetic gradient with create_graph, distance, backward
to the synthetic rows. "amortised k" divides the ITE time by the lazy-selection interval.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bilp_plugin.method import ite
from bilp_plugin.method.convnet import ConvNet


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def real_batch(args: argparse.Namespace, device: torch.device) -> torch.Tensor:
    if args.data_root:
        from bilp_plugin.lab.datasets import load_dataset

        data = load_dataset("cifar10", args.data_root)
        return data.images[data.labels == 0][: args.batch].to(device)
    return torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)


def gradient_matching(net: ConvNet, real: torch.Tensor, syn: torch.Tensor, chunk: int | None,
                      naive_limit: int) -> dict[str, Callable[[], object]]:
    labels = torch.zeros(len(real), dtype=torch.long, device=real.device)
    syn_labels = torch.zeros(len(syn), dtype=torch.long, device=real.device)
    distance = ite.dc_distance("ours")
    params = list(net.parameters())

    def matching_step() -> None:
        s = ite.leaf(syn)
        g_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(real), labels), params)]
        g_syn = torch.autograd.grad(F.cross_entropy(net(s), syn_labels), params, create_graph=True)
        distance(tuple(g_syn), tuple(g_real)).backward()

    def loss() -> ite.SeparableLoss:
        return ite.gradient_matching(net, real, labels, syn_labels, "ours")

    def meta(batch: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        g_real = torch.autograd.grad(F.cross_entropy(net(batch), labels[: len(batch)]), params)
        return distance(ite.synthetic_grads(net, syn_labels)(s), tuple(g.detach() for g in g_real))

    return {"step": matching_step, "exact": lambda: ite.ite_exact(loss(), ite.leaf(syn), chunk),
            "taylor": lambda: ite.ite_taylor(loss(), ite.leaf(syn), chunk=chunk),
            "naive": lambda: ite.ite_naive(meta, real[:naive_limit], ite.leaf(syn))}


def distribution_matching(net: ConvNet, real: torch.Tensor, syn: torch.Tensor, chunk: int | None,
                          naive_limit: int) -> dict[str, Callable[[], object]]:
    def matching_step() -> None:
        s = ite.leaf(syn)
        torch.sum((net.embed(real).detach().mean(0) - net.embed(s).mean(0)) ** 2).backward()

    def loss() -> ite.SeparableLoss:
        return ite.embedding_matching(net.embed, real)

    def meta(batch: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.sum((net.embed(batch).detach().mean(0) - net.embed(s).mean(0)) ** 2)

    return {"step": matching_step, "exact": lambda: ite.ite_exact(loss(), ite.leaf(syn), chunk),
            "taylor": lambda: ite.ite_taylor(loss(), ite.leaf(syn), chunk=chunk),
            "naive": lambda: ite.ite_naive(meta, real[:naive_limit], ite.leaf(syn))}


def per_sample_memory(net: ConvNet, batch: int) -> float:
    """MiB held by the per-sample gradients (gradient matching) of a batch."""
    return batch * sum(p.numel() for p in net.parameters()) * 4 / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", default=None, help="real CIFAR-10 (torchvision layout); default random data")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--interval", type=int, default=10, help="lazy-selection interval k")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=-1, help="VJP chunk (-1: by device, 0: all rows at once)")
    p.add_argument("--naive-limit", type=int, default=None,
                   help="time the naive ITE on this many samples and scale linearly to B (CPU); default all B")
    args = p.parse_args()
    device = torch.device(args.device)
    chunk = None if args.chunk == 0 else args.chunk
    naive_limit = min(args.naive_limit or args.batch, args.batch)
    torch.manual_seed(0)
    net = ConvNet(3, 10, width=args.width, im_size=(32, 32)).to(device)
    real = real_batch(args, device)
    print(f"# bench_ite: device {device}, ConvNet-3 width {args.width}, B={len(real)}, CIFAR-10 sized "
          f"({'real class 0' if args.data_root else 'random data'}), median of {args.repeats}, chunk "
          f"{chunk if chunk != -1 else ite.default_chunk(device)}; naive timed on {naive_limit} samples"
          f"{' and scaled to B' if naive_limit < len(real) else ''}")
    print(f"# per-sample gradients of one batch: {per_sample_memory(net, len(real)):.0f} MiB")
    header = ("meta loss", "ipc", "step s", "taylor s", "exact s", "naive s", "exact/taylor", "naive/taylor",
              "taylor/step", f"taylor/step k={args.interval}", f"exact/step k={args.interval}")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for ipc in args.ipc:
        syn = real[:ipc].clone() + 0.1 * torch.randn_like(real[:ipc])
        for name, build in (("DC ours", gradient_matching), ("DM mean emb.", distribution_matching)):
            fns = build(net, real, syn, chunk, naive_limit)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = {k: timed(fn, device, args.repeats if k != "naive" else 1) for k, fn in fns.items()}
            t["naive"] *= len(real) / naive_limit
            print(f"| {name} | {ipc} | {t['step']:.4f} | {t['taylor']:.4f} | {t['exact']:.4f} | {t['naive']:.2f} | "
                  f"{t['exact'] / t['taylor']:.2f} | {t['naive'] / t['taylor']:.0f} | {t['taylor'] / t['step']:.2f} | "
                  f"{t['taylor'] / t['step'] / args.interval:.3f} | {t['exact'] / t['step'] / args.interval:.3f} |")
            if device.type == "cuda":
                print(f"#   peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
