"""ITE overhead of BiLP level 2 inside IDC's real condensation iteration (the paper's Table 6), side by side.

CPU-sized (what the report quotes; a CIFAR-10 subset of 100 images per class):
    BILP_DATA=/work/data python benchmarks/bench_idc.py --per-class 100 --rounds 3 --iters 10 --threads 1 \
        --skip-cifar-integrity -- \
        -d cifar10 --ipc 1 -f 2 --width 0.0625 --batch_real 16 --n_data 32 --metric mse
GPU, the paper's setting (CIFAR-10, ipc 10, factor 2, IDC's CIFAR preset: ConvNet-3, mse, n_data 2000):
    BILP_DATA=/data python benchmarks/bench_idc.py --rounds 3 --iters 10 -- -d cifar10 --ipc 10 -f 2 --reproduce

Protocol: IDC (``condense.py`` with the whole patch series, from ``third_party/`` or ``--upstream``) is imported in
this process; its own pieces (``argument.args`` from the arguments after ``--``, ``load_resized_data``, the class
loader, ``Synthesizer``, ``diffaug``, ``matchloss``, ``train_epoch``) run its inner iteration exactly as
``condense.py`` does (every class: draw a real batch, sample and decode the synthetic set, augment jointly, match,
update the synthetic set; then the network update). One timed block = a fresh network (IDC builds one per outer
iteration) and ``--iters`` inner iterations. Each round times one block of every variant, in a rotated order, after
one untimed warm-up round; the table gives medians over rounds. "unpatched" is the loop without the hook call; every
other variant inserts ``select_batch``'s work (``MatchStep`` -> lazy selector -> ``meta_grad`` + ``filter_batch``)
right after the draw, with ``--bilp-beta``, global running statistics and its own ITE method and interval.
"ITE s/iter" is the ITE time the run record measures (device-synchronised), "ITE / unpatched" its ratio to the
unpatched iteration (the paper: 0.03 / 0.44 s = 7%), "total / unpatched" the whole BiLP iteration's ratio (it also
includes the cheaper matching on pruned batches). "naive exact" is the definition: one IDC matchloss gradient per
left-out sample (the paper's "running stats only" column); "factored exact" is ``bilp_plugin.method.ite.ite_exact``.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bilp_adapters.idc import plugin

from bilp_plugin import hookimpl, runtime
from bilp_plugin.tools import apply
from bilp_plugin.method import ite
from bilp_plugin.tools.launch import disable_cifar_md5, redirect_cuda_to_cpu
from bilp_plugin.manager import PluginManager
from bilp_plugin.method.matchstep import MatchStep

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variant:
    name: str
    ite: str | None  # None: the unpatched loop; "naive": the definition
    interval: int = 1


VARIANTS = (
    Variant("unpatched IDC", None),
    Variant("naive exact, k=1 (running stats)", "naive", 1),
    Variant("Taylor, k=1 (+ Taylor)", "taylor", 1),
    Variant("factored exact, k=1", "exact", 1),
    Variant("Taylor, lazy k=10 (all three)", "taylor", 10),
    Variant("factored exact, lazy k=10", "exact", 10),
)


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("BILP_DATA"), help="IDC's --data_dir (default: $BILP_DATA)")
    p.add_argument("--upstream", type=Path, default=None,
                   help="a patched IDC checkout (default: the submodule's pinned files with the series applied)")
    p.add_argument("--per-class", type=int, default=0, help="use the first N real images of each class (0: all)")
    p.add_argument("--beta", type=float, default=0.2, help="--bilp-beta of every BiLP variant")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (one block per variant each)")
    p.add_argument("--iters", type=int, default=10, help="inner iterations per block (a multiple of 10: k=10)")
    p.add_argument("--skip-naive", action="store_true", help="leave out the naive exact ITE (slow at B=64)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--skip-cifar-integrity", action="store_true", help="skip torchvision's CIFAR md5 check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("idc_args", nargs=argparse.REMAINDER, help="-- then condense.py's arguments")
    a = p.parse_args(argv)
    idc_args = a.idc_args[1:] if a.idc_args[:1] == ["--"] else a.idc_args
    if not a.data:
        p.error("set --data or BILP_DATA (the folder holding cifar-10-batches-py)")
    return a, idc_args


def upstream_tree(a: argparse.Namespace, tmp: Path) -> Path:
    if a.upstream:
        return a.upstream.resolve()
    return apply.export_patched(apply.Manifest.load(ROOT / "adapters" / "idc"), tmp / "idc")


class NaiveITE:
    """``meta_grad`` by the definition (Eq. 6): ``B + 1`` IDC ``matchloss`` gradients per selection."""

    def __init__(self, condense: Any) -> None:
        self.condense = condense

    @hookimpl(tryfirst=True)
    def meta_grad(self, step: MatchStep, method: str) -> torch.Tensor:
        args, synset, c = step.args, step.syn, step.cls
        target = synset.targets[synset.ipc * c:synset.ipc * (c + 1)]
        data = importlib.import_module("data")
        norm = self.condense.utils.Normalize(data.MEANS[args.dataset], data.STDS[args.dataset],
                                             device=step.real.device)

        def loss(real: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
            img_syn, lab_syn = synset.decode(stored, target, bound=args.batch_syn_max)
            return self.condense.matchloss(args, norm(real), norm(img_syn), step.real_labels[:len(real)], lab_syn,
                                           step.net)

        return ite.ite_norms(ite.ite_naive(loss, step.real, plugin.stored(step)))


class Bench:
    """IDC's condensation state and one inner iteration of its loop (``condense.py`` l.522-555)."""

    def __init__(self, a: argparse.Namespace, idc_args: list[str], tree: Path, out: Path) -> None:
        sys.path.insert(0, str(tree))
        sys.argv = ["condense.py", *idc_args, "--data_dir", a.data, "--test", "--bilp", "--bilp-beta", str(a.beta),
                    "--bilp-out", str(out / "unused")]
        self.args = importlib.import_module("argument").args
        self.condense = importlib.import_module("condense")
        c, args = self.condense, self.args
        self.device = "cuda"  # as condense.py; --cuda-to-cpu semantics without a GPU
        trainset, _ = c.load_resized_data(args)
        if a.per_class:
            labels = np.asarray(trainset.targets)
            kept = np.sort(np.concatenate([np.flatnonzero(labels == k)[:a.per_class] for k in range(trainset.nclass)]))
            trainset = plugin.restrict_real(upstream="idc", real=trainset, kept=kept)
        self.trainset = trainset
        if args.load_memory:
            self.loader_real = c.ClassMemDataLoader(trainset, batch_size=args.batch_real)
        else:
            self.loader_real = c.ClassDataLoader(trainset, batch_size=args.batch_real, num_workers=args.workers,
                                                 shuffle=True, pin_memory=True, drop_last=True)
        self.nclass = trainset.nclass
        nch, hs, ws = trainset[0][0].shape
        self.synset = c.Synthesizer(args, self.nclass, nch, hs, ws)
        self.synset.init(self.loader_real, init_type=args.init)
        self.aug, self.aug_rand = c.diffaug(args)
        self.optim_img = torch.optim.SGD(self.synset.parameters(), lr=args.lr_img, momentum=args.mom_img)
        self.out = out
        self.sessions: dict[str, runtime.Session] = {}

    def session(self, v: Variant) -> runtime.Session:
        if v.name not in self.sessions:
            args = copy.copy(self.args)
            args.bilp_ite = "exact" if v.ite == "naive" else v.ite
            args.bilp_interval = v.interval
            args.bilp_out = str(self.out / v.name.split(",")[0].replace(" ", "-") / str(v.interval))
            manager = PluginManager()
            if v.ite == "naive":
                manager.register(NaiveITE(self.condense), name="naive-ite")
            session = runtime.Session(args, "idc", manager)
            session.start_experiment(self.trainset.targets, None, args.dataset)
            self.sessions[v.name] = session
        return self.sessions[v.name]

    def block(self, v: Variant, iters: int) -> tuple[float, float]:
        """Seconds per inner iteration and ITE seconds per inner iteration, over a fresh network and ``iters``."""
        c, args = self.condense, self.args
        session = None if v.ite is None else self.session(v)
        ite_before = session.record.totals["ite_s"] if session else 0.0
        _sync()
        start = time.perf_counter()
        model = c.define_model(args, self.nclass).to(self.device)
        model.train()
        optim_net = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum,
                                    weight_decay=args.weight_decay)
        criterion = torch.nn.CrossEntropyLoss()
        self.synset.data.data = torch.clamp(self.synset.data.data, min=0., max=1.)
        for it in range(iters):
            for cls in range(self.nclass):
                img, lab = self.loader_real.class_sample(cls)
                if session is not None:
                    img, lab = session.select(MatchStep("idc", cls, img, lab, model, self.synset, session.args, it))
                img_syn, lab_syn = self.synset.sample(cls, max_size=args.batch_syn_max)
                n = img.shape[0]
                img_aug = self.aug(torch.cat([img, img_syn]))
                loss = c.matchloss(args, img_aug[:n], img_aug[n:], lab, lab_syn, model)
                self.optim_img.zero_grad()
                loss.backward()
                self.optim_img.step()
            if args.n_data > 0:
                for _ in range(args.net_epoch):
                    c.train_epoch(args, self.loader_real, model, criterion, optim_net, n_data=args.n_data,
                                  aug=self.aug_rand, mixup=args.mixup_net)
        _sync()
        elapsed = time.perf_counter() - start
        ite_s = (session.record.totals["ite_s"] - ite_before) if session else 0.0
        return elapsed / iters, ite_s / iters

    def keep_rate(self, v: Variant) -> float:
        if v.ite is None:
            return 1.0
        rows = [json.loads(x) for x in (self.session(v).record.dir / "level2.jsonl").read_text().splitlines()]
        return sum(r["kept"] for r in rows) / sum(r["batch"] for r in rows)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    a, idc_args = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    redirect_cuda_to_cpu()
    if a.skip_cifar_integrity:
        disable_cifar_md5()
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    variants = [v for v in VARIANTS if not (a.skip_naive and v.ite == "naive")]
    with tempfile.TemporaryDirectory(prefix="bench-idc-") as tmp:
        bench = Bench(a, idc_args, upstream_tree(a, Path(tmp)), Path(tmp) / "records")
        args = bench.args
        print(f"IDC {args.dataset} ipc {args.ipc} factor {args.factor} {args.net_type}-{args.depth} width "
              f"{args.width} metric {args.metric} batch_real {args.batch_real} n_data {args.n_data}; real set "
              f"{len(bench.trainset)} images; device {'cuda' if torch.cuda.is_available() else 'cpu'}, threads "
              f"{torch.get_num_threads()}; beta {a.beta}; {a.rounds} rounds x {a.iters} inner iterations per "
              f"variant (+1 warm-up round); torch {torch.__version__}", flush=True)
        times: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
        for r in range(a.rounds + 1):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                result = bench.block(v, a.iters)
                if r > 0:
                    times[v.name].append(result)
            print(f"round {r}{' (warm-up)' if r == 0 else ''} done", flush=True)
        base = statistics.median(t for t, _ in times[VARIANTS[0].name])
        print(f"\n{'variant':38s} {'s/iter':>9s} {'ITE s/iter':>11s} {'ITE / unpatched':>16s} "
              f"{'total / unpatched':>18s} {'keep rate':>10s}")
        for v in variants:
            total = statistics.median(t for t, _ in times[v.name])
            ite_s = statistics.median(i for _, i in times[v.name])
            print(f"{v.name:38s} {total:9.4f} {ite_s:11.4f} {ite_s / base:16.1%} {total / base:18.3f} "
                  f"{bench.keep_rate(v):10.3f}")
        for session in bench.sessions.values():  # the records live in the temporary folder
            session.record.close()
            atexit.unregister(session.record.close)


if __name__ == "__main__":
    main()
