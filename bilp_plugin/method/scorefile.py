"""Score files: one ``.npz`` per scored dataset, and import of the BiLP authors' JSON lists.

Format (``bilp score`` writes it; ``numpy.load(path)`` reads it, no pickle):

* ``scores``: float64, shape (N,), one per training sample in the upstream's (torchvision) order; lower = more
  valuable, so level 1 prunes the largest first.
* ``labels``: int64, shape (N,), the label sequence the scores were made on.
* ``meta``: a 0-d string array holding a JSON object: ``format`` (``bilp-scores/1``), ``dataset``, ``n``,
  ``class_counts``, ``labels_sha256`` (of the int64 label sequence), for a folder dataset ``files_sha256`` (of
  its ordered file list, :func:`files_sha256`), and how the scores were made (``model``, ``epochs``, ``trials``,
  ``mode``, ``seed``, ``elapsed_s``, ``bilp_version``, ...).

The authors' files (``{DATASET}_{Indicator}.json``) are flat JSON lists of floats; they carry no labels, so they
are checked against the dataset they are used with by length only.

A file is refused when it is not self-consistent: its arrays against its own ``meta`` (``n``, ``labels_sha256``),
scores that are not finite numbers (strings and booleans included), labels that are not non-negative integers
below the number of samples.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin import __version__, files, hookimpl
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say

FORMAT = "bilp-scores/1"


@dataclass
class ScoreFile:
    """Per-sample scores with the labels they were made on and a record of how."""

    scores: np.ndarray
    labels: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.scores)


def labels_sha256(labels: Any) -> str:
    """Checksum of a label sequence (as int64), to catch scores used with another dataset or order."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(labels, dtype="<i8")).tobytes()).hexdigest()


def files_sha256(files: list[str]) -> str:
    """Checksum of an ordered file list (paths relative to the dataset folder, one per line, UTF-8)."""
    return hashlib.sha256("".join(f"{name}\n" for name in files).encode()).hexdigest()


def same_partition(a: Any, b: Any) -> bool:
    """Whether two label sequences group the samples into the same classes (numbered alike or not)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1] if len(a) else 0
    return len(a) == len(b) and pairs == len(np.unique(a)) == len(np.unique(b))


def class_counts(labels: Any) -> list[int]:
    return np.bincount(np.asarray(labels, dtype=np.int64)).tolist()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_meta(dataset: str, labels: Any, files: list[str] | None = None) -> dict[str, Any]:
    """The metadata that ties scores to one dataset and one sample order (and, for a folder dataset, its files)."""
    meta = {"format": FORMAT, "dataset": dataset, "n": int(len(labels)), "class_counts": class_counts(labels),
            "labels_sha256": labels_sha256(labels), "bilp_version": __version__}
    if files is not None:
        meta["files_sha256"] = files_sha256(files)
    return meta


def check_finite(scores: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BiLPError(f"{where}: {int(bad.sum())} scores are NaN or infinite (first at index {first}, "
                        f"value {scores[first]}); re-create the score file")


def save(path: str | Path, score_file: ScoreFile, force: bool = False) -> str:
    """Write ``score_file`` atomically; refuses to overwrite without ``force``. Returns the file's sha256."""
    path = Path(path)
    if path.suffix != ".npz":
        raise BiLPError(f"score files are .npz: got {path}")
    files.check_new_file(path, "score file", force)
    check_finite(score_file.scores, str(path))
    files.save_npz(path, scores=np.asarray(score_file.scores, dtype=np.float64),
                   labels=np.asarray(score_file.labels, dtype=np.int64),
                   meta=np.array(json.dumps(score_file.meta, sort_keys=True)))
    score_file.path, score_file.sha256 = str(path), file_sha256(path)
    return score_file.sha256


def _refuse(path: Path, why: str) -> BiLPError:
    return BiLPError(f"score file {path}: {why}; re-create it with `bilp score`")


def _load_npz(path: Path) -> ScoreFile:
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with z:
                scores, labels, meta = z["scores"], z["labels"], json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise BiLPError(f"cannot read score file {path} ({type(err).__name__}: {str(err).splitlines()[0]}); it "
                        "is not a complete `bilp score` file: re-create it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else f"a JSON {type(meta).__name__}"
        raise _refuse(path, f"its meta is not a {FORMAT} record (format {found!r})")
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise _refuse(path, f"scores {scores.shape} and labels {labels.shape} must be two arrays of one length")
    if scores.dtype.kind not in "iuf":
        raise _refuse(path, f"scores must be numbers, got dtype {scores.dtype}")
    if labels.dtype.kind not in "iu":
        raise _refuse(path, f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    check_labels(labels, str(path))
    if meta.get("n", len(labels)) != len(labels):
        raise _refuse(path, f"it holds {len(labels)} scores but its meta says n = {meta.get('n')!r}")
    if meta.get("labels_sha256", labels_sha256(labels)) != labels_sha256(labels):
        raise _refuse(path, "its labels do not match the labels_sha256 of its own meta (the file was altered)")
    return ScoreFile(scores.astype(np.float64), labels, meta)


def check_labels(labels: np.ndarray, where: str) -> None:
    """Labels are class indices: non-negative, and fewer classes than samples."""
    if len(labels) and (labels.min() < 0 or labels.max() >= len(labels)):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise BiLPError(f"{where}: label {bad} is not a class index in 0..{len(labels) - 1} (one per sample at "
                        "most); re-create the score file")


def _load_json(path: Path) -> ScoreFile:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise BiLPError(f"cannot read score file {path} ({type(err).__name__}: {err}); expected a flat JSON "
                        "list of numbers, one per training sample") from None
    if not isinstance(values, list) or not values:
        raise BiLPError(f"score file {path}: expected a flat JSON list of numbers, one per training sample, got "
                        + (f"a JSON {type(values).__name__}" if not isinstance(values, list) else "an empty list"))
    bad = next((i for i, v in enumerate(values) if type(v) not in (int, float)), None)
    if bad is not None:
        raise BiLPError(f"score file {path}: entry {bad} is {values[bad]!r}, not a number; expected a flat JSON "
                        "list of numbers, one per training sample")
    return ScoreFile(np.asarray(values, dtype=np.float64), None, {"format": "authors-json", "source": path.name})


def load(path: str | Path) -> ScoreFile:
    """Read a ``.npz`` score file or an authors' ``.json`` list; checks format, consistency and finiteness."""
    path = Path(path)
    if not path.is_file():
        raise BiLPError(f"score file {path} does not exist")
    score_file = _load_npz(path) if path.suffix == ".npz" else _load_json(path)
    if not len(score_file):
        raise _refuse(path, "it holds no scores")
    check_finite(score_file.scores, str(path))
    score_file.path, score_file.sha256 = str(path), file_sha256(path)
    return score_file


def check_matches(score_file: ScoreFile, labels: Any, dataset: str | None = None,
                  files: list[str] | None = None) -> None:
    """Refuse scores made on another dataset, another size or another sample order. Where both the score file
    (``files_sha256``) and the run (``files``) know their files, the ordered file lists must be equal, and the
    labels need only group the samples alike (upstreams number a subset of classes in their own order)."""
    labels = np.asarray(labels, dtype=np.int64)
    where = score_file.path or "scores"
    recorded = score_file.meta.get("files_sha256")
    if recorded is not None and files is not None:
        _check_files(score_file, labels, files, recorded, where)
        return
    if recorded is not None:
        say(f"warning: {where} was made on an image folder's files, but this run does not list its files: only "
            "its sample count and labels are checked against them")
    if len(score_file.scores) != len(labels):
        raise BiLPError(f"{where} has {len(score_file.scores)} scores but the dataset"
                        f"{' ' + dataset if dataset else ''} has {len(labels)} samples: use the score file made "
                        "for this dataset")
    if score_file.labels is not None and labels_sha256(score_file.labels) != labels_sha256(labels):
        made_on = score_file.meta.get("dataset", "?")
        raise BiLPError(f"{where} was made on {made_on!r} with another label sequence than the dataset"
                        f"{' ' + dataset if dataset else ''} it is used with (labels_sha256 differs): another "
                        "dataset or sample order; re-score this dataset with `bilp score`")


def _check_files(score_file: ScoreFile, labels: np.ndarray, files: list[str], recorded: str, where: str) -> None:
    if files_sha256(files) != recorded:
        classes = [files[int(np.flatnonzero(labels == c)[0])].split("/")[0] for c in np.unique(labels)]
        raise BiLPError(f"{where} was made on other files, or in another order, than this run's real set "
                        f"({len(files)} files of {len(classes)} class folders; files_sha256 differs): score the "
                        f"run's files with `bilp score --dataset imagefolder --data-root DIR --classes "
                        f"{','.join(classes)}` (DIR: the folder holding those class folders)")
    if score_file.labels is not None and not same_partition(score_file.labels, labels):
        raise BiLPError(f"{where} was made on this run's files but groups them into other classes than the run "
                        "does: re-score with `bilp score --dataset imagefolder`")


@hookimpl
def score_samples(dataset: Any, config: Any) -> ScoreFile | None:
    """Built-in: import the score file named by ``config.scores_path``, checked against ``dataset``."""
    if not config.scores_path:
        return None
    score_file = load(config.scores_path)
    check_matches(score_file, dataset.labels, dataset.name, getattr(dataset, "files", None))
    return score_file
