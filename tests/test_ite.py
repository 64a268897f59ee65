"""Level 2 ITE parity against the definition (Eq. 6), on real data and a ConvNet-3 as the upstreams define it.

* factored exact ITE == naive leave-one-out ITE, to float precision, for every meta loss;
* distribution matching: Taylor == exact (the loss is quadratic in G);
* gradient matching (DC ours/mse/cos): Spearman(Taylor, exact) >= 0.9 (median over 5 batches of 64, two
  datasets) and at most 10% of keep/prune decisions at beta = 0.2 differ.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from bilp_plugin.method import ite, level2
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method.realset import RealSet
from bilp_plugin.method.convnet import ConvNet

WIDTH, BATCH, BATCHES, CLS = 16, 64, 5, 3


Prepared = tuple[str, ConvNet, list[tuple[torch.Tensor, torch.Tensor]]]


@pytest.fixture(scope="module", params=["mnist", "cifar10"])
def prepared(request: pytest.FixtureRequest) -> Prepared:
    root = request.getfixturevalue(f"{request.param}_root")
    return (request.param, *_batches(load_dataset(request.param, str(root))))


def _batches(data: RealSet) -> tuple[ConvNet, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A ConvNet-3 trained 40 steps (so gradients are not those of a random net), the synthetic rows (two real
    images of the class) and BATCHES disjoint real batches of that class."""
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ConvNet(data.channel, data.num_classes, width=WIDTH, im_size=data.im_size)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(40):
        idx = torch.randint(len(data), (64,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(data.images[idx]), data.labels[idx]).backward()
        opt.step()
    members = torch.nonzero(data.labels == CLS).flatten()
    members = members[torch.randperm(len(members), generator=g)]
    batches = [(data.images[members[2 + i * BATCH: 2 + (i + 1) * BATCH]], data.images[members[:2]])
               for i in range(BATCHES)]
    return net, batches


def _gradient_matching(net: ConvNet, real: torch.Tensor, distance: ite.Distance
                       ) -> tuple[ite.SeparableLoss, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    labels = torch.full((len(real),), CLS)
    syn_labels = torch.full((2,), CLS)
    loss = ite.SeparableLoss(ite.per_sample_grads(net, real, labels), ite.synthetic_grads(net, syn_labels), distance)

    def meta(batch: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
        """The upstream's meta loss from scratch: mean-loss real gradient, synthetic gradient, distance."""
        real_grad = torch.autograd.grad(F.cross_entropy(net(batch), torch.full((len(batch),), CLS)),
                                        list(net.parameters()))
        return distance(ite.synthetic_grads(net, syn_labels)(syn), tuple(g.detach() for g in real_grad))

    return loss, meta


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.slow
@pytest.mark.parametrize("distance", [ite.dc_distance("ours"), ite.dc_distance("mse"), ite.dc_distance("cos"),
                                      ite.idc_distance("mse"), ite.idc_distance("l1"),
                                      ite.idc_distance("mse", bias=True, fc=True)], ids=lambda d: d.name)
def test_factored_exact_equals_the_definition(prepared: Prepared, distance: ite.Distance) -> None:
    """In float64, so that the reference's own cancellation (B + 1 large meta gradients, differences of size
    1/B) does not hide the comparison; float32 agrees to about 1e-3 relative for the same reason."""
    _, net, batches = prepared
    net = copy.deepcopy(net).double()
    real, syn = (t.double() for t in batches[0])
    real = real[:16]
    loss, meta = _gradient_matching(net, real, distance)
    exact = ite.ite_exact(loss, ite.leaf(syn))
    naive = ite.ite_naive(meta, real, ite.leaf(syn))
    assert _relative(exact, naive) < 1e-9


def test_distribution_matching_taylor_equals_exact_equals_definition(prepared: Prepared) -> None:
    _, net, batches = prepared
    for real, syn in batches[:2]:
        loss = ite.embedding_matching(net.embed, real)

        def meta(batch: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return torch.sum((net.embed(batch).detach().mean(0) - net.embed(s).mean(0)) ** 2)

        exact = ite.ite_exact(loss, ite.leaf(syn))
        assert _relative(ite.ite_taylor(loss, ite.leaf(syn)), exact) < 1e-4
        assert _relative(exact, ite.ite_naive(meta, real, ite.leaf(syn))) < 1e-4


def _decisions(norms: torch.Tensor, beta: float = 0.2) -> torch.Tensor:
    values = norms.double()
    return level2.quantile_keep(norms, float(values.mean()), float(values.std()), beta, "both").keep


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["ours", "mse", "cos"])
def test_taylor_ranks_like_exact_for_gradient_matching(prepared: Prepared, metric: str) -> None:
    name, net, batches = prepared
    correlations, disagreements = [], []
    for real, syn in batches:
        loss, _ = _gradient_matching(net, real, ite.dc_distance(metric))
        exact = ite.ite_norms(ite.ite_exact(loss, ite.leaf(syn)))
        taylor = ite.ite_norms(ite.ite_taylor(loss, ite.leaf(syn)))
        correlations.append(spearmanr(exact.numpy(), taylor.numpy()).statistic)
        disagreements.append(float((_decisions(exact) != _decisions(taylor)).double().mean()))
    print(f"{name} {metric}: spearman median {statistics.median(correlations):.4f}, "
          f"decisions differing at beta 0.2: {statistics.mean(disagreements):.2%}")
    assert statistics.median(correlations) >= 0.9
    assert statistics.mean(disagreements) <= 0.10


def test_taylor_of_l1_falls_back_to_exact(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bilp_plugin.method.ite._warned", set())  # the fallback is logged once per process
    torch.manual_seed(0)
    net = ConvNet(1, 10, width=8, depth=2, im_size=(8, 8))
    real, syn = torch.randn(6, 1, 8, 8), ite.leaf(torch.randn(2, 1, 8, 8))
    loss = ite.SeparableLoss(ite.per_sample_grads(net, real, torch.full((6,), 1)),
                             ite.synthetic_grads(net, torch.full((2,), 1)), ite.idc_distance("l1"))
    with pytest.raises(ite.BiLPError, match="identically zero"):
        ite.ite_taylor(loss, syn)
    norms = ite.ite(loss, syn, "taylor")
    assert "bilp: the Taylor ITE of idc-l1 vanishes" in capsys.readouterr().err
    assert torch.allclose(norms, ite.ite(loss, syn, "exact"))


def test_batched_and_looped_vector_jacobian_products_agree() -> None:
    torch.manual_seed(1)
    net = ConvNet(3, 10, width=8, depth=2, im_size=(8, 8))
    real, syn = torch.randn(10, 3, 8, 8), ite.leaf(torch.randn(2, 3, 8, 8))
    loss = ite.SeparableLoss(ite.per_sample_grads(net, real, torch.full((10,), 2)),
                             ite.synthetic_grads(net, torch.full((2,), 2)), ite.dc_distance("ours"))
    looped = ite.ite_exact(loss, syn, chunk=1)
    for chunk in (None, 4):
        assert _relative(ite.ite_exact(loss, syn, chunk=chunk), looped) < 1e-5
        assert _relative(ite.ite_taylor(loss, syn, chunk=chunk), ite.ite_taylor(loss, syn, chunk=1)) < 1e-5


def test_a_batch_of_one_is_refused() -> None:
    net = ConvNet(1, 10, width=4, depth=1, im_size=(4, 4))
    loss = ite.SeparableLoss(ite.per_sample_grads(net, torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long)),
                             ite.synthetic_grads(net, torch.zeros(1, dtype=torch.long)), ite.dc_distance("mse"))
    with pytest.raises(ite.BiLPError, match="at least 2"):
        ite.ite_exact(loss, ite.leaf(torch.zeros(1, 1, 4, 4)))
