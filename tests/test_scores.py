"""Score files: round trip, the authors' JSON lists, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bilp_plugin.method import scorefile
from bilp_plugin.errors import BiLPError

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1])


def make(tmp_path: Path, values: np.ndarray | None = None, labels: np.ndarray = LABELS) -> Path:
    values = np.linspace(0, 1, len(labels)) if values is None else values
    path = tmp_path / "s.npz"
    meta = {**scorefile.dataset_meta("toy", labels), "epochs": 2}
    scorefile.save(path, scorefile.ScoreFile(values, labels, meta))
    return path


def test_round_trip_keeps_values_labels_and_record(tmp_path: Path) -> None:
    path = make(tmp_path)
    loaded = scorefile.load(path)
    assert np.array_equal(loaded.scores, np.linspace(0, 1, 8)) and np.array_equal(loaded.labels, LABELS)
    assert loaded.meta["dataset"] == "toy" and loaded.meta["class_counts"] == [3, 3, 2]
    assert loaded.meta["labels_sha256"] == scorefile.labels_sha256(LABELS) and loaded.meta["epochs"] == 2
    assert loaded.sha256 == scorefile.file_sha256(path)
    with np.load(path, allow_pickle=False) as z:  # readable with plain numpy, no pickle
        assert json.loads(str(z["meta"]))["format"] == scorefile.FORMAT


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    path = make(tmp_path)
    with pytest.raises(BiLPError, match="--force"):
        make(tmp_path)
    scorefile.save(path, scorefile.ScoreFile(np.zeros(8), LABELS, scorefile.dataset_meta("toy", LABELS)), force=True)
    assert scorefile.load(path).scores.sum() == 0


def test_authors_json_loads_as_scores(tmp_path: Path) -> None:
    path = tmp_path / "MNIST_LossConverge.json"
    path.write_text(json.dumps([0.5, 0.25, 3.0]))
    loaded = scorefile.load(path)
    assert loaded.scores.tolist() == [0.5, 0.25, 3.0] and loaded.labels is None
    scorefile.check_matches(loaded, [0, 1, 0])


def test_count_mismatch(tmp_path: Path) -> None:
    with pytest.raises(BiLPError, match="has 8 scores but the dataset toy has 9 samples"):
        scorefile.check_matches(scorefile.load(make(tmp_path)), np.arange(9) % 3, "toy")


def test_label_checksum_mismatch(tmp_path: Path) -> None:
    with pytest.raises(BiLPError, match="another label sequence"):
        scorefile.check_matches(scorefile.load(make(tmp_path)), LABELS[::-1], "toy")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_scores(tmp_path: Path, bad: float) -> None:
    values = np.linspace(0, 1, 8)
    values[3] = bad
    with pytest.raises(BiLPError, match="NaN or infinite .first at index 3"):
        make(tmp_path, values)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([0.0, 1.0]).replace("1.0", "NaN"))
    with pytest.raises(BiLPError, match="NaN or infinite"):
        scorefile.load(path)


def test_truncated_or_unreadable_files(tmp_path: Path) -> None:
    path = make(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BiLPError, match="cannot read score file"):
        scorefile.load(path)
    garbage = tmp_path / "g.json"
    garbage.write_text("[1, 2, ")
    with pytest.raises(BiLPError, match="cannot read score file"):
        scorefile.load(garbage)
    nested = tmp_path / "n.json"
    nested.write_text("[[1, 2], [3, 4]]")
    with pytest.raises(BiLPError, match="flat JSON list"):
        scorefile.load(nested)
    with pytest.raises(BiLPError, match="does not exist"):
        scorefile.load(tmp_path / "missing.npz")
