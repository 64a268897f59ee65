"""IDC's own evaluation of the condensed set ``condense.py --test`` saved, run by the idc host right after it::

    bilp launch --seed S --fake-clock --cuda-to-cpu evaluate.py -- --eval-epochs E --eval-out FILE -- ARGS

with ``ARGS`` the arguments ``condense.py`` ran with, the patched IDC copy on ``PYTHONPATH`` and the folder
``condense.py`` ran in as the working folder. It parses ``ARGS`` with IDC's ``argument.py``, loads
``results/test/data.pt`` into IDC's ``Synthesizer``, builds IDC's loader of the decoded set (``synset.loader``,
with IDC's augmentation) and trains ``--repeat`` fresh networks (``define_model``) with IDC's ``train``, validating
4 times like IDC's ``test_data`` (which only prints). ``--eval-epochs`` replaces the 1000 epochs ``argument.py``
sets. Each network's last and best top-1 test accuracies go to ``FILE`` (JSON, in [0, 1]).
"""

from __future__ import annotations

import argparse
import sys

import torch

from bilp_plugin import files

VALIDATIONS = 4
"""``test_data``'s ``num_val``: validations per trained network."""


def main() -> None:
    split = sys.argv.index("--")
    own = argparse.ArgumentParser(prog="evaluate.py")
    own.add_argument("--eval-epochs", type=int, required=True)
    own.add_argument("--eval-out", required=True)
    options = own.parse_args(sys.argv[1:split])
    sys.argv = [sys.argv[0], *sys.argv[split + 1:]]
    from argument import args  # IDC parses sys.argv at import
    from condense import Synthesizer, load_resized_data
    from train import define_model, train

    args.epochs = options.eval_epochs
    args.epoch_print_freq = max(1, args.epochs // VALIDATIONS)
    trainset, val_loader = load_resized_data(args)
    nch, hs, ws = trainset[0][0].shape
    data, targets = torch.load("results/test/data.pt")
    synset = Synthesizer(args, args.nclass, nch, hs, ws)
    synset.data.data = data.to(synset.data.device)
    synset.targets = targets.to(synset.targets.device)
    loader = synset.loader(args, args.augment)
    last, best = [], []
    for m in range(args.repeat):
        model = define_model(args, args.nclass)
        best_acc, acc = train(args, model, loader, val_loader, logger=print)
        print(f"bilp: idc evaluation network {m + 1}/{args.repeat}: top-1 {acc:.2f} (best {best_acc:.2f})",
              flush=True)
        last.append(float(acc) / 100)
        best.append(float(best_acc) / 100)
    files.write_json(options.eval_out, {"accuracy": last, "best": best, "epochs": args.epochs,
                                        "model": f"{args.net_type}-{args.depth} (width {args.width})"})


if __name__ == "__main__":
    main()
