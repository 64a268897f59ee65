"""Causal effect (ITE) of each real sample on the meta gradient of the synthetic data (``docs/method.md``, level 2).

Every upstream's meta loss factors as ``L(h(S), G)``: ``S`` the synthetic data, ``h`` a differentiable synthetic
statistic (the synthetic gradient for gradient matching, the mean synthetic embedding for distribution matching),
``G`` the mean over the real batch of per-sample statistics ``g(x)``. For a real sample ``x``::

    ITE(x) = dL(h(S), G)/dS - dL(h(S), G_-x)/dS          (Eq. 6, G_-x = the aggregate without x)

Three ways to get all ``B`` of them:

* :func:`ite_exact`: the factored exact form ``J_h^T [dL/dh(h, G) - dL/dh(h, G_-x)]``: ``B`` cheap cotangents,
  then one batched vector-Jacobian product through ``h``. No approximation; the default.
* :func:`ite_taylor`: Eq. 7, ``d/dS [(dL/dG)^T (G - G_-x)]`` with ``G`` a leaf: one batched vector-Jacobian product
  of ``v = dL/dG``. ``sum_form=True`` uses the paper's literal ``g(x)`` in place of ``G - G_-x``.
* :func:`ite_naive`: the definition, one meta gradient per left-out sample. The test reference only.

Adapters supply the pieces (per-sample statistics, ``h``, the upstream's distance); the math stays here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say

Stats = tuple[torch.Tensor, ...]
"""One tensor per layer (or a single tensor); per-sample statistics carry a leading batch dimension."""

EPS = 1e-6

CPU_ROWS = 16
"""Rows per vmapped product on a CPU: the fastest of 8, 16, 32, 64 and all rows on ConvNet-3 (docs/benchmarks.md)."""
GPU_SHARE = 0.5
"""Share of the GPU's free memory one vmapped product may fill."""
ROW_FACTOR = 4.0
"""A first guess of one vmapped row's memory, in units of ``fn``'s primal graph (doubled after each out-of-memory
error, for the rest of the process)."""


@dataclass(frozen=True)
class Distance:
    """A meta loss ``L(h, G)`` as a function of the synthetic and the real statistic, vmap-friendly.

    ``taylor_vanishes`` marks losses whose second derivative is zero almost everywhere (``l1``): their Taylor
    ITE is identically zero.
    """

    name: str
    fn: Callable[[Stats, Stats], torch.Tensor]
    taylor_vanishes: bool = False

    def __call__(self, h: Stats, g: Stats) -> torch.Tensor:
        return self.fn(tuple(h), tuple(g))


# ----------------------------------------------------------------------------------------------- distances
def _rows(t: torch.Tensor) -> torch.Tensor:
    """DC's ``distance_wb`` layout: conv and norm weights as (out, rest), linear as is."""
    return t.reshape(t.shape[0], -1) if t.dim() > 2 else t


def _cos_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over rows of ``1 - cos``, with the upstreams' ``+ 1e-6`` in the denominator."""
    return torch.sum(1 - torch.sum(a * b, dim=-1) / (torch.norm(a, dim=-1) * torch.norm(b, dim=-1) + EPS))


def _dc_ours(h: Stats, g: Stats) -> torch.Tensor:
    terms = [_cos_rows(_rows(gr), _rows(gs)) for gs, gr in zip(h, g) if gr.dim() > 1]
    return torch.stack(terms).sum()


def _flat(stats: Stats) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in stats])


def _dc_mse(h: Stats, g: Stats) -> torch.Tensor:
    return torch.sum((_flat(h) - _flat(g)) ** 2)


def _dc_cos(h: Stats, g: Stats) -> torch.Tensor:
    hs, gr = _flat(h), _flat(g)
    return 1 - torch.sum(gr * hs, dim=-1) / (torch.norm(gr, dim=-1) * torch.norm(hs, dim=-1) + EPS)


def dc_distance(metric: str) -> Distance:
    """DatasetCondensation's ``match_loss`` (``utils.py``): ``ours`` (per layer, sum over output rows of
    ``1 - cos``, one-dimensional parameters ignored), ``mse`` and ``cos`` (all parameters concatenated)."""
    table = {"ours": _dc_ours, "mse": _dc_mse, "cos": _dc_cos}
    if metric not in table:
        raise BiLPError(f"ITE does not support dis_metric {metric!r}: use one of {', '.join(table)}")
    return Distance(f"dc-{metric}", table[metric])


def _idc_pair(metric: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).pow(2).sum()

    def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().sum()

    def l1_mean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().reshape(x.shape[0], -1).mean(-1).sum()

    def cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _cos_rows(x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1))

    table = {"mse": mse, "l1": l1, "l1_mean": l1_mean, "cos": cos}
    if metric not in table:
        raise BiLPError(f"ITE does not support IDC metric {metric!r}: use one of {', '.join(table)}")
    return table[metric]


def idc_distance(metric: str, bias: bool = False, fc: bool = False) -> Distance:
    """IDC's gradient ``matchloss`` (``condense.py``): ``dist(g_real, g_syn)`` summed over the layers it keeps
    (1-D parameters only with ``bias``, 2-D only with ``fc``)."""
    pair = _idc_pair(metric)

    def fn(h: Stats, g: Stats) -> torch.Tensor:
        kept = [(gr, gs) for gs, gr in zip(h, g) if (gr.dim() != 1 or bias) and (gr.dim() != 2 or fc)]
        return torch.stack([pair(gr, gs) for gr, gs in kept]).sum()

    return Distance(f"idc-{metric}", fn, taylor_vanishes=metric in ("l1", "l1_mean"))


def _mean_embedding(h: Stats, g: Stats) -> torch.Tensor:
    return sum(torch.sum((gr - hs) ** 2) for hs, gr in zip(h, g))  # type: ignore[return-value]


MEAN_EMBEDDING = Distance("mean-embedding", _mean_embedding)
"""DM / IDM: squared distance between the mean real and the mean synthetic embedding (quadratic in G)."""


# ------------------------------------------------------------------------------------ per-sample statistics
def per_sample_grads(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     chunk_size: int | None = None) -> Stats:
    """Per-sample gradients of the cross-entropy w.r.t. every parameter of ``net``, in ``net.parameters()``
    order, each ``(B, *param.shape)``. Their mean is the upstream's batch gradient (mean-reduced loss)."""
    names = [n for n, _ in net.named_parameters()]
    params = {n: p.detach() for n, p in net.named_parameters()}
    buffers = {n: b.detach() for n, b in net.named_buffers()}

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(net, (p, buffers), (x.unsqueeze(0),)), y.unsqueeze(0))

    grads = vmap(grad(loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, images, labels)
    return tuple(grads[n] for n in names)


def synthetic_grads(net: torch.nn.Module, labels: torch.Tensor) -> Callable[[torch.Tensor], Stats]:
    """``h(S)`` for gradient matching: the gradient of the mean cross-entropy of ``net(S)`` w.r.t. the
    parameters (``net.parameters()`` order), as a pure function of ``S``: differentiable by autograd and by
    ``torch.func`` transforms alike."""
    names = [n for n, _ in net.named_parameters()]
    params = {n: p.detach() for n, p in net.named_parameters()}
    buffers = {n: b.detach() for n, b in net.named_buffers()}

    def loss(p: dict[str, torch.Tensor], syn: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(net, (p, buffers), (syn,)), labels)

    def h(syn: torch.Tensor) -> Stats:
        g = grad(loss)(params, syn)
        return tuple(g[n] for n in names)

    return h


# --------------------------------------------------------------------------------------------- the ITE
@dataclass
class SeparableLoss:
    """A meta loss ``L(h(S), G)`` with ``G`` the mean of ``real_stats`` over the batch."""

    real_stats: Stats
    synthetic: Callable[[torch.Tensor], Stats]
    distance: Distance

    @property
    def batch_size(self) -> int:
        return int(self.real_stats[0].shape[0])

    def aggregate(self) -> Stats:
        return tuple(g.mean(0) for g in self.real_stats)

    def leave_one_out(self) -> Stats:
        """``G_-x`` for every row: ``(B G - g(x)) / (B - 1)``."""
        b = self.batch_size
        return tuple((b * g.mean(0, keepdim=True) - g) / (b - 1) for g in self.real_stats)


def gradient_matching(net: torch.nn.Module, real: torch.Tensor, real_labels: torch.Tensor,
                      syn_labels: torch.Tensor, metric: str) -> SeparableLoss:
    """DatasetCondensation's gradient matching: :func:`dc_distance` between the synthetic gradient and the mean
    per-sample real gradient of the classification loss, w.r.t. every parameter of ``net``."""
    return SeparableLoss(real_stats=per_sample_grads(net, real, real_labels),
                         synthetic=synthetic_grads(net, syn_labels), distance=dc_distance(metric))


def embedding_matching(embed: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> SeparableLoss:
    """DM's distribution matching: :data:`MEAN_EMBEDDING` between the mean real and the mean synthetic ``embed``."""
    with torch.no_grad():
        embeddings = embed(real)
    return SeparableLoss(real_stats=(embeddings,), synthetic=lambda syn: (embed(syn).mean(0),),
                         distance=MEAN_EMBEDDING)


_warned: set[str] = set()
_learned = {"row_factor": ROW_FACTOR}


def gpu_rows(free_bytes: int, graph_bytes: int, rows: int, factor: float = ROW_FACTOR) -> int | None:
    """Rows per vmapped product that fit ``GPU_SHARE`` of ``free_bytes`` when one row takes ``factor`` times the
    primal graph (``None``: all ``rows`` at once)."""
    fit = int(GPU_SHARE * free_bytes / (factor * max(graph_bytes, 1)))
    return None if fit >= rows else max(1, fit)


def _allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def _free(device: torch.device) -> int:
    """Free memory of ``device``, counting the blocks torch holds but does not use."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


class Linearised:
    """``fn`` evaluated once at ``syn``: its outputs (detached) and ``J^T c_i`` for any rows ``c_i``, ``J`` the
    Jacobian of ``fn`` at ``syn``.

    ``chunk``: rows per vmapped product (``-1``: by device, :data:`CPU_ROWS` on a CPU, from free memory on a GPU;
    ``None``: all rows at once; ``1``: a plain autograd loop, one product per row). Batched products are one
    ``torch.func.vjp`` of ``fn``, its pullback vmapped over the rows, under ``no_grad`` (which the transforms see
    through: no graph to ``fn``'s parameters is kept); where this torch cannot vmap ``fn`` they fall back to the
    loop, with a log line once."""

    def __init__(self, fn: Callable[[torch.Tensor], Stats], syn: torch.Tensor, chunk: int | None = -1) -> None:
        self.fn, self.syn, self.chunk = fn, syn.detach(), chunk
        self._leaf: torch.Tensor | None = None
        self._graph: Stats = ()
        before = _allocated(self.syn.device)
        if chunk == 1:
            outputs = self._autograd_graph()
        else:
            with torch.no_grad():
                outputs, self._pullback = torch.func.vjp(fn, self.syn)
        self.graph_bytes = _allocated(self.syn.device) - before
        self.outputs: Stats = tuple(o.detach() for o in outputs)

    def _autograd_graph(self) -> Stats:
        self._leaf = leaf(self.syn)
        self._graph = tuple(self.fn(self._leaf))
        return self._graph

    def rows(self, cotangents: Stats) -> torch.Tensor:
        """``J^T c_i`` for every row ``i`` of the cotangents, ``(rows, *syn.shape)``. With more rows than ``fn``
        has outputs (DM/IDM with a large real batch: ``B`` rows, a ``d``-dimensional mean embedding, ``B > d``),
        ``J`` itself is built from ``d`` products and the rows are one matrix product."""
        b = int(cotangents[0].shape[0])
        sizes = [int(c[0].numel()) for c in cotangents]
        n_out = sum(sizes)
        if b > n_out:
            eye = torch.eye(n_out, dtype=cotangents[0].dtype, device=cotangents[0].device)
            basis = tuple(part.reshape(n_out, *c.shape[1:]) for part, c in zip(eye.split(sizes, dim=1), cotangents))
            jac = self._products(basis).reshape(n_out, -1)
            flat = torch.cat([c.reshape(b, -1) for c in cotangents], dim=1)
            return (flat @ jac).reshape(b, *self.syn.shape)
        return self._products(cotangents)

    def _products(self, cotangents: Stats) -> torch.Tensor:
        if self._leaf is None:
            try:
                return self._batched(cotangents)
            except torch.cuda.OutOfMemoryError:
                raise
            except RuntimeError as err:
                if "batched" not in _warned:
                    say(f"vmapped vector-Jacobian products failed here ({err}): one product per row instead")
                    _warned.add("batched")
                self._autograd_graph()
        return self._looped(cotangents)

    def _batched(self, cotangents: Stats) -> torch.Tensor:
        rows = int(cotangents[0].shape[0])
        chunk = self._chunk(rows)
        while True:
            try:
                with torch.no_grad():
                    return vmap(self._pullback, chunk_size=chunk)(cotangents)[0]
            except torch.cuda.OutOfMemoryError:
                if chunk == 1 or self.chunk != -1:
                    raise
                torch.cuda.empty_cache()
                _learned["row_factor"] *= 2
                chunk = max(1, (chunk or rows) // 2)

    def _chunk(self, rows: int) -> int | None:
        if self.chunk != -1:
            return self.chunk
        device = self.syn.device
        if device.type != "cuda":
            return CPU_ROWS
        return gpu_rows(_free(device), self.graph_bytes, rows, _learned["row_factor"])

    def _looped(self, cotangents: Stats) -> torch.Tensor:
        assert self._leaf is not None
        pairs = [(o, c) for o, c in zip(self._graph, cotangents) if o.requires_grad]  # outputs that never see S
        outputs = tuple(o for o, _ in pairs)
        b = int(cotangents[0].shape[0])
        return torch.stack([torch.autograd.grad(outputs, self._leaf, tuple(c[i] for _, c in pairs),
                                                retain_graph=True)[0] for i in range(b)])


def _check_batch(loss: SeparableLoss) -> None:
    if loss.batch_size < 2:
        raise BiLPError(f"the ITE needs a real batch of at least 2 samples, got {loss.batch_size}")


def exact_cotangents(loss: SeparableLoss, h: Linearised) -> Stats:
    """The exact ITE's cotangent rows ``dL/dh(h, G) - dL/dh(h, G_-x)``, one per real row, at ``h``'s outputs."""
    d_dh = grad(lambda hh, gg: loss.distance(hh, gg), argnums=0)
    full = d_dh(h.outputs, loss.aggregate())
    without = vmap(d_dh, in_dims=(None, 0))(h.outputs, loss.leave_one_out())
    return tuple(f.unsqueeze(0) - w for f, w in zip(full, without))


def ite_exact(loss: SeparableLoss, syn: torch.Tensor, chunk: int | None = -1) -> torch.Tensor:
    """Factored exact ITE, ``(B, *syn.shape)``; ``chunk`` as in :class:`Linearised`. ``h(S)`` is evaluated once:
    its value gives the cotangents, its graph the products."""
    _check_batch(loss)
    h = Linearised(loss.synthetic, syn, chunk)
    return h.rows(exact_cotangents(loss, h))


def ite_taylor(loss: SeparableLoss, syn: torch.Tensor, sum_form: bool = False,
               chunk: int | None = -1) -> torch.Tensor:
    """Taylor ITE (Eq. 7), ``(B, *syn.shape)``; ``sum_form`` uses the paper's ``g(x)`` for the change of G;
    ``chunk`` as in :class:`Linearised`."""
    _check_batch(loss)
    if loss.distance.taylor_vanishes:
        raise BiLPError(f"the Taylor ITE of {loss.distance.name} is identically zero (its second derivative "
                        "vanishes): use the exact ITE (--bilp-ite exact)")
    aggregate = tuple(g.detach() for g in loss.aggregate())

    def v(s: torch.Tensor) -> Stats:
        """``dL/dG`` at the batch's aggregate, as a function of ``S``."""
        return tuple(grad(lambda gg: loss.distance(loss.synthetic(s), gg))(aggregate))

    b = loss.batch_size
    if sum_form:
        change = tuple(g.detach() for g in loss.real_stats)
    else:
        change = tuple((g - g.mean(0, keepdim=True)) / (b - 1) for g in loss.real_stats)
    return Linearised(v, syn, chunk).rows(change)


def ite_naive(meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], real: torch.Tensor,
              syn: torch.Tensor) -> torch.Tensor:
    """The definition (Eq. 6): ``dL(B)/dS - dL(B without x)/dS`` from ``B + 1`` full meta gradients of
    ``meta_loss(real_batch, syn)``. Reference for tests; far too slow for use."""
    full = torch.autograd.grad(meta_loss(real, syn), syn)[0]
    rows = []
    for i in range(real.shape[0]):
        rest = torch.cat([real[:i], real[i + 1:]])
        rows.append(full - torch.autograd.grad(meta_loss(rest, syn), syn)[0])
    return torch.stack(rows)


def ite_norms(ite: torch.Tensor) -> torch.Tensor:
    """``||ITE(x)||_2`` per row."""
    return ite.reshape(ite.shape[0], -1).norm(dim=1)


def ite(loss: SeparableLoss, syn: torch.Tensor, method: str, chunk: int | None = -1) -> torch.Tensor:
    """The ITE norms by ``method`` (``exact``, ``taylor``, ``taylor-sum``): what ``meta_grad`` returns.

    A Taylor request on a distance whose Taylor ITE vanishes falls back to the exact ITE, with a log line (once
    per distance and process)."""
    if method == "exact":
        return ite_norms(ite_exact(loss, syn, chunk))
    if method not in ("taylor", "taylor-sum"):
        raise BiLPError(f"unknown ITE method {method!r}: use exact, taylor or taylor-sum")
    if loss.distance.taylor_vanishes:
        if loss.distance.name not in _warned:
            say(f"the Taylor ITE of {loss.distance.name} vanishes (zero second derivative): using the exact ITE "
                "instead")
            _warned.add(loss.distance.name)
        return ite_norms(ite_exact(loss, syn, chunk))
    return ite_norms(ite_taylor(loss, syn, sum_form=method == "taylor-sum", chunk=chunk))


def leaf(syn: torch.Tensor) -> torch.Tensor:
    """A detached copy of the synthetic rows that requires grad: the tensor the ITE is taken with respect to."""
    return syn.detach().clone().requires_grad_(True)

