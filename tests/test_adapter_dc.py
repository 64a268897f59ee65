"""The dc adapter reproduces DatasetCondensation's own meta losses: its distance is the upstream's
``utils.match_loss``, its ITE equals the definition (Eq. 6) computed with the upstream's functions, and ``check``
refuses the settings the upstream cannot run with BiLP. Upstream modules come from a materialised copy."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from bilp_adapters.dc import plugin
from bilp_plugin.method import ite
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.matchstep import MatchStep
from subsets import run_checks
from upstreams import importable, manifest, materialise, repo_or_skip

METRICS = ("ours", "mse", "cos")
B, IPC, CLS = 5, 2, 3


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """``utils`` and ``networks`` of the upstream with its compat patch (what a patched run executes)."""
    root = materialise("dc", tmp_path_factory.mktemp("dc") / "upstream", upto=1)
    with importable(root):
        with warnings.catch_warnings():  # utils imports scipy.ndimage.interpolation, deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            utils = importlib.import_module("utils")
        yield SimpleNamespace(utils=utils, networks=importlib.import_module("networks"))


def convnet(networks: ModuleType, norm: str = "instancenorm", channel: int = 1) -> torch.nn.Module:
    """A small ConvNet of the upstream's own class (width 8, depth 2), in float64 for tight comparisons."""
    torch.manual_seed(0)
    net = networks.ConvNet(channel=channel, num_classes=10, net_width=8, net_depth=2, net_act="relu",
                           net_norm=norm, net_pooling="avgpooling", im_size=(28, 28))
    return net.double()


def batch(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def step(net: torch.nn.Module, args: SimpleNamespace, real: torch.Tensor | None = None,
         syn: torch.Tensor | None = None) -> MatchStep:
    real = batch(B, 1) if real is None else real
    syn = batch(IPC, 2) if syn is None else syn
    return MatchStep("dc", CLS, real, torch.full((len(real),), CLS), net, syn, args, 0, {})


def naive_norms(meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], s: MatchStep) -> torch.Tensor:
    return ite.ite_norms(ite.ite_naive(meta_loss, s.real, ite.leaf(s.syn)))


def dc_meta_loss(utils: ModuleType, net: torch.nn.Module, args: SimpleNamespace) -> Callable[..., torch.Tensor]:
    """The upstream's matching step (``main.py`` l.190-199) for one class, as a function of (real, syn)."""
    criterion = torch.nn.CrossEntropyLoss()
    params = list(net.parameters())

    def loss(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
        lab_real = torch.ones((real.shape[0],), dtype=torch.long) * CLS
        gw_real = [g.detach().clone() for g in torch.autograd.grad(criterion(net(real), lab_real), params)]
        lab_syn = torch.ones((syn.shape[0],), dtype=torch.long) * CLS
        gw_syn = torch.autograd.grad(criterion(net(syn), lab_syn), params, create_graph=True)
        return utils.match_loss(gw_syn, gw_real, args)

    return loss


def dm_meta_loss(net: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """The upstream's DM loss for one class (``main_DM.py`` l.160-163)."""
    def loss(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
        output_real = net.embed(real).detach()
        output_syn = net.embed(syn)
        return torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2)

    return loss


def dc_args(metric: str = "ours", **kw: object) -> SimpleNamespace:
    values = {"method": "DC", "dis_metric": metric, "device": "cpu", "model": "ConvNet", "init": "noise",
              "ipc": 1, "batch_real": 256}
    return SimpleNamespace(**{**values, **kw})


def dm_args(**kw: object) -> SimpleNamespace:
    return dc_args(**{"method": "DM", "init": "real", **kw})


# ------------------------------------------------------------------------------ the distance is match_loss
@pytest.mark.parametrize("metric", METRICS)
def test_dc_distance_equals_upstream_match_loss(upstream: SimpleNamespace, metric: str) -> None:
    """On random gradients shaped like every layer kind DC's distance handles (conv, norm, linear, bias)."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(8, 1, 3, 3), (8,), (8,), (8,), (8, 8, 3, 3), (8, 4, 4), (10, 392), (10,)]
    gw_real = [torch.randn(s, dtype=torch.float64, generator=gen) for s in shapes]
    gw_syn = [torch.randn(s, dtype=torch.float64, generator=gen) for s in shapes]
    expected = upstream.utils.match_loss(gw_syn, gw_real, dc_args(metric))
    got = ite.dc_distance(metric)(tuple(gw_syn), tuple(gw_real))
    torch.testing.assert_close(got.float(), expected.float(), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------- meta_grad equals the definition
@pytest.mark.parametrize("metric", METRICS)
def test_meta_grad_dc_exact_equals_naive_ite_of_match_loss(upstream: SimpleNamespace, metric: str) -> None:
    net, args = convnet(upstream.networks), dc_args(metric)
    s = step(net, args)
    expected = naive_norms(dc_meta_loss(upstream.utils, net, args), s)
    got = plugin.meta_grad(step=s, method="exact")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
    assert got.shape == (B,) and bool((got > 0).all())


def test_meta_grad_dc_taylor_equals_exact_for_mse(upstream: SimpleNamespace) -> None:
    """``mse`` is quadratic in the real gradient, so the Taylor ITE (mean form) is exact."""
    net, args = convnet(upstream.networks), dc_args("mse")
    s = step(net, args)
    torch.testing.assert_close(plugin.meta_grad(step=s, method="taylor"), plugin.meta_grad(step=s, method="exact"))


def test_meta_grad_dc_with_frozen_batchnorm_equals_naive(upstream: SimpleNamespace) -> None:
    """``main.py`` freezes BatchNorm (eval mode) before matching: per-sample gradients are then defined."""
    net, args = convnet(upstream.networks, norm="batchnorm"), dc_args("ours", model="ConvNetBN")
    net.train()
    net(batch(16, 4))  # running statistics, as main.py does with BNSizePC real images per class
    for module in net.modules():
        if "BatchNorm" in module._get_name():
            module.eval()
    s = step(net, args)
    expected = naive_norms(dc_meta_loss(upstream.utils, net, args), s)
    torch.testing.assert_close(plugin.meta_grad(step=s, method="exact"), expected, rtol=1e-5, atol=1e-9)


def test_meta_grad_refuses_batchnorm_in_training_mode(upstream: SimpleNamespace) -> None:
    net = convnet(upstream.networks, norm="batchnorm").train()
    with pytest.raises(BiLPError, match="BatchNorm layer .* training mode"):
        plugin.meta_grad(step=step(net, dc_args()), method="exact")


@pytest.mark.parametrize("method", ["exact", "taylor"])
def test_meta_grad_dm_equals_naive_ite_of_dm_loss(upstream: SimpleNamespace, method: str) -> None:
    """DM's loss is quadratic in the mean real embedding: exact and Taylor both equal the definition."""
    net = convnet(upstream.networks)
    for p in net.parameters():
        p.requires_grad = False  # as main_DM.py does
    s = step(net, dm_args())
    expected = naive_norms(dm_meta_loss(net), s)
    torch.testing.assert_close(plugin.meta_grad(step=s, method=method), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["DC", "DM"])
def test_batched_vjp_path_used_on_gpus_equals_the_cpu_loop(upstream: SimpleNamespace, method: str) -> None:
    """GPUs batch the vector-Jacobian products (``is_grads_batched``); through DC's double backward and DM's
    embedding they must give what the CPU's plain loop gives."""
    net = convnet(upstream.networks)
    s = step(net, dc_args() if method == "DC" else dm_args())
    loss = plugin.gradient_matching(s) if method == "DC" else plugin.distribution_matching(s)
    looped = ite.ite_exact(loss, ite.leaf(s.syn), chunk=1)
    torch.testing.assert_close(ite.ite_exact(loss, ite.leaf(s.syn), chunk=None), looped)
    torch.testing.assert_close(ite.ite_exact(loss, ite.leaf(s.syn), chunk=2), looped)


# ------------------------------------------------------------------------------------------- check
@pytest.mark.parametrize(("args", "config", "kept", "message"), [
    (dm_args(model="ConvNetBN"), BiLPConfig(beta=0.2), None, "BatchNorm path"),
    (dc_args("l1"), BiLPConfig(beta=0.2), None, "supports --dis_metric ours, mse, cos; got 'l1'"),
    (dc_args(batch_real=1), BiLPConfig(beta=0.2), None, "--batch_real >= 2"),
    (dc_args(init="real", ipc=10), BiLPConfig(alpha=0.999), [6, 7, 9], "keeps only 6 of class 0"),
    (dm_args(model="ConvNetBN", batch_real=64), BiLPConfig(alpha=0.99), [60, 59, 70], "keeps only 59 of class 1"),
])
def test_check_refuses_unsupported_settings(args: SimpleNamespace, config: BiLPConfig, kept: list[int] | None,
                                            message: str) -> None:
    with pytest.raises(BiLPError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_checks(plugin, "dc", args, config, kept)


@pytest.mark.parametrize(("args", "config", "kept"), [
    (dc_args("ours", model="ConvNetBN"), BiLPConfig(beta=0.2), [2, 3]),  # BN is frozen in main.py
    (dm_args(model="ConvNetBN", batch_real=64), BiLPConfig(alpha=0.9), [600, 64]),
    (dc_args("l1"), BiLPConfig(alpha=0.5), [100, 100]),  # the metric matters to level 2 only
    (dm_args(ipc=10), BiLPConfig(alpha=0.99, beta=0.2), [10, 12]),
])
def test_check_accepts_supported_settings(args: SimpleNamespace, config: BiLPConfig, kept: list[int]) -> None:
    run_checks(plugin, "dc", args, config, None)
    run_checks(plugin, "dc", args, config, kept)


# ------------------------------------------------------------------------------------------- bilp-apply
def test_bilp_apply_then_revert_round_trips_a_clone_byte_for_byte(tmp_path: Path) -> None:
    """On a temporary clone given with --upstream (never the submodule itself)."""
    import git

    from bilp_plugin.cli import apply_main

    m = manifest("dc")
    repo_or_skip("dc")
    clone = git.Repo.clone_from(str(m.checkout), tmp_path / "clone", no_checkout=True)
    clone.git.checkout(m.commit)
    files = {p: (tmp_path / "clone" / p).read_bytes() for p in clone.git.ls_files().splitlines()}
    adapter = [str(m.root / "adapters" / "dc"), "--upstream", str(tmp_path / "clone")]

    assert apply_main([*adapter, "--check"]) == 0
    assert apply_main(adapter) == 0
    for script in m.scripts:
        text = (tmp_path / "clone" / script).read_bytes()
        assert b"bilp.prune_real(" in text and b"bilp.select_batch(" in text and b"\r\n" in text
    assert apply_main(adapter) == 0  # a second apply is a no-op
    assert apply_main([*adapter, "--revert"]) == 0
    assert {p: (tmp_path / "clone" / p).read_bytes() for p in files} == files
    assert clone.git.status("--porcelain") == ""


class Payload:
    """Unpickling this would run ``print``: a result file must never do that."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return print, ("code from the result file ran",)


def test_result_file_is_read_without_running_its_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bilp_plugin.lab.launched import read_accuracies

    file = tmp_path / "res.pt"
    torch.save({"accs_all_exps": {"ConvNet": [Payload()]}}, file)
    with pytest.raises(BiLPError, match="cannot read the accuracies in .*res.pt"):
        read_accuracies(file)
    assert "ran" not in capsys.readouterr().out
