"""The report's plots: each section function takes the runs and the output folder, writes its PNGs and returns
the Markdown lines that show them, or raises :class:`Skip` saying which data is missing (no empty axes)."""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bilp_plugin import files
from bilp_plugin.config import STRATA
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab.curve import Curve
from bilp_plugin.method import level1

if TYPE_CHECKING:
    from bilp_plugin.lab.records import Run

MAX_CLASSES = 10
LOSS_AXIS = "empirical loss (cross-entropy, nats)"


class Skip(Exception):
    """A section has no data to plot; the message says which."""


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    files.write_bytes(out / name, png.getvalue())
    return name


def score_histograms(runs: list[Run], out: Path) -> list[str]:
    """Per class: histogram of all scores, of the kept ones, and the kept threshold (largest kept score)."""
    lines: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for run in runs:
        if run.bilp.get("criterion") != "loss" or run.kept is None:
            continue
        key = ((run.level1 or {}).get("scores_sha256"), run.bilp.get("alpha"))
        score_file = run.scores() if key not in seen else None
        if score_file is None:
            continue
        seen.add(key)
        name = _save(_histograms(score_file.scores, _labels(run, score_file), run.kept, run.bilp["alpha"]),
                     out, f"scores-alpha{run.bilp['alpha']:g}-{len(seen)}.png")
        caption = (f"Level 1 of `{run.name}` (alpha = {run.bilp['alpha']:g}: per class, the samples right of "
                   "the dashed line are pruned):")
        lines += [caption, "", f"![score histograms]({name})", ""]
    if not lines:
        raise Skip("no run pruned by loss with a readable score file (`--bilp-criterion loss`, alpha > 0)")
    return lines


def _labels(run: Run, score_file: Any) -> np.ndarray:
    if score_file.labels is not None:
        return np.asarray(score_file.labels)
    raise Skip(f"the score file of {run.name} carries no labels (an authors' JSON list)")


def _histograms(scores: np.ndarray, labels: np.ndarray, kept: np.ndarray, alpha: float) -> Any:
    classes = int(labels.max()) + 1
    shown = min(classes, MAX_CLASSES)
    cols = min(shown, 5)
    rows = -(-shown // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows + 0.4), squeeze=False)
    is_kept = np.zeros(len(scores), dtype=bool)
    is_kept[kept] = True
    for c, ax in enumerate(axes.flat):
        if c >= shown:
            ax.remove()
            continue
        member = labels == c
        bins = np.linspace(scores[member].min(), scores[member].max(), 26) if member.any() else 25
        ax.hist(scores[member], bins=bins, color="0.75", label="all")
        ax.hist(scores[member & is_kept], bins=bins, color="tab:blue", label="kept")
        if (member & is_kept).any():
            ax.axvline(scores[member & is_kept].max(), color="tab:red", linestyle="--", label="kept threshold")
        ax.set_title(f"class {c}", fontsize=9)
        ax.set_xlabel(LOSS_AXIS, fontsize=7)
        ax.set_ylabel("samples", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    more = f" (first {MAX_CLASSES} of {classes} classes)" if classes > shown else ""
    fig.suptitle(f"Level-1 scores per class, alpha = {alpha:g}{more}", fontsize=10)
    return fig


def stratified_curve(runs: list[Run], out: Path) -> list[str]:
    """Test accuracy of the runs distilled from one loss stratum, per stratum (Fig. 3)."""
    groups: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        if run.bilp.get("criterion") == "stratum" and run.accuracy:
            groups.setdefault(run.method, {}).setdefault(int(run.bilp["stratum"]), []).extend(run.accuracy)
    groups = {m: g for m, g in groups.items() if len(g) >= 2}
    if not groups:
        raise Skip("needs runs of at least two strata with an accuracy (`--bilp-criterion stratum "
                   "--bilp-stratum K` plus result.json); `bilp demo` makes them with --strata")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for method, by_k in sorted(groups.items()):
        ks = sorted(by_k)
        ax.errorbar(ks, [100 * statistics.fmean(by_k[k]) for k in ks],
                    yerr=[100 * statistics.pstdev(by_k[k]) for k in ks], marker="o", capsize=3, label=method)
        base = [a for r in runs if r.method == method and _is_baseline(r) for a in r.accuracy]
        if base:
            ax.axhline(100 * statistics.fmean(base), linestyle="--", color="0.5",
                       label=f"{method} full real set")
    ax.set_xticks(range(1, STRATA + 1), [f"S{k}" for k in range(1, STRATA + 1)])
    ax.set_xlabel("loss stratum (S1 = largest loss, S10 = smallest)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Distillation from one loss decile (mean ± std over evaluated networks)", fontsize=10)
    ax.legend(fontsize=8)
    return [f"![stratified accuracy]({_save(fig, out, 'strata-accuracy.png')})"]


def alpha_curve(curve: Curve, out: Path, name: str = "alpha-curve.png", title: str | None = None) -> str:
    """Accuracy against alpha per criterion (mean ± std), the baseline's band and each criterion's max alpha
    (the paper's Fig. 2 protocol); writes ``out/name`` and returns ``name``."""
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    base, spread = 100 * statistics.fmean(curve.base), 100 * statistics.pstdev(curve.base)
    ax.axhspan(base - spread, base + spread, color="0.85", label="baseline mean ± std (full real set)")
    ax.axhline(base, color="0.45", linestyle="--", linewidth=1)
    for i, (criterion, by_alpha) in enumerate(curve.accuracy.items()):
        alphas = [0.0, *sorted(by_alpha)]
        accs = [curve.base, *(by_alpha[a] for a in alphas[1:])]
        color = f"C{i}"
        ax.errorbar(alphas, [100 * statistics.fmean(a) for a in accs], yerr=[100 * statistics.pstdev(a) for a in accs],
                    marker="o", capsize=3, color=color, label=criterion)
        best = curve.max_alpha(criterion)
        if best:
            ax.axvline(best, color=color, linestyle=":", linewidth=1.2, label=f"max alpha ({criterion}) = {best:g}")
    ax.set_xlabel("level-1 pruning rate alpha (share of each class removed)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Accuracy against the pruning rate (mean ± std over seeds x networks)", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, out, name)


def pruning_curve(runs: list[Run], out: Path) -> list[str]:
    """Level-1-only runs by criterion and alpha against the baseline: the curve and the max-alpha table."""
    base = [a for r in runs if _is_baseline(r) for a in r.accuracy]
    groups: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        b = run.bilp
        if run.accuracy and b.get("alpha") and not b.get("beta") and b.get("criterion") in ("loss", "random"):
            groups.setdefault(b["criterion"], {}).setdefault(float(b["alpha"]), []).extend(run.accuracy)
    if not base or not groups:
        raise Skip("needs a baseline (alpha = 0, beta = 0) and level-1-only runs at alpha > 0 with an accuracy "
                   "(`bilp sweep` or `bilp demo` make them)")
    curve = Curve(base, {c: groups[c] for c in sorted(groups)})
    return [f"![accuracy against alpha]({alpha_curve(curve, out)})", "", *curve.table()]


def _is_baseline(run: Run) -> bool:
    b = run.bilp
    return b.get("criterion") == "loss" and not b.get("alpha") and not b.get("beta")


def diversity(runs: list[Run], out: Path) -> list[str]:
    """Intra/inter-class variance ratio of the pixels of each loss stratum (Fig. 4), per score file."""
    reasons: list[str] = []
    for run in runs:
        score_file = run.scores()
        if score_file is None or score_file.labels is None:
            continue
        try:
            images = _dataset_images(run, score_file)
        except BiLPError as err:
            reasons.append(str(err))
            continue
        parts = level1.strata(score_file.scores, score_file.labels)
        ratios = [level1.diversity_ratio(images[idx], score_file.labels[idx]) for idx in parts]
        whole = level1.diversity_ratio(images, score_file.labels)
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ks = range(1, len(ratios) + 1)
        ax.bar(ks, ratios, color="tab:green")
        ax.axhline(whole, color="0.3", linestyle="--", label="whole training set")
        ax.set_ylim(0, 1.25 * max(whole, *ratios))
        ax.set_xticks(list(ks), [f"S{k}" for k in ks])
        ax.set_xlabel("loss stratum (S1 = largest loss, S10 = smallest)")
        ax.set_ylabel("intra / inter-class variance (ratio)")
        ax.set_title(f"Diversity of each stratum: {score_file.meta.get('dataset', '?')} pixels", fontsize=10)
        ax.legend(fontsize=8)
        name = _save(fig, out, "strata-diversity.png")
        table = ["| stratum | " + " | ".join(f"S{k}" for k in ks) + " |", "|---" * (len(ratios) + 1) + "|",
                 "| ratio | " + " | ".join(f"{r:.2f}" for r in ratios) + " |"]
        caption = (f"Score file of `{run.name}`; features = normalised pixels; dashed: the whole set "
                   f"({whole:.2f}).")
        return [caption, "", f"![stratum diversity]({name})", "", *table]
    raise Skip("no run with a score file that carries labels and a dataset that loads here"
               + (f" ({reasons[0]})" if reasons else ""))


def _dataset_images(run: Run, score_file: Any) -> np.ndarray:
    import os

    from bilp_plugin.lab.datasets import canonical_name, load_dataset

    args = run.config.get("upstream_args", {})
    name = score_file.meta.get("dataset") or args.get("dataset")
    root = args.get("data_root") or args.get("data_path") or os.environ.get("BILP_DATA")
    dataset = load_dataset(canonical_name(str(name)), root)
    if len(dataset) != len(score_file.scores):
        raise BiLPError(f"{name} has {len(dataset)} samples, the score file {len(score_file.scores)}")
    return dataset.images.numpy()


def level2(runs: list[Run], out: Path) -> list[str]:
    """Per run with level 2: kept share of each selected batch, and the centre of the rule (the running mean for
    ``paper``, the batch's median for ``relative``) with its keep interval, per iteration."""
    chosen = [r for r in runs if r.level2]
    if not chosen:
        raise Skip("no run selected with level 2 (`--bilp-beta` > 0 writes level2.jsonl)")
    fig, (keep_ax, stat_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, run in enumerate(chosen):
        color = f"C{i % 10}"
        x, keep, mu, _, low, high = _level2_series(run.level2)
        rule = run.bilp.get("rule", "paper")
        keep_ax.plot(x, keep, color=color, marker=".", linewidth=1, label=run.name)
        stat_ax.plot(x, mu, color=color, marker="." if len(x) < 20 else None, label=f"{run.name} ({rule}) centre")
        stat_ax.fill_between(x, np.nan_to_num(low, neginf=0.0), np.minimum(high, np.nanmax(mu) * 10), color=color,
                             alpha=0.15, label="keep interval" if i == 0 else None)
    beta = float(chosen[0].bilp.get("beta") or 0.0)
    keep_ax.axhline(100 * (1 - beta), color="0.4", linestyle="--", label=f"target 1 - beta = {1 - beta:g}")
    xlabel = "distillation iteration" if chosen[0].level2[0].get("iteration") is not None else "selection"
    keep_ax.set(xlabel=xlabel, ylabel="kept share of the real batch (%)",
                title="Level 2: kept share (mean over classes)")
    stat_ax.set(xlabel=xlabel, ylabel="||ITE(x)||_2 (meta-gradient norm)",
                title="ITE centre and keep interval (last selection)")
    keep_ax.legend(fontsize=7)
    stat_ax.legend(fontsize=7)
    name = _save(fig, out, "level2.png")
    rates = ", ".join(f"`{r.name}` {100 * _kept_share(r.level2):.1f}%" for r in chosen)
    return [f"Kept share over all selections: {rates}.", "", f"![level 2]({name})"]


def _level2_series(rows: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    """Per iteration (or selection index when the upstream passes none): mean kept %, and the statistics after
    the iteration's last selection."""
    by_x: dict[int, list[dict[str, Any]]] = {}
    for i, row in enumerate(rows):
        by_x.setdefault(row["iteration"] if row.get("iteration") is not None else i, []).append(row)
    xs = sorted(by_x)
    keep = [100 * statistics.fmean(r["kept"] / r["batch"] for r in by_x[x]) for x in xs]
    last = [by_x[x][-1] for x in xs]
    return (np.array(xs), np.array(keep), *(np.array([r[k] for r in last], dtype=float)
                                           for k in ("mu", "sigma", "low", "high")))


def _kept_share(rows: list[dict[str, Any]]) -> float:
    return sum(r["kept"] for r in rows) / sum(r["batch"] for r in rows)


def ite_share(runs: list[Run], out: Path) -> list[str]:
    """ITE seconds over matching-loop seconds, per run with level 2."""
    chosen = [r for r in runs if r.ite_share is not None]
    if not chosen:
        raise Skip("no run computed an ITE (summary.json with selections > 0)")
    shares = [100 * float(r.ite_share or 0.0) for r in chosen]
    fig, ax = plt.subplots(figsize=(6.5, 1.4 + 0.4 * len(chosen)))
    bars = ax.barh(range(len(chosen)), shares, color="tab:purple")
    ax.bar_label(bars, fmt="%.1f%%", fontsize=8, padding=2)
    ax.set_yticks(range(len(chosen)), [r.name for r in chosen], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, min(100.0, 1.2 * max(shares)) or 1.0)
    ax.set_xlabel("ITE time / matching-loop time (%)")
    ax.set_ylabel("run")
    ax.set_title("Level-2 cost: share of the matching loop spent on the ITE", fontsize=10)
    name = _save(fig, out, "ite-share.png")
    rows = [f"| {r.name} | {r.summary['ite_s']:.2f} | {r.summary['matching_loop_s']:.2f} | {share:.1f}% |"
            for r, share in zip(chosen, shares, strict=True) if r.summary]
    return [f"![ITE time share]({name})", "", "| run | ITE (s) | matching loop (s) | share |",
            "|---|---|---|---|", *rows]


SECTIONS: list[tuple[str, Callable[[list[Any], Path], list[str]]]] = [
    ("Accuracy against the pruning rate (Tables 1-2, Fig. 2 protocol)", pruning_curve),
    ("Level 1: score histograms per class", score_histograms),
    ("Stratified distillation (Fig. 3 protocol)", stratified_curve),
    ("Diversity per stratum (Fig. 4)", diversity),
    ("Level 2: keep rate and running ITE statistics", level2),
    ("ITE time share", ite_share),
]
