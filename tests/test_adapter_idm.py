"""The idm adapter against IDM's own code: its matching lines, run from a copy of the pinned scripts, are the
reference for the distance, the gradient and the exact leave-one-out ITE."""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bilp_adapters.idm import plugin
from upstreams import importable, materialise

from bilp_plugin.runtime import flags
from bilp_plugin import runtime
from bilp_plugin.method import ite
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.manager import PluginManager
from bilp_plugin.method.matchstep import MatchStep
from subsets import run_checks

pytestmark = pytest.mark.filterwarnings(  # IDM's number_sign_augment calls the deprecated F.upsample
    "ignore:`nn.functional.upsample` is deprecated:UserWarning")

SCRIPTS = ("IDM_cifar10.py", "IDM_cifar100.py", "IDM_tiny.py")
STUBS = Path(__file__).resolve().parent / "stubs"


@pytest.fixture(scope="module")
def idm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """IDM's files at the pinned commit, importable (``dc_utils``, ``dc_networks``) for this module only."""
    root = materialise("idm", tmp_path_factory.mktemp("idm"), upto=0)
    with importable(root):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy.ndimage.interpolation is deprecated (IDM's import)
            dc_utils = importlib.import_module("dc_utils")
            dc_networks = importlib.import_module("dc_networks")
        yield SimpleNamespace(root=root, dc_utils=dc_utils, dc_networks=dc_networks)


def convnet(idm: SimpleNamespace, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = idm.dc_networks.ConvNet(3, 10, 16, 3, "relu", "instancenorm", "avgpooling", (32, 32)).double()
    return net.eval()


def script_block(script: Path) -> str:
    """IDM's own matching lines, from taking the class's synthetic rows to the embedding-matching loss."""
    lines = script.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("img_syn = image_temp["))
    end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("loss_c += torch.sum("))
    return textwrap.dedent("\n".join(lines[start:end + 1]))


def script_loss(idm: SimpleNamespace, script: str, net: torch.nn.Module, args: SimpleNamespace):
    """``(real, syn_rows) -> loss_c`` computed by executing the script's lines (DSA off: the ITE is taken
    before augmentation)."""
    code = compile(script_block(idm.root / script), script, "exec")

    def loss(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
        ns = {"image_temp": syn, "c": 0, "args": args, "channel": 3, "im_size": tuple(real.shape[-2:]),
              "label_syn": torch.zeros(args.ipc, dtype=torch.long), "img_real": real,
              "embed": net.embed_channel_avg, "net": net, "number_sign_augment": idm.dc_utils.number_sign_augment,
              "DiffAugment": idm.dc_utils.DiffAugment, "time": time, "torch": torch, "F": F,
              "labels_all": torch.zeros(len(real), dtype=torch.long), "indices_class": [list(range(len(real)))],
              "metrics": {"syn": 0, "real": 0}, "loss_c": torch.tensor(0.0, dtype=torch.float64)}
        exec(code, ns)  # noqa: S102 - the pinned upstream's own lines are the reference
        return ns["loss_c"]

    return loss


def idm_args(ipc: int = 2, aug: bool = True, embed_last: int = 1000, **kw: object) -> SimpleNamespace:
    base = {"ipc": ipc, "aug": aug, "aug_num": 1, "dsa": False, "embed_last": embed_last, "init": "real",
            "batch_real": 256, "dsa_strategy": "color_crop_cutout_flip_scale_rotate"}
    return SimpleNamespace(**{**base, **kw})


def step_for(net: torch.nn.Module, args: SimpleNamespace, real: torch.Tensor, syn: torch.Tensor) -> MatchStep:
    labels = torch.zeros(len(real), dtype=torch.long)
    return MatchStep("idm", 0, real, labels, net, syn, args, 0, {"embed": net.embed_channel_avg})


def data(batch: int = 6, ipc: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, 32, 32, generator=g, dtype=torch.float64),
            torch.randn(ipc, 3, 32, 32, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("aug", [True, False])
def test_distance_and_gradient_equal_the_scripts_loss(idm: SimpleNamespace, script: str, aug: bool) -> None:
    net, args = convnet(idm), idm_args(aug=aug)
    real, syn = data()
    loss = plugin.matching_loss(step_for(net, args, real, syn))
    leaf = ite.leaf(syn)
    ours = loss.distance(loss.synthetic(leaf), loss.aggregate())
    theirs_leaf = ite.leaf(syn)
    theirs = script_loss(idm, script, net, args)(real, theirs_leaf)
    assert float(theirs.detach()) > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(ours, leaf)[0], torch.autograd.grad(theirs, theirs_leaf)[0],
                               rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("aug", [True, False])
def test_exact_and_taylor_ite_equal_leave_one_out_on_the_script(idm: SimpleNamespace, script: str,
                                                                 aug: bool) -> None:
    net, args = convnet(idm), idm_args(aug=aug)
    real, syn = data()
    reference = ite.ite_naive(script_loss(idm, script, net, args), real, ite.leaf(syn))
    loss = plugin.matching_loss(step_for(net, args, real, syn))
    exact = ite.ite_exact(loss, ite.leaf(syn))
    taylor = ite.ite_taylor(loss, ite.leaf(syn))
    assert reference.shape == (len(real), *syn.shape)
    assert float(ite.ite_norms(reference).min()) > 0
    torch.testing.assert_close(exact, reference, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(taylor, exact, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("aug", [True, False])
def test_imagenet_scripts_forward_embedding_is_the_adapters(idm: SimpleNamespace, aug: bool) -> None:
    """IDM_imagenet.py embeds with ``net(x, embed=True, last=embed_last)`` of its ConvNet_6 (the unflattened
    feature map), the hook passes ``embed_channel_avg``: the same loss, gradient and ITE."""
    torch.manual_seed(0)
    net = idm.dc_networks.ConvNet_6(3, 10, 8, 6, "relu", "instancenorm", "avgpooling", (64, 64)).double().eval()
    args = idm_args(aug=aug, embed_last=100)
    g = torch.Generator().manual_seed(2)
    real = torch.randn(5, 3, 64, 64, generator=g, dtype=torch.float64)
    syn = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    theirs = script_loss(idm, "IDM_imagenet.py", net, args)
    loss = plugin.matching_loss(step_for(net, args, real, syn))
    leaf, theirs_leaf = ite.leaf(syn), ite.leaf(syn)
    ours, reference = loss.distance(loss.synthetic(leaf), loss.aggregate()), theirs(real, theirs_leaf)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(ours, leaf)[0], torch.autograd.grad(reference, theirs_leaf)[0],
                               rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(ite.ite_exact(loss, ite.leaf(syn)), ite.ite_naive(theirs, real, ite.leaf(syn)),
                               rtol=1e-7, atol=1e-12)


def test_embed_last_selects_the_scripts_layers(idm: SimpleNamespace) -> None:
    """DM's default --embed_last -1 stops before the last pooling layer: another embedding, same agreement."""
    net, args = convnet(idm), idm_args(aug=True, embed_last=-1)
    real, syn = data()
    loss = plugin.matching_loss(step_for(net, args, real, syn))
    assert loss.real_stats[0].shape == (len(real), 16 * 8 * 8)
    leaf = ite.leaf(syn)
    theirs = script_loss(idm, "IDM_cifar10.py", net, args)(real, leaf)
    torch.testing.assert_close(loss.distance(loss.synthetic(leaf), loss.aggregate()), theirs, rtol=1e-12, atol=0)


def test_meta_grad_hook_touches_nothing(idm: SimpleNamespace) -> None:
    net, args = convnet(idm), idm_args()
    real, syn = data()
    image_syn = syn.clone().requires_grad_(True)
    pm = PluginManager().run_hooks("idm")
    rng = torch.get_rng_state()
    np_rng = np.random.get_state()[1].copy()
    norms = pm.meta_grad(step_for(net, args, real, image_syn[:2]), "taylor")
    exact = pm.meta_grad(step_for(net, args, real, image_syn[:2]), "exact")
    assert norms.shape == (len(real),) and bool((norms > 0).all())
    torch.testing.assert_close(norms, exact, rtol=1e-9, atol=0)
    assert image_syn.grad is None and all(p.grad is None for p in net.parameters())
    assert torch.equal(torch.get_rng_state(), rng) and np.array_equal(np.random.get_state()[1], np_rng)


def test_select_batch_keeps_rows_of_the_drawn_batch(idm: SimpleNamespace, tmp_path: Path) -> None:
    """The facade the hook patch calls, in process: level 1 restricts indices_class, level 2 keeps rows."""
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    args = parser.parse_args(["--bilp", "--bilp-alpha", "0.25", "--bilp-criterion", "random", "--bilp-beta", "0.5",
                              "--bilp-interval", "2", "--bilp-out", str(tmp_path / "run")])
    for key, value in vars(idm_args(ipc=1, batch_real=8)).items():
        setattr(args, key, value)
    labels = torch.arange(40) % 2
    indices_class = [[i for i in range(40) if i % 2 == c] for c in range(2)]
    net = convnet(idm)
    kept = runtime.prune_real(args, indices_class, labels, upstream="idm", dataset="toy")
    assert [len(k) for k in kept] == [15, 15] and all(set(k) <= set(i) for k, i in zip(kept, indices_class))
    real, syn = data(batch=8, ipc=1)
    first = runtime.select_batch(args, 0, real, net=net, syn=syn, iteration=0, embed=net.embed_channel_avg)
    again = runtime.select_batch(args, 0, real[:3], net=net, syn=syn, iteration=1, embed=net.embed_channel_avg)
    assert 1 <= len(first) < len(real) and again is first
    assert all(any(torch.equal(row, r) for r in real) for row in first)
    assert (tmp_path / "run" / "level2.jsonl").read_text().count("\n") == 1


def check_args(**kw: object) -> SimpleNamespace:
    return idm_args(**{"ipc": 10, "aug": False, "batch_real": 256, **kw})


@pytest.fixture
def script_name(monkeypatch: pytest.MonkeyPatch):
    def set_name(name: str) -> None:
        monkeypatch.setattr(sys, "argv", [f"/somewhere/{name}"])

    return set_name


def test_check_topk_trap_of_cifar10_ipc1_without_aug(script_name) -> None:
    script_name("IDM_cifar10.py")
    with pytest.raises(BiLPError, match=r"--batch_real >= 2560, got 256.*add --aug"):
        run_checks(plugin, "idm", check_args(ipc=1), BiLPConfig(alpha=0.1), None)
    with pytest.raises(BiLPError, match="level 2 cannot model IDM_cifar10.py's low-loss filter"):
        run_checks(plugin, "idm", check_args(ipc=1, batch_real=5000), BiLPConfig(beta=0.1), None)
    run_checks(plugin, "idm", check_args(ipc=1, batch_real=5000), BiLPConfig(alpha=0.1), None)
    with pytest.raises(BiLPError, match=r"fewer than 2560 samples in 1 class\(es\) \(class 1: 2000\)"):
        run_checks(plugin, "idm", check_args(ipc=1, batch_real=5000), BiLPConfig(alpha=0.6), [3000, 2000])
    run_checks(plugin, "idm", check_args(ipc=1, aug=True), BiLPConfig(beta=0.1), [3, 3])
    script_name("IDM_cifar100.py")  # the other scripts have no such filter
    run_checks(plugin, "idm", check_args(ipc=1), BiLPConfig(beta=0.1), [3, 3])


def test_check_class_sizes_after_level1(script_name) -> None:
    script_name("IDM_cifar10.py")
    with pytest.raises(BiLPError, match=r"fewer than 10 samples in 1 class\(es\) \(class 2: 9\).*--init real"):
        run_checks(plugin, "idm", check_args(), BiLPConfig(alpha=0.5), [10, 12, 9])
    run_checks(plugin, "idm", check_args(init="noise"), BiLPConfig(alpha=0.5), [10, 12, 9])
    with pytest.raises(BiLPError, match="--batch_real >= 2, got 1"):
        run_checks(plugin, "idm", check_args(batch_real=1), BiLPConfig(beta=0.1), None)


def test_torchnet_stand_in_computes_torchnets_accuracy() -> None:
    """The adapter's copy of torchnet 0.0.4's meter, which IDM's compat patch imports (and the test stub of the
    bare scripts re-exports)."""
    meter_mod: ModuleType = importlib.import_module("bilp_adapters.idm.torchnet").meter
    sys.path.insert(0, str(STUBS))
    try:
        assert importlib.import_module("torchnet").meter.ClassErrorMeter is meter_mod.ClassErrorMeter
    finally:
        sys.path.remove(str(STUBS))
        sys.modules.pop("torchnet", None)
    meter = meter_mod.ClassErrorMeter(accuracy=True)
    meter.add(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 1, 1]))
    meter.add(torch.tensor([0.2, 0.8]), torch.tensor([1]))  # one row, squeezed to 1-D
    assert meter.n == 4 and meter.value() == [pytest.approx(75.0)] and meter.value(1) == pytest.approx(75.0)
    top2 = meter_mod.ClassErrorMeter(topk=[2, 1])
    top2.add(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]), torch.tensor([1, 1]))
    assert top2.value() == [pytest.approx(100.0), pytest.approx(0.0)]
    meter.reset()
    assert meter.n == 0
