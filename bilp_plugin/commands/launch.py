"""``bilp launch [flags] SCRIPT -- ARGS``: run an upstream script reproducibly, without editing it
(:mod:`bilp_plugin.tools.launch`)."""

from __future__ import annotations

import argparse

from bilp_plugin.tools import launch


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("launch", help="run an upstream script seeded, with a fake clock, CUDA on the CPU, ...",
                       description=(launch.__doc__ or "").splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="seed of random, numpy and torch")
    p.add_argument("--fake-clock", action="store_true", help="time.time advances 1 ms per call from a fixed start")
    p.add_argument("--skip-cifar-integrity", action="store_true", help="skip torchvision's CIFAR md5 check")
    p.add_argument("--cuda-to-cpu", action="store_true",
                   help="without a GPU, run code that hard-codes CUDA on the CPU (no effect when a GPU is present)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (same value: same sums)")
    p.add_argument("script", help="the upstream script")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments (after --)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    script_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    launch.run_script(args.script, script_args, seed=args.seed, fake_clock=args.fake_clock,
                      skip_cifar_integrity=args.skip_cifar_integrity, cuda_to_cpu=args.cuda_to_cpu,
                      threads=args.threads)
    return 0
