"""Folder datasets for level-1 scoring, in the sample order the upstreams' loaders define.

* ``imagefolder``: ``<root>/<class>/**/<image>``, as torchvision's ``make_dataset`` lists it, which IDC's and
  IDM's ``ImageFolder`` (``condense.py``/``condense_mp.py`` with ``-d imagenet``, ``IDM_imagenet.py``) and
  torchvision's (MTT's ``Tiny``: ``<data_path>/train``) call: classes by sorted folder name, within a class the
  files of a sorted ``os.walk`` (sub-folders included, symbolic links followed), sorted by name, with an image
  extension (``.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp``, any case). Labels: a class's position in
  ``classes`` (default: every class folder, sorted); the upstreams that pick a subset of classes (IDC's and IDM's
  ``--nclass``/``--dseed``/``--phase``) number them in their own order, which level 1 accepts (it checks the
  files, see :func:`bilp_plugin.method.scorefile.check_matches`). Every sample's path relative to ``root``
  (``/``-separated) is kept in :attr:`RealSet.files`; score files record the checksum of that ordered list.
  Images: RGB, ``Resize(size)`` and ``CenterCrop(size)`` (IDC's and IDM's ImageNet resize), scaled to [0, 1] and
  normalised with ImageNet's mean and std.
* ``tinyimagenet``: ``<root>/tinyimagenet.pt``, the tensor file DC's and IDM's ``TinyImageNet`` read
  (``images_train`` uint8 ``N x 3 x 64 x 64``, ``labels_train``), in the file's order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bilp_plugin.errors import BiLPError
from bilp_plugin.method.realset import RealSet

DATASETS = ("imagefolder", "tinyimagenet")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""IDC's and IDM's ``IMG_EXTENSIONS`` (``data.py``, ``others_edc.py``), which are torchvision's."""
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY_FILE = "tinyimagenet.pt"
DEFAULT_SIZE = 64


def class_list(value: str | None) -> list[str] | None:
    """``--classes``: a file of class folder names (one per line) or a comma-separated list; ``None`` = all."""
    if value is None:
        return None
    path = Path(value)
    names = path.read_text().split() if path.is_file() else [v.strip() for v in value.split(",")]
    names = [n for n in names if n]
    if not names or len(set(names)) != len(names):
        raise BiLPError(f"--classes {value!r} must name distinct class folders (a comma-separated list, or a file "
                        "with one name per line)")
    return names


def image_files(root: Path, classes: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """The image files under ``root`` in the upstreams' order, relative to ``root``; their labels; the classes."""
    from torchvision.datasets.folder import make_dataset

    if not root.is_dir():
        raise BiLPError(f"--data-root {root} is not a folder: pass the folder holding the class folders (ImageNet: "
                        "its train/ folder)")
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    names = list(classes) if classes is not None else folders
    missing = [name for name in names if name not in folders]
    if not names or missing:
        raise BiLPError(f"{root} has no class folder {', '.join(missing[:5]) or '(none at all)'}: pass the folder "
                        "that holds the class folders, and --classes names among them")
    try:
        samples = make_dataset(str(root), {name: i for i, name in enumerate(names)}, IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise BiLPError(f"{root}: {err}") from None
    files = [os.path.relpath(path, root).replace(os.sep, "/") for path, _ in samples]
    return files, np.asarray([label for _, label in samples], dtype=np.int64), names


def load_imagefolder(root: Path, classes: Sequence[str] | None = None, size: int = DEFAULT_SIZE) -> RealSet:
    """The ``imagefolder`` dataset (module docstring) as a normalised :class:`RealSet` with its files."""
    from PIL import Image
    from torchvision.transforms import functional as tf

    if size < 1:
        raise BiLPError(f"--image-size must be >= 1, got {size}")
    files, labels, names = image_files(root, classes)
    images = torch.empty(len(files), 3, size, size)
    for i, file in enumerate(files):
        with Image.open(root / file) as image:
            picture = tf.center_crop(tf.resize(image.convert("RGB"), size), [size, size])
        images[i] = tf.to_tensor(picture)
    mean, std = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1), torch.tensor(IMAGENET_STD).view(-1, 1, 1)
    images.sub_(mean).div_(std)
    return RealSet("imagefolder", images, torch.from_numpy(labels), len(names), IMAGENET_MEAN, IMAGENET_STD,
                   files=files)


def load_tinyimagenet(root: Path) -> RealSet:
    """DC's and IDM's ``tinyimagenet.pt`` training split as a normalised :class:`RealSet`, in the file's order."""
    file = root / TINY_FILE
    if not file.is_file():
        raise BiLPError(f"{root} has no {TINY_FILE} (the tensor file DC's and IDM's TinyImageNet read); for the "
                        "tiny-imagenet-200 folder (MTT's Tiny), use --dataset imagefolder --data-root "
                        f"{root / 'train'}")
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
        images, labels = data["images_train"], data["labels_train"]
    except (OSError, RuntimeError, KeyError, TypeError) as err:
        raise BiLPError(f"cannot read {file} ({type(err).__name__}: {err}): expected a dict with images_train "
                        "and labels_train, as DC's TinyImageNet preparation writes it") from None
    images = images.detach().float() / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1), torch.tensor(IMAGENET_STD).view(-1, 1, 1)
    images.sub_(mean).div_(std)
    labels = labels.detach().to(torch.int64)
    return RealSet("tinyimagenet", images, labels, int(labels.max()) + 1, IMAGENET_MEAN, IMAGENET_STD)


def load(name: str, root: Path, train: bool = True, classes: Sequence[str] | None = None,
         image_size: int = DEFAULT_SIZE) -> RealSet:
    """The training split of the folder dataset ``name`` (these datasets only score level 1: no test split)."""
    if not train:
        raise BiLPError(f"dataset {name} serves level-1 scoring only (its training split); it has no test split here")
    if name == "tinyimagenet":
        return load_tinyimagenet(root)
    return load_imagefolder(root, classes, image_size)
