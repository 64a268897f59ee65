"""Real training sets as normalised tensors, in the sample order the upstreams use (torchvision's).

Every loader returns a :class:`RealSet`: float32 images ``N x C x H x W``, scaled to [0, 1] and normalised per
channel with the mean/std DatasetCondensation's ``utils.get_dataset`` uses (bit-for-bit what its
``ToTensor() + Normalize(mean, std)`` transform gives), and int64 labels. Score files rely on the order.

* ``digits``: scikit-learn's ``load_digits`` (1 x 8 x 8, pixel values / 16; no files needed; scikit-learn is
  an optional dependency). It has no official split, so ours is fixed: train = samples 0..1499, test =
  1500..1796, in scikit-learn's order; mean/std (0.3051, 0.3750) are those of the train split.
* ``mnist``, ``fashion-mnist``: torchvision layouts ``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw`` (the
  four uncompressed idx files), read through torchvision's ``.data``/``.targets``.
* ``cifar10``: ``<root>/cifar-10-batches-py``, read from the pickle batches directly (no md5 check, so the
  rebuilt copy loads); the order equals ``torchvision.datasets.CIFAR10``'s.
* ``cifar100``, ``svhn``: through torchvision with ``download=False`` (``<root>/cifar-100-python``,
  ``<root>/{train,test}_32x32.mat``; SVHN needs scipy).
* ``imagefolder`` (ImageNet subsets), ``tinyimagenet``: :mod:`bilp_plugin.lab.folders` (training split only).

CIFAR batches are pickles, which can run code when read: the data root must be trusted (as with torchvision).
A truncated or damaged file is refused with one line naming it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import folders
from bilp_plugin.method.realset import RealSet

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", *folders.DATASETS)
DIGITS_TRAIN = 1500
DATA_DOC = "docs/data.md"
"""Where the project says how to put each dataset in its torchvision layout."""

# (mean, std, num_classes): DatasetCondensation's get_dataset values; digits is ours (train split statistics).
_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...], int]] = {
    "digits": ((0.3051,), (0.3750,), 10),
    "mnist": ((0.1307,), (0.3081,), 10),
    "fashion-mnist": ((0.2861,), (0.3530,), 10),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 10),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), 100),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 10),
}


def canonical_name(name: str) -> str:
    """``"CIFAR10"``, ``"FashionMNIST"``, ``"fashion_mnist"`` -> the name in :data:`DATASETS`."""
    compact = {n.replace("-", ""): n for n in DATASETS}
    key = name.lower().replace("-", "").replace("_", "")
    if key not in compact:
        raise BiLPError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return compact[key]


def data_root(root: str | None) -> Path:
    """The data folder: ``root``, else ``$BILP_DATA``; it must exist."""
    root = root or os.environ.get("BILP_DATA")
    if not root:
        raise BiLPError("no data root: pass --data-root DIR or `export BILP_DATA=DIR`, a folder of torchvision "
                        f"layouts (MNIST/raw/, cifar-10-batches-py/, ...; {DATA_DOC} says how to make one)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise BiLPError(f"data root {path} is not a folder: pass an existing --data-root DIR (or BILP_DATA) "
                        f"holding torchvision layouts ({DATA_DOC})")
    return path


def load_dataset(name: str, root: str | None = None, train: bool = True, **folder_options: Any) -> RealSet:
    """Load the train (or test) split of ``name`` as a normalised :class:`RealSet` in torchvision order
    (``folder_options``: ``classes``, ``image_size`` of :func:`bilp_plugin.lab.folders.load`)."""
    name = canonical_name(name)
    if name in folders.DATASETS:
        return folders.load(name, data_root(root), train, **folder_options)
    loader = _LOADERS[name]
    images, labels = loader(train) if name == "digits" else loader(data_root(root), train)
    mean, std, num_classes = _STATS[name]
    images.sub_(torch.tensor(mean).view(-1, 1, 1)).div_(torch.tensor(std).view(-1, 1, 1))
    return RealSet(name, images, torch.as_tensor(labels, dtype=torch.int64), num_classes, mean, std)


def _unit(pixels: Any) -> torch.Tensor:
    """uint8 ``N x C x H x W`` -> contiguous float32 in [0, 1], as torchvision's ``ToTensor`` computes it."""
    return torch.as_tensor(pixels).contiguous().to(torch.float32).div_(255)


def _require(folder: Path, files: list[str], fix: str) -> None:
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise BiLPError(f"{folder} lacks {', '.join(missing)}: {fix}")


def _digits(train: bool) -> tuple[torch.Tensor, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BiLPError("dataset 'digits' needs scikit-learn: `pip install scikit-learn`") from None
    digits = load_digits()
    part = slice(0, DIGITS_TRAIN) if train else slice(DIGITS_TRAIN, None)
    images = torch.from_numpy(digits.images[part].astype(np.float32) / 16).unsqueeze(1)
    return images, digits.target[part]


def _mnist_like(folder: str, fix: str) -> Callable[[Path, bool], tuple[torch.Tensor, Any]]:
    def load(root: Path, train: bool) -> tuple[torch.Tensor, Any]:
        from torchvision import datasets

        prefix = "train" if train else "t10k"
        _require(root / folder / "raw", [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"],
                 fix.format(root=root))
        cls = datasets.MNIST if folder == "MNIST" else datasets.FashionMNIST
        try:
            data = cls(str(root), train=train, download=False)
        except (RuntimeError, ValueError, OSError, EOFError) as err:
            raise BiLPError(f"cannot read the {folder} files under {root / folder / 'raw'} ({err}): one is truncated "
                            f"or damaged; {fix.format(root=root)}") from None
        return _unit(data.data.unsqueeze(1)), data.targets

    return load


def _cifar10(root: Path, train: bool) -> tuple[torch.Tensor, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    _require(folder, files,
             f"extract the official cifar-10-python.tar.gz into {root} ({DATA_DOC})")
    pixels, labels = [], []
    for file in files:
        try:
            with open(folder / file, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            pixels.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch["labels"])
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError) as err:
            raise BiLPError(f"cannot read {folder / file} ({type(err).__name__}: {err}): it is truncated or not a "
                            f"CIFAR-10 batch; extract the official cifar-10-python.tar.gz into {root} again "
                            f"({DATA_DOC})") from None
    return _unit(np.concatenate(pixels)), np.asarray(labels, dtype=np.int64)


def _cifar100(root: Path, train: bool) -> tuple[torch.Tensor, Any]:
    from torchvision import datasets

    _require(root / "cifar-100-python", ["train" if train else "test", "meta"],
             f"extract cifar-100-python.tar.gz into {root}")
    data = _torchvision(lambda: datasets.CIFAR100(str(root), train=train, download=False), root)
    return _unit(data.data.transpose(0, 3, 1, 2)), data.targets


def _svhn(root: Path, train: bool) -> tuple[torch.Tensor, Any]:
    from torchvision import datasets

    split = "train" if train else "test"
    _require(root, [f"{split}_32x32.mat"],
             f"put {split}_32x32.mat (ufldl.stanford.edu/housenumbers) into {root}")
    data = _torchvision(lambda: datasets.SVHN(str(root), split=split, download=False), root)
    return _unit(data.data), data.labels


def _torchvision(make: Callable[[], Any], root: Path) -> Any:
    """Build a torchvision dataset, turning its errors (md5 mismatch, scipy missing) into a BiLPError."""
    try:
        return make()
    except RuntimeError as err:
        raise BiLPError(f"torchvision refused the files under {root} ({err}): they fail its md5 check; "
                        "replace them with the official archive's files") from None
    except ImportError as err:
        package = (err.name or "scipy").split(".")[0]
        raise BiLPError(f"reading the files under {root} needs {package}: `pip install {package}`") from None


_MNIST_FIX = "gunzip the four official MNIST idx files into {root}/MNIST/raw/ (" + DATA_DOC + ")"
_FASHION_FIX = ("gunzip the Fashion-MNIST idx files (`apt-get install dataset-fashion-mnist` puts them in "
                "/usr/share/datasets/fashion-mnist) into {root}/FashionMNIST/raw/")
_LOADERS: dict[str, Callable[..., tuple[torch.Tensor, Any]]] = {
    "digits": _digits,
    "mnist": _mnist_like("MNIST", _MNIST_FIX),
    "fashion-mnist": _mnist_like("FashionMNIST", _FASHION_FIX),
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "svhn": _svhn,
}
