"""Dataset loaders: order, normalisation and errors. Tests on real MNIST/CIFAR-10 need BILP_DATA."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision import transforms

from bilp_plugin.lab.datasets import canonical_name, data_root, load_dataset
from bilp_plugin.errors import BiLPError

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def bilp_data() -> str:
    root = os.environ.get("BILP_DATA")
    if not root:
        pytest.skip("BILP_DATA not set: export BILP_DATA=DIR, a folder of torchvision layouts (docs/data.md)")
    return root


DC_STATS = {  # mean, std as in DatasetCondensation's utils.get_dataset
    "mnist": ([0.1307], [0.3081]),
    "fashion-mnist": ([0.2861], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "cifar100": ([0.5071, 0.4866, 0.4409], [0.2673, 0.2564, 0.2762]),
    "svhn": ([0.4377, 0.4438, 0.4728], [0.1980, 0.2010, 0.1970]),
}


def dc_transform(dataset: str) -> transforms.Compose:
    """DatasetCondensation's transform for ``dataset``: ToTensor, then Normalize with its mean/std."""
    mean, std = DC_STATS[dataset]
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=mean, std=std)])


def assert_same_as(real, reference, indices) -> None:
    """The RealSet's samples equal, bit for bit, the upstream's transformed torchvision samples."""
    for i in indices:
        image, label = reference[i]
        assert torch.equal(real.images[i], image), f"image {i} differs"
        assert int(real.labels[i]) == int(label), f"label {i} differs"


def test_digits_split_order_and_normalisation() -> None:
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits"), load_dataset("digits", train=False)
    raw = load_digits()
    assert (len(train), len(test)) == (1500, 297)
    assert train.images.shape == (1500, 1, 8, 8) and train.images.dtype == torch.float32
    assert train.labels.dtype == torch.int64 and train.num_classes == 10
    assert torch.equal(torch.cat([train.labels, test.labels]), torch.as_tensor(raw.target))
    expected = (torch.from_numpy(raw.images[:1500].astype(np.float32) / 16) - train.mean[0]) / train.std[0]
    assert torch.allclose(train.images[:, 0], expected, atol=1e-6)
    assert abs(float(train.images.mean())) < 1e-3 and abs(float(train.images.std()) - 1) < 1e-3
    assert torch.equal(load_dataset("digits").images, train.images)


def test_digits_needs_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(BiLPError, match="pip install scikit-learn"):
        load_dataset("digits")


def test_subset_keeps_order_and_metadata() -> None:
    digits = load_dataset("digits")
    part = digits.subset([5, 2, 9])
    assert torch.equal(part.labels, digits.labels[[5, 2, 9]])
    assert torch.equal(part.images[1], digits.images[2])
    assert (part.name, part.num_classes, part.channel, part.im_size) == ("digits", 10, 1, (8, 8))


@pytest.mark.parametrize("name, expected", [("CIFAR10", "cifar10"), ("FashionMNIST", "fashion-mnist"),
                                            ("fashion_mnist", "fashion-mnist"), ("svhn", "svhn")])
def test_canonical_names(name: str, expected: str) -> None:
    assert canonical_name(name) == expected


def test_unknown_dataset_names_value_and_choices() -> None:
    with pytest.raises(BiLPError, match=r"unknown dataset 'imagenet': expected one of digits, mnist"):
        load_dataset("imagenet")


def test_missing_root_says_how_to_provide_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BILP_DATA", raising=False)
    with pytest.raises(BiLPError) as err:
        load_dataset("mnist")
    for part in ("--data-root DIR", "export BILP_DATA=DIR", "docs/data.md"):
        assert part in str(err.value)


def test_root_from_environment_and_not_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILP_DATA", str(tmp_path))
    assert data_root(None) == tmp_path
    with pytest.raises(BiLPError, match=r"nope is not a folder"):
        data_root(str(tmp_path / "nope"))


@pytest.mark.parametrize("name, missing", [("mnist", "MNIST/raw lacks train-images-idx3-ubyte"),
                                           ("fashion-mnist", "FashionMNIST/raw lacks train-images"),
                                           ("cifar10", "cifar-10-batches-py lacks data_batch_1"),
                                           ("cifar100", "cifar-100-python lacks train, meta"),
                                           ("svhn", "lacks train_32x32.mat")])
def test_incomplete_root_names_the_missing_files(tmp_path: Path, name: str, missing: str) -> None:
    with pytest.raises(BiLPError, match=missing):
        load_dataset(name, str(tmp_path))


def test_mnist_equals_torchvision_order_and_transform() -> None:
    root = bilp_data()
    train, test = load_dataset("mnist", root), load_dataset("mnist", root, train=False)
    assert (len(train), len(test)) == (60000, 10000) and train.images.shape[1:] == (1, 28, 28)
    reference = torchvision.datasets.MNIST(root, train=True, transform=dc_transform("mnist"))
    assert torch.equal(train.labels, reference.targets)
    assert_same_as(train, reference, [0, 1, 31337, 59999])


def test_cifar10_equals_torchvision_order_and_transform(monkeypatch: pytest.MonkeyPatch) -> None:
    root = bilp_data()
    train = load_dataset("cifar10", root)
    assert len(train) == 50000 and train.images.shape[1:] == (3, 32, 32)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    reference = torchvision.datasets.CIFAR10(root, train=True, transform=dc_transform("cifar10"))
    assert train.labels.tolist() == reference.targets and train.labels[:5].tolist() == [6, 9, 9, 4, 1]
    assert_same_as(train, reference, [0, 12345, 49999])
    assert len(load_dataset("cifar10", root, train=False)) == 10000


def test_fashion_mnist_from_debian_files(tmp_path: Path) -> None:
    if not FASHION_DEBIAN.is_dir():
        pytest.skip(f"{FASHION_DEBIAN} missing: `apt-get install dataset-fashion-mnist`")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in FASHION_DEBIAN.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    train = load_dataset("fashion-mnist", str(tmp_path))
    reference = torchvision.datasets.FashionMNIST(str(tmp_path), transform=dc_transform("fashion-mnist"))
    assert len(train) == 60000 and torch.equal(train.labels, reference.targets)
    assert_same_as(train, reference, [0, 59999])


def _write_cifar100(root: Path, n: int) -> np.ndarray:
    folder = root / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data, labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 100, n).tolist()
    for name, entry in [("train", {"data": data, "fine_labels": labels, "coarse_labels": labels}),
                        ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})]:
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    return np.asarray(labels)


def test_cifar100_synthetic_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = _write_cifar100(tmp_path, 20)
    with pytest.raises(BiLPError, match="md5"):
        load_dataset("cifar100", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    train = load_dataset("cifar100", str(tmp_path))
    assert train.num_classes == 100 and train.labels.tolist() == labels.tolist()
    reference = torchvision.datasets.CIFAR100(str(tmp_path), transform=dc_transform("cifar100"))
    assert_same_as(train, reference, range(20))


def test_svhn_synthetic_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sio = pytest.importorskip("scipy.io", reason="the SVHN loader test writes .mat files with scipy: pip install scipy")
    rng = np.random.default_rng(0)
    y = np.array([[10], [1], [3], [10], [9]], dtype=np.uint8)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    sio.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", lambda *a, **k: True)
    train = load_dataset("svhn", str(tmp_path))
    assert train.labels.tolist() == [0, 1, 3, 0, 9] and train.images.shape == (5, 3, 32, 32)
    reference = torchvision.datasets.SVHN(str(tmp_path), transform=dc_transform("svhn"))
    assert_same_as(train, reference, range(5))
