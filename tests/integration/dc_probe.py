"""Level-1 probe: run an upstream script through ``bilp launch`` and record every pool of dataset indices
that DatasetCondensation's ``get_images`` draws from (``np.random.permutation(indices_class[c])``).

    python dc_probe.py OUT.json --seed 0 --fake-clock main.py -- --dataset MNIST ...

Writes ``{"calls": n, "indices": [...]}`` (the union of all pools, ascending) to OUT.json when the script ends.
The wrapper forwards every call to numpy unchanged, so the run draws the same random numbers as without it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from bilp_plugin import cli


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    drawn: set[int] = set()
    calls = 0
    permutation = np.random.permutation

    def probe(x: Any) -> Any:
        nonlocal calls
        if isinstance(x, list) and x and all(isinstance(i, int) for i in x):  # a class's index list
            drawn.update(x)
            calls += 1
        return permutation(x)

    np.random.permutation = probe
    try:
        cli.main(["launch", *argv])
    finally:
        with open(out, "w") as f:
            json.dump({"calls": calls, "indices": sorted(drawn)}, f)


if __name__ == "__main__":
    main()
