"""Write ``docs/reproduction.md`` from the folders of ``benchmarks/reproduce.py`` (and, optionally, the JSON of
``benchmarks/score_agreement.py``). Nothing in the document is typed by hand: every number of ours is read from
the stored points, and the paper's numbers are the data below.

    python benchmarks/reproduction_doc.py /work/repro/cpu [runs/gpu] \\
        --agreement /work/repro/agreement.json --out docs/reproduction.md

Statistics. Accuracies are pooled over seeds and evaluated networks (mean ± std, as the sweep reports them). The
unit of replication is the seed (the networks of one seed share its synthetic set): a run's mean accuracy over
its networks is one observation. With 2-3 seeds per mean, each mean's own spread says little, so the seed-level
variance is pooled over every mean of a method x dataset (full set, each criterion and alpha: the same settings,
the same noise), with its degrees of freedom. A mean of n seeds has se = s_pooled / sqrt(n); a difference of two
means is "resolved" when it exceeds t x its se (t: Student's 97.5% quantile at the pooled degrees of freedom, a
two-sided 5% test), otherwise it is "within noise". The stratified curve (Fig. 3) runs one seed per stratum: its
trend is the least-squares slope of accuracy over the stratum index, its se from the residuals (8 degrees of
freedom).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bilp_adapters.dc.host import eval_epochs, model
from bilp_plugin import files
from bilp_plugin.cli import build_parser
from bilp_plugin.lab import curve, hosts
from bilp_plugin.lab.curve import t975

# The paper's numbers (Xu et al., "Distill Gold from Massive Ores", ECCV 2024), CIFAR-10 rows; keys (method, ipc).
PAPER_RANDOM_RATIO = {("DC", 1): 0.90, ("DC", 10): 0.70, ("DC", 50): 0.50,
                      ("DM", 1): 0.85, ("DM", 10): 0.60, ("DM", 50): 0.50}
"""Table 1: maximum pruning ratio with random selection."""
PAPER_LOSS_RATIO = {("DC", 1): 0.995, ("DC", 10): 0.30, ("DM", 1): 0.995, ("DM", 10): 0.50}
"""Table 2: maximum pruning ratio with empirical-loss selection. The text of the table that we have lists two
ratios per method for CIFAR-10's three IPC rows; we read them as IPC 1 and 10 (the introduction says DC at IPC 1
keeps its accuracy with over 99.9% of CIFAR-10 removed)."""
PAPER_BEST = {("DC", 1): (30.0, 0.2, 1.7), ("DC", 10): (44.9, 0.4, 0.0), ("DC", 50): (54.9, 0.5, 1.0),
              ("DM", 1): (29.7, 0.3, 3.7), ("DM", 10): (50.0, 0.2, 1.1), ("DM", 50): (63.4, 0.2, 0.4)}
"""Table 3: best accuracy with data dropping (mean, std, gain over the full real set), %."""
PAPER_TABLE4 = {"BiLP+DC": (30.5, 0.3), "DC": (28.3, 0.5)}
"""Table 4: CIFAR-10, IPC 1 (%)."""
PAPER_FIG3 = ("Fig. 3 (DC, CIFAR-10, IPC 1): accuracy rises from S1 (largest loss) to S10 for every loss recipe "
              "but the 1-epoch one; the paper gives the curve, no numbers.")
NO_PAPER_CELL = " (no paper cell)"
"""Marks a group the paper has no number for (MNIST): its verdicts say what was seen, not "reproduced"."""
PAPER_MNIST = ("The paper has no MNIST cell in Tables 1-3; Sec. 5.5 (Fig. 4) says loss-based selection "
               "\"always performs poorly on low diversity datasets like MNIST\" (diversity vanishing).")


@dataclass
class Cell:
    """One sweep folder of a plan, with its stored results."""

    spec: dict[str, Any]
    folder: Path
    args: argparse.Namespace
    results: dict[str, dict[str, Any]]
    expected: list[str]

    @property
    def missing(self) -> list[str]:
        return [n for n in self.expected if n not in self.results]

    def summary(self, names: list[str]) -> dict[str, Any] | None:
        found = [self.results[n] for n in names if n in self.results]
        return hosts.summary(found) if found else None

    @property
    def seeds(self) -> list[int]:
        """The seeds of its planned full-set runs."""
        return sorted(int(n.rpartition("-s")[2]) for n in self.expected if n.startswith("baseline-"))

    def alphas(self) -> list[float]:
        """The planned pruning ratios (points named ``<criterion>-a<alpha>-s<seed>``)."""
        return sorted({float(m.group(1)) for n in self.expected if (m := re.match(r"\w+-a([\d.]+)-s\d+$", n))})


def load_cell(spec: dict[str, Any], root: Path, shown: dict[str, str]) -> Cell:
    folder = root / spec["folder"]
    args = build_parser().parse_args(["sweep", *spec["command"].split()[2:]])
    spec = {**spec, "command": placeholders(spec["command"], shown)}
    results = {f.stem: json.loads(f.read_text())["result"] for f in sorted((folder / "points").glob("*.json"))}
    return Cell(spec, folder, args, results, list(spec["points"]))


def placeholders(text: str, shown: dict[str, str]) -> str:
    """``text`` with machine-specific folders replaced by the names the document explains (longest first)."""
    for path in sorted(shown, key=len, reverse=True):
        text = text.replace(path, shown[path])
    return text


def shown_paths(plan: dict[str, Any]) -> dict[str, str]:
    """Folder -> placeholder: the output folder, the authors' score files, the data, our score file's folder."""
    shown = {plan["out"]: "$OUT", plan["authors_scores"]: "$BILP_SCORES_DIR"}
    if plan.get("data_root"):
        shown[str(Path(plan["data_root"]).resolve())] = "$BILP_DATA"
        shown[plan["data_root"]] = "$BILP_DATA"
    if plan.get("our_scores"):
        shown[str(Path(plan["our_scores"]).parent)] = "$SCORES"
    return shown


@dataclass
class Noise:
    """Seed-level noise pooled over the means of a group: std of a run's mean accuracy (percentage points) and
    its degrees of freedom."""

    sd: float | None
    dof: int

    @classmethod
    def pooled(cls, summaries: list[dict[str, Any]]) -> Noise:
        groups = [[100 * m for m in s["run_means"]] for s in summaries if len(s["run_means"]) > 1]
        dof = sum(len(g) - 1 for g in groups)
        if not dof:
            return cls(None, 0)
        return cls(math.sqrt(sum(statistics.variance(g) * (len(g) - 1) for g in groups) / dof), dof)

    def se(self, s: dict[str, Any]) -> float | None:
        return None if self.sd is None else self.sd / math.sqrt(s["runs"])

    def pct(self, s: dict[str, Any] | None) -> str:
        """Mean ± std over seeds x networks (%), and the mean's se."""
        if s is None:
            return "missing"
        se = self.se(s)
        return f"{100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.1f}" + (
            f" (se {se:.1f})" if se is not None else "")

    def difference(self, a: dict[str, Any] | None, b: dict[str, Any] | None
                   ) -> tuple[float, float | None, float] | None:
        """a - b in percentage points, its se and the t it must exceed in se units (None if a side is missing)."""
        if a is None or b is None:
            return None
        d = 100 * (a["accuracy_mean"] - b["accuracy_mean"])
        se = None if self.sd is None else self.sd * math.sqrt(1 / a["runs"] + 1 / b["runs"])
        return d, se, t975(self.dof)

    def line(self) -> str:
        if self.sd is None:
            return "Noise: no mean has two seeds yet, so no standard error."
        return (f"Noise: pooled seed-level std {self.sd:.2f} pp over {self.dof} degrees of freedom; a difference "
                f"is resolved beyond t = {t975(self.dof):.2f} standard errors.")


def verdict(diff: tuple[float, float | None, float] | None) -> str:
    if diff is None:
        return "missing"
    d, se, t = diff
    if se is None:
        return f"{d:+.1f} (no se yet)"
    return f"{d:+.1f} ± {se:.1f} ({'resolved' if abs(d) > t * se else 'within noise'})"


def resolved(diff: tuple[float, float | None, float] | None) -> int:
    """+1 / -1 when the difference is positive / negative by more than t se, else 0."""
    if diff is None or diff[1] is None or abs(diff[0]) <= diff[2] * diff[1]:
        return 0
    return 1 if diff[0] > 0 else -1


def slope(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares slope of (x, y) and its standard error."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    residual = sum((y - my - b * (x - mx)) ** 2 for x, y in points) / (len(points) - 2)
    return b, math.sqrt(residual / sxx)


class Group:
    """The cells of one (method, dataset, ipc): the authors' score file, ours, and what they share."""

    def __init__(self, authors: Cell, ours: Cell | None) -> None:
        self.authors, self.ours = authors, ours
        a = authors.args
        self.method, self.dataset, self.ipc = a.method, a.dataset, a.ipc
        self.base = authors.summary([f"baseline-s{s}" for s in authors.seeds])
        means = [self.by_alpha(cell, crit) for _, cell, crit in self.criteria()]
        self.noise = Noise.pooled([s for s in [self.base, *(m for t in means for m in t.values())] if s])

    def by_alpha(self, cell: Cell, criterion: str) -> dict[float, dict[str, Any]]:
        table = {}
        for a in self.authors.alphas():
            s = cell.summary([f"{criterion}-a{a:g}-s{seed}" for seed in cell.seeds])
            if s is not None:
                table[a] = s
        return table

    def criteria(self) -> list[tuple[str, Cell, str]]:
        rows = [("random", self.authors, "random"), ("loss, authors' scores", self.authors, "loss")]
        if self.ours is not None:
            rows.append(("loss, our scores", self.ours, "loss"))
        return rows


def scale_line(cell: Cell) -> str:
    a = cell.args
    seeds = ",".join(map(str, cell.seeds))
    return (f"{a.dataset}, ipc {a.ipc}, {a.method} through the patched DatasetCondensation, network {model(a)} "
            f"(distillation and evaluation), {a.iterations} iterations, real batch {a.batch_real} per class, "
            f"{a.eval_models} evaluation networks per seed trained {eval_epochs(a)} epochs, seeds {seeds}")


def group_section(g: Group) -> tuple[list[str], dict[str, Any]]:
    """Markdown of one group, and its verdicts for the closing note."""
    key = (g.method, g.ipc)
    title = f"### {g.method}, {g.dataset}, ipc {g.ipc}"
    lines = [title, "", "Scale: " + scale_line(g.authors) + ".", ""]
    for cell in filter(None, (g.authors, g.ours)):
        lines.append(f"- `{cell.spec['folder']}` ({cell.spec['scores']} scores): `{cell.spec['command']}`, "
                     "its points made by these steps, in order: "
                     + "; ".join(f"`{step}`" for step in cell.spec["steps"]))
        if cell.missing:
            lines.append(f"  - **incomplete**: {len(cell.missing)} of {len(cell.expected)} points missing "
                         f"({', '.join(cell.missing[:6])}{' ...' if len(cell.missing) > 6 else ''})")
    if g.ours is None:
        lines.append("- no cell with our scores in this plan")
    pct, difference = g.noise.pct, g.noise.difference
    lines += ["", f"Full real set (baseline): {pct(g.base)}. {g.noise.line()}", ""]
    group = f"{g.method} {g.dataset} ipc {g.ipc}" + (NO_PAPER_CELL if g.dataset != "cifar10" else "")
    verdicts: dict[str, Any] = {"group": group}
    if g.base is None:
        return [*lines, "No baseline yet: nothing to compare.", ""], verdicts
    tables = {label: g.by_alpha(cell, crit) for label, cell, crit in g.criteria()}
    # Tables 1-2: accuracy per alpha, max ratio
    lines += ["Accuracy (%) by pruning ratio alpha (mean ± std over seeds x networks, se of the mean over seeds; "
              "'*' = within the baseline's std, the paper's criterion):", "",
              "| alpha | " + " | ".join(tables) + " | loss (authors) - random, pp |",
              "|---" * (len(tables) + 2) + "|"]
    rand, loss = tables["random"], tables["loss, authors' scores"]
    for a in g.authors.alphas():
        cells = [pct(t.get(a)) + ("*" if a in t and curve.within(g.base, t[a]) else "") for t in tables.values()]
        lines.append(f"| {a:g} | " + " | ".join(cells) + f" | {verdict(difference(loss.get(a), rand.get(a)))} |")
    ratios = {label: curve.max_alpha(g.base, t) for label, t in tables.items()}
    paper_r, paper_l = PAPER_RANDOM_RATIO.get(key), PAPER_LOSS_RATIO.get(key)
    lines += ["", "| max pruning ratio | ours | paper |", "|---|---|---|"]
    for label in tables:
        paper = paper_r if label == "random" else paper_l if label.startswith("loss, authors") else None
        paper_text = f"{paper:g}" if paper is not None and g.dataset == "cifar10" else "-"
        gaps = [a for a in g.authors.alphas() if a not in tables[label]]
        ours = f"{ratios[label]:g}" + (f" (alpha {', '.join(map(str, gaps))} missing)" if gaps else "")
        lines.append(f"| {label} | {ours} | {paper_text} |" if tables[label] else
                     f"| {label} | missing | {paper_text} |")
    high = [a for a in g.authors.alphas() if a in loss and a in rand]
    diffs = {a: difference(loss[a], rand[a]) for a in high}
    if high:  # a verdict on Tables 1-2 needs an alpha with both a loss and a random mean
        verdicts["t12"] = {"loss_ratio": ratios["loss, authors' scores"], "random_ratio": ratios["random"],
                           "resolved": {a: resolved(d) for a, d in diffs.items()}}
    # Table 3: best pruned vs full
    lines += ["", "Best pruned accuracy vs the full set (Table 3; the best of several noisy means is biased "
              "upwards, so a gain within noise is no gain):", "",
              "| scores | best alpha | best pruned (%) | minus full, pp | paper |", "|---|---|---|---|---|"]
    verdicts["t3"] = {}
    for label, _, crit in g.criteria():
        if crit != "loss" or not tables[label]:
            continue
        t = tables[label]
        best = max(t, key=lambda a: t[a]["accuracy_mean"])
        d = difference(t[best], g.base)
        paper = PAPER_BEST.get(key) if g.dataset == "cifar10" and "authors" in label else None
        paper_text = f"{paper[0]} ± {paper[1]} ({paper[2]:+.1f})" if paper else "-"
        lines.append(f"| {label} | {best:g} | {pct(t[best])} | {verdict(d)} | {paper_text} |")
        verdicts["t3"][label] = resolved(d)
    # Fig. 3: strata
    strata_rows, trend = [], {}
    for label, cell, crit in g.criteria():
        if crit != "loss":
            continue
        by_k = {k: cell.summary([f"stratum{k:02d}-s{s}" for s in cell.seeds]) for k in range(1, 11)}
        by_k = {k: s for k, s in by_k.items() if s is not None}
        if not by_k:
            continue
        fit = slope([(k, 100 * s["accuracy_mean"]) for k, s in by_k.items()])
        low = min(by_k, key=lambda k: by_k[k]["accuracy_mean"])
        strata_rows.append(f"| {label} | " + " | ".join(
            f"{100 * by_k[k]['accuracy_mean']:.1f}" if k in by_k else "-" for k in range(1, 11))
            + f" | {f'{fit[0]:+.2f} ± {fit[1]:.2f}' if fit else '-'} | S{low} |")
        trend[label] = {"slope": fit, "lowest": low, "strata": len(by_k), "t": t975(len(by_k) - 2)}
    verdicts["fig3"] = trend
    if strata_rows:
        lines += ["", "Distilled from one loss decile alone (Fig. 3; S1 = largest loss; accuracy %, mean over the "
                  "networks of the stratum's seeds; slope = pp per stratum ± se, least squares, se from the "
                  "residuals; it rises beyond noise above t = 2.31 se at 8 degrees of freedom):",
                  "", "| scores | " + " | ".join(f"S{k}" for k in range(1, 11)) + " | slope | lowest |",
                  "|---" * 13 + "|", *strata_rows]
    lines += [""]
    return lines, verdicts


def table4_section(cell: Cell) -> tuple[list[str], dict[str, Any]]:
    """Table 4's BiLP+DC against DC on the full set (and level 1 alone), all in one cell at one scale."""
    kinds = {k: cell.summary([f"{k}-s{s}" for s in cell.seeds]) for k in ("baseline", "level1", "bilp")}
    noise = Noise.pooled([s for s in kinds.values() if s])
    pct, difference = noise.pct, noise.difference
    lines = ["### Table 4: BiLP+DC, CIFAR-10, ipc 1", "", "Scale: " + scale_line(cell) + ".", "",
             "- the points are run by the script (a level-2 run is not a sweep point); their upstream command "
             "lines are in each run's `config.json` (`argv`)"]
    if cell.missing:
        lines.append(f"  - **incomplete**: {len(cell.missing)} of {len(cell.expected)} points missing")
    bilp = cell.folder / "points" / f"bilp-s{cell.seeds[0]}.json"
    if bilp.is_file():
        point = json.loads(bilp.read_text())["point"]
        lines.append(f"- BiLP settings: alpha {point['alpha']} (the best loss alpha of the DC ipc 1 cell), beta "
                     f"{point['beta']}")
    dc, best, bilp_paper = PAPER_TABLE4["DC"], PAPER_BEST[("DC", 1)], PAPER_TABLE4["BiLP+DC"]
    lines += ["", "| | ours (%) | paper (%) |", "|---|---|---|",
              f"| DC (full set) | {pct(kinds['baseline'])} | {dc[0]} ± {dc[1]} (Table 4) |",
              f"| level 1 only | {pct(kinds['level1'])} | {best[0]} ± {best[1]} (Table 3, best alpha) |",
              f"| BiLP+DC (levels 1+2) | {pct(kinds['bilp'])} | {bilp_paper[0]} ± {bilp_paper[1]} (Table 4) |", "",
              f"BiLP+DC minus DC: {verdict(difference(kinds['bilp'], kinds['baseline']))} (paper: "
              f"{bilp_paper[0] - dc[0]:+.1f}); levels 1+2 minus level 1: "
              f"{verdict(difference(kinds['bilp'], kinds['level1']))}. {noise.line()}", ""]
    return lines, {"t4": resolved(difference(kinds["bilp"], kinds["baseline"]))}


def agreement_section(report: dict[str, Any]) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from score_agreement import markdown

    lines = ["## Our scores against the authors'", ""]
    for name, f in report["files"].items():
        meta = f["meta"]
        how = (f"{meta.get('model')} width {meta.get('width')}, depth {meta.get('depth')}, {meta.get('epochs')} "
               f"epochs x {meta.get('trials')} trial(s), mode {meta.get('mode')}, lr {meta.get('lr')}, batch "
               f"{meta.get('batch_size')}, seed {meta.get('seed')}, {meta.get('elapsed_s')} s on "
               f"{meta.get('device')}") if meta.get("format") == "bilp-scores/1" else "the authors' JSON list"
        lines.append(f"- `{name}`: {Path(f['path']).name} ({how})")
    lines += ["", markdown(report), "",
              "Spearman's rho of the two score vectors (overall, and per class: min / median / max over the "
              "classes); kept overlap: the share of the samples kept at alpha by one file that the other also "
              "keeps (chance level in parentheses: unrelated scores).", ""]
    ours = next((m["meta"] for m in report["files"].values() if m["meta"].get("format") == "bilp-scores/1"), None)
    if ours:
        lines += ["How the recipes differ (the authors' side as the paper states it; what it does not state is "
                  "marked so):", "",
                  "| | ours | authors' LossConverge | authors' LossInit |", "|---|---|---|---|",
                  f"| network | ConvNet-{ours.get('depth')}, width {ours.get('width')}, instance norm | not stated "
                  "(the distillation ConvNet is width 128) | not stated |",
                  f"| training | {ours.get('epochs')} epochs, SGD lr {ours.get('lr')}, momentum "
                  f"{ours.get('momentum')}, weight decay {ours.get('weight_decay')}, batch {ours.get('batch_size')}, "
                  "no augmentation | to convergence (\"around 100 epochs\", Sec. 5.4); optimizer and augmentation "
                  "not stated | the first epoch(s) |",
                  f"| loss recorded | {RECORDED.get(ours.get('mode'), ours.get('mode'))} | \"per-sample loss after "
                  "convergence\" (Sec. 5.4), averaged over trials | loss of the first epoch(s) |",
                  f"| trials | {ours.get('trials')} (seed {ours.get('seed')}) | several (\"multiple trials\", "
                  "Sec. 4.1) | not stated |", ""]
    lines += closeness(report)
    return lines


RECORDED = {"mean": "each sample's cross-entropy in the training forward passes, averaged over the epochs",
            "final": "each sample's cross-entropy under the trained network (eval mode)"}


def closeness(report: dict[str, Any]) -> list[str]:
    """Sentences read off the pairs: which authors' file ours ranks closest to, and how far above chance the
    kept sets agree at the largest alpha."""
    pairs = {k: v for k, v in report["pairs"].items() if k.startswith("ours vs ")}
    if not pairs:
        return []
    best = max(pairs, key=lambda k: pairs[k]["spearman"])
    top = max(next(iter(pairs.values()))["overlap"], key=float)
    parts = [f"`{k.removeprefix('ours vs ')}`: {v['overlap'][top]:.3f} "
             f"({v['overlap'][top] / v['chance_overlap'][top]:.1f}x chance)" for k, v in pairs.items()]
    return [f"Our scores rank closest to `{best.removeprefix('ours vs ')}` (rho {pairs[best]['spearman']:.3f}). "
            f"At alpha {top} the kept sets overlap by " + "; ".join(parts) + ".", ""]


def t12_word(resolved: dict[Any, int], loss_ratio: float, random_ratio: float, paper_cell: bool) -> str:
    """The verdict on loss against random (Tables 1-2) from each alpha's resolved difference (1: loss ahead beyond
    noise, -1: behind, 0: within noise). A cell the paper has is *reproduced* or not; a cell it lacks (MNIST) has no
    number to reproduce, so its verdict says what was seen: loss ahead of random (at every alpha or some), behind,
    or within noise."""
    ahead = [a for a, r in resolved.items() if r > 0]
    behind = [a for a, r in resolved.items() if r < 0]
    if not paper_cell:
        if ahead and not behind:
            return "loss ahead of random" + (" at every alpha" if len(ahead) == len(resolved) else "")
        if behind and not ahead:
            return "loss behind random"
        return "loss ahead at some alphas, behind at others" if ahead else "within noise"
    if loss_ratio > random_ratio and not behind:
        return "reproduced" if ahead else "same direction, not resolved"
    if behind or loss_ratio < random_ratio:
        return "not reproduced"
    return "not reproduced (equal ratios)"


def closing(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["## Which claims reproduced at this scale", ""]
    for v in verdicts:
        paper_cell = not v["group"].endswith(NO_PAPER_CELL)
        if "t12" in v:
            t = v["t12"]
            ahead = [a for a, r in t["resolved"].items() if r > 0]
            behind = [a for a, r in t["resolved"].items() if r < 0]
            word = t12_word(t["resolved"], t["loss_ratio"], t["random_ratio"], paper_cell)
            lines.append(f"- {v['group']}, loss vs random (Tables 1-2): **{word}**: max ratio loss "
                         f"{t['loss_ratio']:g} vs random {t['random_ratio']:g}; loss ahead by more than 2 se at "
                         f"alpha {', '.join(map(str, ahead)) or 'none'}, behind at "
                         f"{', '.join(map(str, behind)) or 'none'}.")
        for label, r in v.get("t3", {}).items():
            word = {1: "reproduced" if paper_cell else "holds here", 0: "not resolved (within noise)",
                    -1: "not reproduced" if paper_cell else "does not hold here"}[r]
            lines.append(f"- {v['group']}, best pruned beats the full set ({label}, Table 3): **{word}**.")
        for label, t in v.get("fig3", {}).items():
            fit = t["slope"]
            if fit is None or t["strata"] < 10:
                word = f"incomplete ({t['strata']} of 10 strata)"
            elif fit[0] > t["t"] * fit[1] and t["lowest"] == 1:
                word = "reproduced (rising, S1 lowest)" if paper_cell else "holds here (rising, S1 lowest)"
            elif fit[0] > t["t"] * fit[1]:
                word = f"partly (rising, but the lowest is S{t['lowest']})"
            else:
                word = "not reproduced (no rise beyond noise)" if paper_cell else "no rise beyond noise"
            lines.append(f"- {v['group']}, stratified curve ({label}, Fig. 3): **{word}**.")
        if "t4" in v:
            word = {1: "reproduced", 0: "not resolved (within noise)", -1: "not reproduced"}[v["t4"]]
            lines.append(f"- CIFAR-10 ipc 1, BiLP+DC above DC (Table 4): **{word}**.")
    return [*lines, ""]


def hardware_lines(root: Path, plan: dict[str, Any], shown: dict[str, str]) -> list[str]:
    chunks = [json.loads(line) for line in (root / "chunks.jsonl").read_text().splitlines()] \
        if (root / "chunks.jsonl").is_file() else []
    machines = sorted({f"{c['cpu']} ({c['cpus']} CPUs{', GPU ' + c['gpu'] if c.get('gpu') else ''}), torch "
                       f"{c['torch']}" for c in chunks})
    starts = sorted(json.loads(f.read_text()).get("started", "")
                    for f in root.glob("*/runs/*/config.json"))
    starts = [s for s in starts if s]
    dates = f"{starts[0][:10]} to {starts[-1][:10]}" if starts else "no run yet"
    loads = [c["load_1min"] for c in chunks]
    load = f"; load average at chunk starts {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    return [f"- Hardware: {'; '.join(machines) or 'unknown'}{load}.",
            f"- Runs dated {dates}; {len(chunks)} invocation(s) of `{placeholders(plan['script'], shown)}`.",
            f"- `$OUT` was `{plan['out']}` on that machine (outside the repository); `$BILP_SCORES_DIR` holds the "
            "authors' score files, `$BILP_DATA` the datasets (docs/data.md)"
            + ("; `$SCORES` our score file (its recipe is in the section above)." if plan.get("our_scores") else ".")]


def plan_section(root: Path, verdicts: list[dict[str, Any]]) -> list[str]:
    plan = json.loads((root / "plan.json").read_text())
    shown = shown_paths(plan)
    cells = [load_cell(spec, root, shown) for spec in plan["cells"]]
    done = sum(len(set(c.results) & set(c.expected)) for c in cells)
    total = sum(len(c.expected) for c in cells)
    lines = [f"## Preset `{plan['preset']}`: {done} of {total} points", "", *hardware_lines(root, plan, shown)]
    lines += [f"- {n}" for n in plan.get("notes", [])] + [""]
    groups: dict[tuple[str, str, int], Group] = {}
    for c in cells:
        if c.spec["scores"] == "authors" and not c.spec.get("level2"):
            ours = next((o for o in cells if o.spec.get("shares_baseline") == c.spec["name"]), None)
            groups[(c.args.method, c.args.dataset, c.args.ipc)] = Group(c, ours)
    for g in groups.values():
        section, v = group_section(g)
        if g.dataset == "mnist":
            section.insert(2, PAPER_MNIST + "\n")
        lines += section
        verdicts.append(v)
    for c in cells:
        if c.spec.get("level2"):
            section, v = table4_section(c)
            v["group"] = c.spec["name"]
            lines += section
            verdicts.append(v)
    return lines


def document(roots: list[Path], agreement: dict[str, Any] | None, gpu_command: str) -> str:
    verdicts: list[dict[str, Any]] = []
    body: list[str] = []
    presets = set()
    for root in roots:
        body += plan_section(root, verdicts)
        presets.add(json.loads((root / "plan.json").read_text())["preset"])
    table4 = any("t4" in v for v in verdicts)
    checked = ("the hardest loss decile distills worst (Fig. 3), and BiLP+DC on CIFAR-10 at ipc 1 (Table 4)"
               if table4 else "and the hardest loss decile distills worst (Fig. 3); Table 4 (BiLP+DC, GPU scale) "
               "has not run (section \"GPU scale: not run yet\")")
    lines = ["# Reproducing the paper's level-1 claims", "",
             "Generated by `python benchmarks/reproduction_doc.py` from the folders of `benchmarks/reproduce.py`; do "
             "not edit by hand. The paper's numbers are data in that script, each with the table it comes from.", "",
             "What is checked: pruning by empirical loss keeps the distillation accuracy up to a larger pruning "
             "ratio than random pruning (Tables 1-2), the best pruned run beats the full set (Table 3), "
             f"{checked}. Every cell runs the patched DatasetCondensation (`bilp sweep --host dc`) with its own "
             "evaluation, level 1 only (beta 0)" + (" except Table 4" if table4 else "") + ". " + PAPER_FIG3, "",
             "Statistics: mean ± std pools seeds and evaluation networks. The seed is the unit of replication (the "
             "networks of one seed share its synthetic set); the seed-level variance is pooled over all means of a "
             "method x dataset, se = pooled std / sqrt(seeds), and a difference is *resolved* when it exceeds "
             "Student's t (97.5%, the pooled degrees of freedom) times its se, otherwise it is *within noise*. "
             "`benchmarks/reproduction_doc.py` says more.", ""]
    if agreement:
        lines += agreement_section(agreement)
    lines += body
    if "gpu" not in presets:
        lines += ["## GPU scale: not run yet", "",
                  "The DM and DC CIFAR-10 cells at ipc 1 and 10 (Tables 2-3, the authors' score file, ConvNet width "
                  "128) and Table 4's BiLP+DC run on one GPU in resumable chunks of at most 8 minutes:", "",
                  f"    {gpu_command}", "",
                  "Rerun it until it prints that all points are done, then regenerate this document with the GPU "
                  "folder added.", ""]
    lines += closing(verdicts)
    return "\n".join(lines)


GPU_COMMAND = ("timeout 500 python benchmarks/reproduce.py --preset gpu --out runs/gpu --budget-s 450 "
               "--data-root $BILP_DATA --authors-scores $BILP_SCORES_DIR")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+", help="folders of benchmarks/reproduce.py (each holds plan.json)")
    p.add_argument("--agreement", default=None, help="JSON of benchmarks/score_agreement.py")
    p.add_argument("--out", default="docs/reproduction.md")
    args = p.parse_args(argv)
    agreement = json.loads(Path(args.agreement).read_text()) if args.agreement else None
    text = document([Path(r) for r in args.roots], agreement, GPU_COMMAND)
    files.write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
