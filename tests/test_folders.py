"""Folder datasets for level 1: the upstreams' sample order (torchvision's, IDC's and IDM's ImageFolder), the file
list's checksum in score files and its check at run time (the ``real_files`` hook), DC's TinyImageNet file, and
``--bilp`` refused in the IDC scripts that run no BiLP (the ``check_script`` hook)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from fake_data import write_tree
from torchvision import datasets
from upstreams import importable, materialise

from bilp_plugin import hookimpl, runtime
from bilp_plugin.cli import main
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import folders
from bilp_plugin.manager import PluginManager
from bilp_plugin.method import scorefile


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 classes of 5 images, plus what the order rules must handle: a sub-folder, an upper-case extension, a file
    that is no image."""
    root = write_tree(tmp_path_factory.mktemp("tree"), classes=6, per_class=5)
    train = root / "train"
    nested = train / "n00000002" / "more"
    nested.mkdir()
    (train / "n00000002" / "img_000.png").rename(nested / "a.png")
    (train / "n00000004" / "img_001.png").rename(train / "n00000004" / "B.PNG")
    (train / "n00000001" / "notes.txt").write_text("not an image")
    return train


def test_order_is_torchvisions_imagefolder(tree: Path) -> None:
    files, labels, classes = folders.image_files(tree)
    theirs = datasets.ImageFolder(str(tree))
    assert files == [str(Path(p).relative_to(tree).as_posix()) for p, _ in theirs.samples]
    assert labels.tolist() == theirs.targets and classes == theirs.classes
    assert "n00000002/more/a.png" in files and "n00000004/B.PNG" in files and len(files) == 30


@pytest.fixture(scope="module")
def upstream_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """IDC's ``data.py`` and IDM's ``others_edc.py`` at their pinned commits, importable for this module."""
    base = tmp_path_factory.mktemp("upstreams")
    idc, idm = materialise("idc", base / "idc", upto=1), materialise("idm", base / "idm", upto=1)
    state = np.random.get_state()  # their class selection reseeds numpy's global generator
    with importable(idc):
        idc_data = importlib.import_module("data")
    with importable(idm):
        idm_data = importlib.import_module("others_edc")
    yield SimpleNamespace(idc=idc_data, idm=idm_data)
    np.random.set_state(state)


@pytest.mark.parametrize("upstream", ["idc", "idm"])
def test_order_is_the_upstreams_imagefolder_with_its_class_selection(tree: Path, upstream_folders: SimpleNamespace,
                                                                   upstream: str) -> None:
    """IDC's and IDM's ImageFolder pick --nclass classes by --dseed (here: all 6, in a permuted label order): the
    same files in the same order, the classes numbered otherwise; the built-in real_files hook reads them."""
    module = getattr(upstream_folders, upstream)
    theirs = module.ImageFolder(str(tree), nclass=6, seed=1, load_memory=False)
    files, labels, _ = folders.image_files(tree)
    assert PluginManager().run_hooks(upstream).real_files(theirs) == files
    assert theirs.targets != labels.tolist() and scorefile.same_partition(theirs.targets, labels)
    picked = theirs.classes[:3]  # --classes in their label order gives their labels exactly
    sub = module.ImageFolder(str(tree), nclass=6, seed=1, load_memory=False)
    sub_files, sub_labels, _ = folders.image_files(tree, picked)
    keep = [i for i, t in enumerate(sub.targets) if t < 3]
    assert sub_files == [files[i] for i in range(len(files)) if theirs.targets[i] < 3]
    assert sub_labels.tolist() == [sub.targets[i] for i in keep]


def _score_file(files: list[str], labels: np.ndarray) -> scorefile.ScoreFile:
    meta = scorefile.dataset_meta("imagefolder", labels, files)
    return scorefile.ScoreFile(np.zeros(len(files)), labels, meta, path="s.npz")


def test_check_accepts_the_same_files_numbered_otherwise_and_refuses_others(tree: Path) -> None:
    files, labels, _ = folders.image_files(tree)
    made = _score_file(files, labels)
    renumbered = (labels + 1) % 6
    scorefile.check_matches(made, renumbered, "imagenet", files)
    with pytest.raises(BiLPError, match=r"other files, or in another order.*30 files of 6 class folders"):
        scorefile.check_matches(made, labels, "imagenet", files[1:] + files[:1])
    subset = [i for i, f in enumerate(files) if not f.startswith("n00000000")]
    with pytest.raises(BiLPError) as refused:
        scorefile.check_matches(made, renumbered[subset], "imagenet", [files[i] for i in subset])
    message = str(refused.value)
    assert "\n" not in message  # the run's classes, in its label order: scoring them gives its labels
    assert "--classes n00000005,n00000001,n00000002,n00000003,n00000004`" in message
    merged = np.where(labels == 1, 0, labels)
    with pytest.raises(BiLPError, match="groups them into other classes"):
        scorefile.check_matches(made, merged, "imagenet", files)
    scorefile.check_matches(made, labels, "imagenet")  # a run without files: the label checksum decides


def test_bilp_score_imagefolder_records_the_file_list(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.npz"
    assert main(["score", "--dataset", "imagefolder", "--data-root", str(tree), "--classes", "n00000003,n00000001",
                 "--image-size", "12", "--epochs", "1", "--width", "8", "--out", str(out)]) == 0
    with np.load(out) as z:
        meta, labels = json.loads(str(z["meta"])), z["labels"]
    files, expected, _ = folders.image_files(tree, ["n00000003", "n00000001"])
    assert meta["files_sha256"] == scorefile.files_sha256(files) and labels.tolist() == expected.tolist()
    assert files[0].startswith("n00000001/") and labels[0] == 1  # order by folder name, labels by --classes
    real = folders.load_imagefolder(tree, None, 12)
    assert real.images.shape == (30, 3, 12, 12) and real.files == folders.image_files(tree)[0]


def test_bad_folder_inputs_are_one_line(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in [(["--data-root", str(tree), "--classes", "n00000009"], "has no class folder n00000009"),
                           (["--data-root", str(tree / "nope")], "is not a folder"),
                           (["--data-root", str(tree), "--classes", "a,a"], "distinct class folders")]:
        assert main(["score", "--dataset", "imagefolder", *argv, "--out", str(tmp_path / "x.npz")]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()


def test_tinyimagenet_reads_dcs_tensor_file(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (7, 3, 64, 64), generator=g, dtype=torch.uint8)
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2])
    torch.save({"classes": ["a", "b", "c"], "images_train": images, "labels_train": labels,
                "images_val": images[:2], "labels_val": labels[:2]}, tmp_path / folders.TINY_FILE)
    real = folders.load("tinyimagenet", tmp_path)
    assert real.labels.tolist() == labels.tolist() and real.num_classes == 3 and real.files is None
    mean, std = torch.tensor(folders.IMAGENET_MEAN), torch.tensor(folders.IMAGENET_STD)
    torch.testing.assert_close(real.images[3, 1], (images[3, 1].float() / 255 - mean[1]) / std[1])
    with pytest.raises(BiLPError, match="--dataset imagefolder"):
        folders.load("tinyimagenet", tmp_path / "elsewhere")


class ToyAdapter:
    """An adapter's implementations of the two hooks of this module's subject (no upstream argument: the calls of
    a run reach its own adapter only)."""

    @hookimpl(tryfirst=True)
    def real_files(self, real: Any) -> list[str]:
        return ["x.png"] * len(real)

    @hookimpl
    def check_script(self, script: str) -> None:
        if script != "distill.py":
            raise BiLPError(f"{script} runs no BiLP: use distill.py")


def test_hooks_can_be_overridden(tree: Path) -> None:
    manager = PluginManager()
    manager.register_adapter("toy", ToyAdapter())
    toy, idc = manager.run_hooks("toy"), manager.run_hooks("idc")
    assert toy.real_files(torch.utils.data.TensorDataset(torch.zeros(3))) == ["x.png"] * 3
    assert idc.real_files(datasets.ImageFolder(str(tree))) == folders.image_files(tree)[0]  # not toy's answer
    assert idc.real_files(torch.zeros(3)) is None
    toy.check_script("distill.py")
    idc.check_script("condense.py")
    with pytest.raises(BiLPError, match="use distill.py"):
        toy.check_script("buffer.py")


def _parse(monkeypatch: pytest.MonkeyPatch, script: str, argv: list[str]) -> argparse.Namespace:
    monkeypatch.setattr(sys, "argv", [f"/somewhere/{script}", *argv])
    parser = argparse.ArgumentParser(prog=script)
    runtime.add_arguments(parser, upstream="idc")
    return parser.parse_args(argv)


def test_idc_scripts_without_bilp_calls_refuse_the_flag_as_it_is_parsed(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    for script in ("condense.py", "condense_mp.py"):
        assert _parse(monkeypatch, script, ["--bilp", "--bilp-alpha", "0.5"]).bilp
    for script in ("train.py", "test.py", "pretrain.py", "coreset.py"):
        assert not _parse(monkeypatch, script, []).bilp  # without --bilp nothing is checked
        with pytest.raises(SystemExit) as stop:
            _parse(monkeypatch, script, ["--bilp-alpha", "0.5", "--bilp"])
        assert stop.value.code == 2
        assert capsys.readouterr().err == (f"bilp: error: {script} parses IDC's --bilp flags (argument.py) but runs "
                                           "no BiLP: only condense.py and condense_mp.py do; drop --bilp here\n")
