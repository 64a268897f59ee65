"""One ``--bilp`` process of a patched upstream: its config, adapter (resolved once: every hook of the run goes
through its :class:`~bilp_plugin.manager.RunHooks`), run record, level-1 subset and level-2 selector. The facade
(:mod:`bilp_plugin.runtime`) creates it at the first BiLP call."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bilp_plugin.config import STRATA, BiLPConfig, ScoringConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say
from bilp_plugin.manager import PluginManager, get_manager
from bilp_plugin.method import level1, scorefile
from bilp_plugin.method.level2 import LazySelector
from bilp_plugin.method.matchstep import MatchStep
from bilp_plugin.method.realset import RealSet
from bilp_plugin.runtime.flags import from_args
from bilp_plugin.runtime.record import RunRecord, check_out


class Session:
    """Checks the run (``check_run``) and its record folder; at the first experiment, level 1 (checked by
    ``check_level1``), and only then creates the run record, so that a refused run leaves none; hands level 1 to
    ``after_level1``; a fresh level-2 selector per experiment."""

    def __init__(self, args: Any, upstream: str, manager: PluginManager | None = None) -> None:
        self.args = args
        self.upstream = upstream
        self.config: BiLPConfig = from_args(args)
        self.hooks = (manager or get_manager()).run_hooks(upstream)  # the run's adapter, resolved once
        self.hooks.check_run(args, self.config)
        check_out(self.config.out)
        self.record: RunRecord | None = None
        self.kept: np.ndarray | None = None
        self.selector: LazySelector | None = None
        self._made: scorefile.ScoreFile | None = None

    def start_experiment(self, labels: Any, images: torch.Tensor | None, dataset: str | None,
                         real: Any = None) -> np.ndarray | None:
        """Level 1 for a new experiment: the kept indices (``None`` when level 1 is off); resets level 2.
        ``real`` (the upstream's own real set) lets the adapter's ``real_images`` supply images to score."""
        if self.record is None:
            label_array = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
            subset = level1.Subset(label_array)
            if self.config.level1:
                subset = self._level1(label_array, images, dataset, real)
                self.hooks.check_level1(self.args, self.config, subset)
            self.record = RunRecord(self.config.out, self.config, self.upstream, self.args)
            say(f"BiLP run record: {self.record.dir}")
            if self.config.level1:
                self._record_level1(subset)
            self.hooks.after_level1(self.args, self.config, subset)
            self.kept = subset.kept
        self.record.new_experiment()
        self.selector = LazySelector(self.config, self.hooks, self.record.selection)
        return self.kept

    def discard(self) -> None:
        """Undo the record of a run refused before its first matching step."""
        if self.record is not None:
            self.record.discard()
            self.record = None

    def close(self) -> None:
        """Write the record's summary (when the run got as far as a record)."""
        if self.record is not None:
            self.record.close()

    def _level1(self, labels: np.ndarray, images: torch.Tensor | None, dataset: str | None,
                real: Any) -> level1.Subset:
        score_file = None if self.config.criterion == "random" else self._scores(labels, images, dataset, real)
        kept = level1.select(score_file.scores if score_file else None, labels, self.config.alpha,
                             self.config.criterion, self.config.seed, self.config.stratum)
        summary = level1.summary(
            kept, labels, dataset=dataset, alpha=self.config.alpha, criterion=self.config.criterion,
            stratum=self.config.stratum, scores=score_file.path if score_file else None,
            scores_sha256=score_file.sha256 if score_file else None,
            scores_meta=score_file.meta if score_file else None)
        return level1.Subset(labels, kept, summary)

    def _record_level1(self, subset: level1.Subset) -> None:
        assert self.record is not None and subset.kept is not None and subset.summary is not None
        if self._made is not None:
            self.record.scores(self._made)
            subset.summary.update(scores=self._made.path, scores_sha256=self._made.sha256)
        self.record.level1(subset.kept, subset.summary)
        rule = (f"stratum S{self.config.stratum} of {STRATA}" if self.config.criterion == "stratum"
                else f"{self.config.criterion}, alpha={self.config.alpha}")
        say(f"BiLP level 1: kept {len(subset.kept)} of {len(subset.labels)} real samples ({rule})")

    def _scores(self, labels: np.ndarray, images: torch.Tensor | None, dataset: str | None,
                real: Any) -> scorefile.ScoreFile:
        if self.config.scores is None and images is None and real is not None:
            images = self.hooks.real_images(real, dataset)  # may load the whole set
        if self.config.scores is None and images is None:
            raise BiLPError("level 1 needs --bilp-scores FILE here (this upstream passes no images to score)")
        scoring = ScoringConfig(scores_path=self.config.scores, epochs=self.config.score_epochs,
                                seed=self.config.seed, device=str(images.device) if images is not None else "cpu")
        files = self.hooks.real_files(real) if real is not None else None
        real_set = RealSet(name=str(dataset), images=images if images is not None else torch.empty(0),
                           labels=torch.as_tensor(labels), num_classes=int(labels.max()) + 1, mean=(), std=(),
                           files=files)
        score_file = self.hooks.score_samples(real_set, scoring)
        scorefile.check_matches(score_file, labels, dataset, files)
        if score_file.path is None:
            self._made = score_file  # saved into the record once the run is accepted
        return score_file

    def select(self, step: MatchStep) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.selector is not None and self.record is not None, "start_experiment creates the selector"
        self.record.draw()
        return self.selector(step)
