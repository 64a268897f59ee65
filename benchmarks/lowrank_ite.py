"""Does a low-rank ITE earn its place? Keep decisions changed against the exact ITE, and cost, on real data.

    python benchmarks/lowrank_ite.py --dataset mnist --match dc --batch 64 --ipc 1
    python benchmarks/lowrank_ite.py --dataset cifar10 --match dm --batch 64 --ipc 10 --data $BILP_DATA

The exact ITE is ``C J`` (``C``: the ``B`` cotangent rows of :func:`bilp_plugin.method.ite.exact_cotangents`, ``J`` the
Jacobian of ``h(S)``), one vector-Jacobian product per real row. The candidate: the eigendecomposition of the
Gram matrix ``C C^T`` gives ``C = A V^T`` with orthonormal ``V``; keeping the ``r`` leading directions (a fixed
``r``, or the fewest that hold a share of ``C``'s energy) needs ``r`` products, ``||ITE(x_i)|| ~ ||A_i (V_r^T J)||``,
and is exact at ``r = rank(C)``. The bar an approximate mode must clear to ship: at most 3% of the keep decisions
changed, at no more than a third of the exact cost.

Protocol: for ``--trials`` freshly initialised ConvNets (DC and DM both match with fresh networks), every
``--class-step``-th class draws ``--batch`` real rows and ``--ipc`` synthetic rows (real images of the class plus
noise, as ``--init real``). Decisions: the ``relative`` rule's keep interval for ``beta`` (``level2.thresholds`` of
the batch's relative ITE ``v``), taken from the exact ITE and applied to both, so a changed decision is the
approximation's error alone. Cost: CPU time of the whole ITE (statistics, ``h(S)``, cotangents, products), one
thread, each variant on the same batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method import ite, level2
from bilp_plugin.method.convnet import ConvNet

RANKS: tuple[str, ...] = ("4", "8", "16", "32", "e0.99", "e0.999", "rf16", "rf32")
"""Candidates: a fixed rank ``r``, ``e<share>``: the fewest directions holding that share of the energy, or
``rf<r>``: a randomized range finder of rank ``r`` on the rows of ``C J`` (:func:`range_finder_norms`)."""


def rank_of(energy: torch.Tensor, candidate: str) -> int:
    """Directions kept by ``candidate`` given the Gram eigenvalues ``energy`` (descending)."""
    if candidate.startswith("e"):
        share = energy.cumsum(0) / energy.sum()
        return int((share < float(candidate[1:])).sum()) + 1
    return min(int(candidate), len(energy))


def lowrank_norms(h: ite.Linearised, rows: ite.Stats, candidate: str) -> tuple[torch.Tensor, int]:
    """``||ITE||`` per row from the leading directions of the cotangent rows, and how many were kept."""
    b = int(rows[0].shape[0])
    flat = torch.cat([c.reshape(b, -1) for c in rows], dim=1).double()
    energy, vectors = torch.linalg.eigh(flat @ flat.T)
    energy, vectors = energy.flip(0).clamp_min(0), vectors.flip(1)
    r = rank_of(energy, candidate)
    scale = energy[:r].sqrt().clamp_min(torch.finfo(torch.float64).tiny)
    directions = (flat.T @ vectors[:, :r]) / scale  # orthonormal columns, flattened like ``flat``
    basis, start = [], 0
    for c in rows:
        size = int(c[0].numel())
        basis.append(directions[start:start + size].T.reshape(r, *c.shape[1:]).to(c.dtype))
        start += size
    products = h.rows(tuple(basis)).reshape(r, -1).double()
    return ((vectors[:, :r] * scale) @ products).norm(dim=1), r


def range_finder_norms(h: ite.Linearised, rows: ite.Stats, r: int, gen: torch.Generator) -> torch.Tensor:
    """``||ITE||`` per row from a rank-``r`` randomized range finder on the rows of ``M = C J``: ``Y = M^T Omega``
    (``Omega`` Gaussian, ``B x r``: ``r`` vector-Jacobian products of the combined cotangents ``C^T Omega``),
    ``Q = orth(Y)``, and ``||M_i|| ~ ||C_i (J Q)||`` (``J Q``: ``r`` Jacobian-vector products, each the
    vector-Jacobian product of the pullback). Exact when ``r`` reaches the rank of ``M``."""
    b = int(rows[0].shape[0])
    r = min(r, b)
    omega = torch.randn(b, r, generator=gen, dtype=torch.float64)
    combined = tuple(torch.einsum("br,b...->r...", omega.to(c.dtype), c) for c in rows)
    y = h.rows(combined).reshape(r, -1).double()  # (r, D): rows of M^T Omega, transposed
    q, _ = torch.linalg.qr(y.T)  # (D, r), orthonormal columns
    tangents = q.T.to(h.syn.dtype).reshape(r, *h.syn.shape)
    # J t as the vector-Jacobian product of the (linear) pullback u -> J^T u, taken at u = 0
    _, pull_back_pullback = torch.func.vjp(h._pullback, tuple(torch.zeros_like(o) for o in h.outputs))
    jq = torch.vmap(lambda t: pull_back_pullback((t,))[0])(tangents)  # each output: (r, *out)
    flat_jq = torch.cat([o.reshape(r, -1) for o in jq], dim=1).double()  # (r, n_out)
    flat_c = torch.cat([c.reshape(b, -1) for c in rows], dim=1).double()  # (B, n_out)
    return (flat_c @ flat_jq.T).norm(dim=1)


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and its CPU time."""
    start = time.process_time()
    out = fn(*args)
    return out, time.process_time() - start


def prepared(args: argparse.Namespace, net: ConvNet, real: torch.Tensor, labels: torch.Tensor, syn: torch.Tensor,
             cls: int) -> tuple[ite.Linearised, ite.Stats]:
    """What the exact ITE and every candidate share: the statistics, ``h(S)`` and the cotangent rows."""
    if args.match == "dm":
        loss = ite.embedding_matching(net.embed, real)
    else:
        loss = ite.gradient_matching(net, real, labels, torch.full((len(syn),), cls), "ours")
    h = ite.Linearised(loss.synthetic, syn)
    return h, ite.exact_cotangents(loss, h)


def exact_norms(h: ite.Linearised, rows: ite.Stats) -> torch.Tensor:
    return ite.ite_norms(h.rows(rows))


def keep_mask(v: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return (v > low) & (v < high)


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per candidate: the share of changed keep decisions, the mean rank kept and the cost over the exact ITE's."""
    data = load_dataset(args.dataset, args.data)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    tally = {c: {"changed": 0, "rows": 0, "rank": 0, "batches": 0, "seconds": 0.0} for c in ("exact", *RANKS)}
    for _ in range(args.trials):
        net = ConvNet(data.channel, data.num_classes, width=args.width, im_size=data.im_size)
        for cls in range(0, data.num_classes, args.class_step):
            pool = (data.labels == cls).nonzero().flatten()
            real = pool[torch.randperm(len(pool), generator=gen)[:args.batch]]
            picked = pool[torch.randperm(len(pool), generator=gen)[:args.ipc]]
            syn = data.images[picked] + 0.1 * torch.randn(args.ipc, *data.images.shape[1:], generator=gen)
            (h, rows), shared_s = timed(prepared, args, net, data.images[real], data.labels[real], syn, cls)
            exact, exact_s = timed(exact_norms, h, rows)
            v, _ = level2.relative_ite(exact)
            low, high = level2.thresholds(float(v.mean()), float(v.std()), args.beta, "both")
            keep = keep_mask(v, low, high)
            tally["exact"]["seconds"] += shared_s + exact_s
            for candidate in RANKS:
                if candidate.startswith("rf"):
                    r = min(int(candidate[2:]), len(real))
                    norms, s = timed(range_finder_norms, h, rows, r, gen)
                else:
                    (norms, r), s = timed(lowrank_norms, h, rows, candidate)
                t = tally[candidate]
                t["changed"] += int((keep_mask(level2.relative_ite(norms)[0], low, high) != keep).sum())
                t["rows"] += len(real)
                t["rank"] += r
                t["batches"] += 1
                t["seconds"] += shared_s + s
    exact_s = tally["exact"]["seconds"]
    return {c: {"changed": t["changed"] / t["rows"], "rank": t["rank"] / t["batches"], "cost": t["seconds"] / exact_s}
            for c, t in tally.items() if c != "exact"}


def report(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> str:
    lines = [f"Low-rank ITE vs exact: {args.match.upper()} on {args.dataset}, ConvNet width {args.width}, batch "
             f"{args.batch}, ipc {args.ipc}, beta {args.beta}, {args.trials} networks x classes 0, {args.class_step}, "
             f"...; torch {torch.__version__}, 1 thread",
             "", "| rank | mean rank | keep decisions changed | cost / exact | earns its place |",
             "|---|---|---|---|---|"]
    for c, r in results.items():
        ok = r["changed"] <= 0.03 and r["cost"] <= 1 / 3
        lines.append(f"| {c} | {r['rank']:.1f} | {100 * r['changed']:.2f}% | {r['cost']:.2f} | "
                     f"{'yes' if ok else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data", default=os.environ.get("BILP_DATA"), help="data root (default: $BILP_DATA)")
    p.add_argument("--match", choices=["dc", "dm"], default="dc", help="gradient (dc, 'ours') or embedding (dm)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--beta", type=float, default=0.2)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--class-step", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.batch < 2 or args.ipc < 1 or args.trials < 1 or args.class_step < 1:
        p.error("--batch must be >= 2 and --ipc, --trials, --class-step >= 1")
    torch.set_num_threads(1)
    print(report(args, measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
