"""The idc adapter against IDC's own code (imported from a copy of the upstream with its compat patch): its
distance is IDC's ``matchloss``, its exact ITE is the leave-one-out definition on IDC's loss through the
multi-formation decoder, its checks refuse what IDC cannot run, and level 1 keeps IDC's dataset usable."""

from __future__ import annotations

import argparse
import importlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from bilp_adapters.idc import plugin
from upstreams import importable, materialise

from bilp_plugin import runtime
from bilp_plugin.method import ite
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.manager import PluginManager
from bilp_plugin.tools.launch import CudaToCpu
from bilp_plugin.method.matchstep import MatchStep
from bilp_plugin.runtime.kept import KeptDataset
from subsets import run_checks

pytestmark = pytest.mark.filterwarnings("ignore:Creating a tensor from a list of numpy.ndarrays:UserWarning")


@pytest.fixture(scope="module")
def idc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """IDC's ``condense`` module (compat patch applied), importable on a CPU-only machine."""
    root = materialise("idc", tmp_path_factory.mktemp("idc"), upto=1)
    with importable(root), warnings.catch_warnings(), CudaToCpu():  # train.py builds CUDA tensors at import
        yield importlib.import_module("condense")


def idc_args(**over: Any) -> SimpleNamespace:
    """The IDC arguments the adapter and IDC's functions read (tiny ConvNet-3, CIFAR-10 shapes)."""
    base: dict[str, Any] = {
        "dataset": "cifar10", "net_type": "convnet", "norm_type": "instance", "depth": 3, "width": 0.125, "nch": 3,
        "size": 32, "match": "grad", "metric": "mse", "bias": False, "fc": False, "ipc": 2, "factor": 2,
        "decode_type": "single", "batch_syn_max": 128, "init": "mix", "load_memory": True, "batch_real": 8}
    return SimpleNamespace(**{**base, **over})


def make_step(idc: ModuleType, args: SimpleNamespace, batch: int = 5, cls: int = 1) -> MatchStep:
    torch.manual_seed(0)
    net = idc.define_model(args, 10)
    synset = idc.Synthesizer(args, 10, args.nch, args.size, args.size, device="cpu")
    real = torch.rand(batch, args.nch, args.size, args.size)
    labels = torch.full((batch,), cls, dtype=torch.long)
    return MatchStep("idc", cls, real, labels, net, synset, args, 0)


def upstream_loss(idc: ModuleType, step: MatchStep) -> Any:
    """IDC's own meta loss of the step's class as a function of (real batch, stored synthetic rows)."""
    args, synset = step.args, step.syn
    target = synset.targets[synset.ipc * step.cls:synset.ipc * (step.cls + 1)]
    norm = idc.utils.Normalize(idc.MEANS[args.dataset], idc.STDS[args.dataset], device="cpu")

    def loss(real: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
        img_syn, lab_syn = synset.decode(stored, target, bound=args.batch_syn_max)
        return idc.matchloss(args, norm(real), norm(img_syn), step.real_labels[:len(real)], lab_syn, step.net)

    return loss


METRICS = [("mse", False, False), ("l1", False, False), ("l1_mean", True, False), ("cos", False, True),
           ("mse", True, True)]


@pytest.mark.parametrize(("metric", "bias", "fc"), METRICS)
def test_distance_is_idc_matchloss(idc: ModuleType, metric: str, bias: bool, fc: bool) -> None:
    step = make_step(idc, idc_args(metric=metric, bias=bias, fc=fc))
    loss = plugin.meta_loss(step)
    stored = plugin.stored(step)
    ours = loss.distance(loss.synthetic(stored), loss.aggregate())
    theirs = upstream_loss(idc, step)(step.real, stored)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["mse", "l1", "cos"])
def test_exact_ite_is_leave_one_out_on_idc_loss(idc: ModuleType, metric: str) -> None:
    step = make_step(idc, idc_args(metric=metric))
    ours = ite.ite_exact(plugin.meta_loss(step), plugin.stored(step))
    reference = ite.ite_naive(upstream_loss(idc, step), step.real, plugin.stored(step))
    assert ours.shape == (len(step.real), step.syn.ipc, 3, 32, 32)  # w.r.t. the stored (undecoded) rows
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(plugin.meta_grad(step=step, method="exact"), ite.ite_norms(reference),
                               rtol=1e-3, atol=1e-6)


def test_taylor_ite_of_mse_equals_exact(idc: ModuleType) -> None:
    """IDC's ``mse`` is quadratic in the real aggregate: the Taylor ITE (mean form) is exact."""
    step = make_step(idc, idc_args(metric="mse"))
    exact = plugin.meta_grad(step=step, method="exact")
    torch.testing.assert_close(plugin.meta_grad(step=step, method="taylor"), exact, rtol=1e-4, atol=1e-6)


def test_l1_taylor_falls_back_to_exact(idc: ModuleType, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """IDC's MNIST preset ``l1``: the Taylor ITE vanishes, so a Taylor request gives the exact ITE, logged."""
    monkeypatch.setattr("bilp_plugin.method.ite._warned", set())  # the fallback is logged once per process
    step = make_step(idc, idc_args(metric="l1"))
    norms = plugin.meta_grad(step=step, method="taylor")
    err = capsys.readouterr().err
    assert "vanishes" in err and "using the exact ITE" in err
    assert bool((norms > 0).all())
    torch.testing.assert_close(norms, plugin.meta_grad(step=step, method="exact"))


def test_meta_grad_consumes_no_random_numbers(idc: ModuleType) -> None:
    step = make_step(idc, idc_args(factor=3, ipc=1, batch_syn_max=4))  # 9 decoded > 4: IDC would subsample
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    plugin.meta_grad(step=step, method="taylor")
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])


# ----------------------------------------------------------------------------------------------- checks
LEVEL2 = BiLPConfig(beta=0.2)


@pytest.mark.parametrize(("over", "message"), [
    ({"match": "feat"}, "--match grad"),
    ({"metric": "l2"}, "does not implement --metric l2"),
    ({"norm_type": "batch"}, "--norm_type batch couples the batch"),
    ({"net_type": "efficient"}, "--net_type efficient"),
    ({"batch_real": 1}, "--batch_real 1"),
])
def test_check_refuses_level2_settings(over: dict[str, Any], message: str) -> None:
    with pytest.raises(BiLPError, match=message):
        run_checks(plugin, "idc", idc_args(**over), LEVEL2, None)


def test_check_passes_level2_defaults_and_ignores_them_without_level2() -> None:
    run_checks(plugin, "idc", idc_args(), LEVEL2, None)
    run_checks(plugin, "idc", idc_args(match="feat"), BiLPConfig(alpha=0.5), None)


@pytest.mark.parametrize(("over", "kept", "message"), [
    ({"ipc": 1, "batch_real": 8}, [20, 7, 20], "keeps 7 samples of class 1, fewer than --batch_real 8"),
    ({"ipc": 3, "factor": 2, "batch_real": 2}, [20, 11, 20], "--init mix with --ipc 3 --factor 2 takes 12"),
    ({"ipc": 3, "init": "random", "batch_real": 2}, [2, 20], "--init random with --ipc 3 --factor 2 takes 3"),
])
def test_check_refuses_too_small_classes(over: dict[str, Any], kept: list[int], message: str) -> None:
    with pytest.raises(BiLPError, match=message):
        run_checks(plugin, "idc", idc_args(**over), BiLPConfig(alpha=0.5), kept)


def test_check_lets_the_file_loader_sample_small_classes() -> None:
    run_checks(plugin, "idc", idc_args(load_memory=False, ipc=1, factor=1), BiLPConfig(alpha=0.5), [20, 3, 20])


# ----------------------------------------------------------------------------------------------- level 1
class Toy(torch.utils.data.Dataset):
    """A torchvision-like training set (``targets`` list, ``nclass``, an extra attribute) of float images."""

    def __init__(self, n: int = 30) -> None:
        self.images = torch.rand(n, 3, 32, 32)
        self.targets = [i % 3 for i in range(n)]
        self.nclass = 3
        self.classes = ["a", "b", "c"]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]

    def __len__(self) -> int:
        return len(self.targets)


def test_restrict_wraps_a_dataset_for_every_idc_loader(idc: ModuleType) -> None:
    toy = Toy()
    kept = np.array([0, 3, 4, 7, 9, 10, 11, 13, 15, 17, 18, 20, 22, 23, 25, 26, 28, 29])
    sub = PluginManager().run_hooks("idc").restrict_real(toy, kept)  # the built-in wraps any dataset with targets
    assert isinstance(sub, KeptDataset) and len(sub) == len(kept) and sub.nclass == 3 and sub.classes == toy.classes
    assert sub.targets == [toy.targets[i] for i in kept]
    assert torch.equal(sub[2][0], toy[int(kept[2])][0])
    mem = idc.ClassMemDataLoader(sub, batch_size=4, device="cpu")
    img, lab = mem.class_sample(1, 4)
    assert torch.equal(img, torch.stack([toy[i][0] for i in kept if toy.targets[i] == 1][:4]))
    with warnings.catch_warnings(), CudaToCpu():
        warnings.simplefilter("ignore")  # pin_memory without a GPU
        files = idc.ClassDataLoader(sub, batch_size=4, num_workers=0, shuffle=True, pin_memory=False,
                                    drop_last=True)
        img, lab = files.class_sample(2)
    assert img.shape == (4, 3, 32, 32) and bool((lab == 2).all())


def bilp_args(tmp_path: Path, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    runtime.add_arguments(parser)
    args = parser.parse_args(["--bilp", "--bilp-out", str(tmp_path / "record"), *flags])
    for key, value in vars(idc_args(batch_real=2, ipc=1, factor=1)).items():
        setattr(args, key, value)
    return args


def test_level1_scores_idc_dataset_on_the_fly(idc: ModuleType, tmp_path: Path) -> None:
    """Without --bilp-scores, level 1 scores IDC's own dataset object (the adapter's ``real_images``)."""
    toy = Toy(60)
    args = bilp_args(tmp_path, "--bilp-alpha", "0.5", "--bilp-score-epochs", "1")
    sub = runtime.prune_real(args, toy, toy.targets, upstream="idc", dataset="cifar10")
    assert isinstance(sub, KeptDataset) and len(sub) == 30
    assert np.bincount(sub.targets).tolist() == [10, 10, 10]
    assert (tmp_path / "record" / "scores.npz").exists()


def test_real_images_are_normalised_as_idc_does(idc: ModuleType) -> None:
    toy = Toy(4)
    norm = idc.utils.Normalize(idc.MEANS["cifar10"], idc.STDS["cifar10"], device="cpu")
    torch.testing.assert_close(plugin.real_images(real=toy, dataset="cifar10"), norm(toy.images))
