"""``bilp score``: level-1 scores of every training sample by its empirical loss, written as one score file."""

from __future__ import annotations

import argparse
from pathlib import Path

from bilp_plugin import files
from bilp_plugin.commands.flags import add_data_flags, default_device, file_name
from bilp_plugin.config import ScoringConfig, argtype, check_positive, count_type, seed_type
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import folders
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.manager import get_manager
from bilp_plugin.method import data_parallel, scorefile
from bilp_plugin.method.empirical_loss import check_config


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("score", help="level 1: score every training sample by its empirical loss")
    add_data_flags(p, required=True)
    p.add_argument("--classes", default=None,
                   help="imagefolder: the class folders to score, in label order (comma-separated, or a file with "
                        "one per line); default: every class folder, sorted")
    p.add_argument("--image-size", type=int, default=folders.DEFAULT_SIZE,
                   help="imagefolder: images are resized and centre-cropped to this size for scoring")
    p.add_argument("--model", default="convnet", help="convnet (ConvNet-D, width W, instance norm, as in DC)")
    p.add_argument("--width", type=count_type("--width"), default=128, help="ConvNet width")
    p.add_argument("--depth", type=count_type("--depth"), default=3, help="ConvNet depth")
    p.add_argument("--epochs", type=count_type("--epochs"), default=10, help="training epochs per trial")
    p.add_argument("--trials", type=count_type("--trials"), default=1,
                   help="independent trials (seeds seed..seed+T-1) averaged")
    p.add_argument("--batch-size", type=count_type("--batch-size"), default=256)
    p.add_argument("--lr", type=argtype(float, lambda v: check_positive("--lr", v)), default=0.01)
    p.add_argument("--mode", choices=("mean", "final"), default="mean",
                   help="mean: loss of the training forward passes, averaged over epochs; final: loss of the "
                        "trained network in eval mode")
    p.add_argument("--seed", type=seed_type("--seed"), default=0)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--out", required=True, type=argtype(file_name), help="score file to write (.npz)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Score ``--dataset``, write ``--out`` (.npz); never overwrites without ``--force``."""
    out = Path(args.out)
    if out.suffix != ".npz":
        raise BiLPError(f"--out must name a .npz file, got {args.out}")
    files.check_new_file(out, "--out", args.force)
    if args.model != "convnet":
        raise BiLPError(f"--model must be convnet (the only scoring model), got {args.model!r}")
    config = ScoringConfig(model_width=args.width, model_depth=args.depth, epochs=args.epochs,
                           trials=args.trials, batch_size=args.batch_size, lr=args.lr, mode=args.mode,
                           seed=args.seed, device=args.device or default_device())
    check_config(config)
    data_parallel.world_size()
    options = ({"classes": folders.class_list(args.classes), "image_size": args.image_size}
               if args.dataset == "imagefolder" else {})
    dataset = load_dataset(args.dataset, args.data_root, **options)
    world, config.device = data_parallel.init_from_env(config.device)
    config.progress = world.is_main
    score_file = get_manager().score_samples(dataset, config)
    if not world.is_main:
        data_parallel.finish()
        return 0
    digest = scorefile.save(out, score_file, force=args.force)
    data_parallel.finish()
    meta = score_file.meta
    print(f"wrote {out}: {len(score_file)} scores of {dataset.name} (mode {meta.get('mode')}, "
          f"{meta.get('epochs')} epochs x {meta.get('trials')} trials, {meta.get('elapsed_s')} s), "
          f"sha256 {digest[:12]}")
    return 0
