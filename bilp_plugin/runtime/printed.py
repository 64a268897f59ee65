"""What a patched upstream prints, read while its run record is open: :class:`LineTap` passes every write to the
real ``sys.stdout`` and hands each complete line to a callback (the ``read_accuracy`` hook); and the accuracy lines
the upstreams print (:func:`dc_family_accuracy`, :func:`idc_accuracy`), for their adapters' ``read_accuracy``."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

Accuracy = dict[str, Any]
"""``{"mean": m, "std": s, "networks": n, "final": f}``: accuracies as fractions in [0, 1]; ``std`` and
``networks`` may be ``None``; ``final``: the line sums up the whole run rather than one evaluation."""


class LineTap:
    """A stand-in for ``sys.stdout`` that writes through and calls ``on_line`` with each complete line."""

    def __init__(self, stream: TextIO, on_line: Callable[[str], None]) -> None:
        self.stream = stream
        self.on_line = on_line
        self.pending = ""

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.on_line(line)
        return written

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...: the real stream's
        return getattr(self.stream, name)


def tap(on_line: Callable[[str], None]) -> LineTap:
    """Install a :class:`LineTap` as ``sys.stdout``; :func:`untap` removes it."""
    sys.stdout = LineTap(sys.stdout, on_line)
    return sys.stdout


def untap(line_tap: LineTap) -> None:
    """Put back the stream ``line_tap`` wrapped, when ``line_tap`` is still ``sys.stdout`` (otherwise someone
    replaced it since, and that is left alone)."""
    if sys.stdout is line_tap:
        if line_tap.pending:
            line_tap.on_line(line_tap.pending)
            line_tap.pending = ""
        sys.stdout = line_tap.stream


_EVALUATE = re.compile(r"Evaluate (\d+) random \S+, mean = (\d+(?:\.\d*)?) std = (\d+(?:\.\d*)?)")
_RUN = re.compile(r"Run \d+ experiments, train on \S+, evaluate (\d+) random \S+, mean\s+= (\d+(?:\.\d*)?)%\s+std = "
                  r"(\d+(?:\.\d*)?)%")
_IDC = re.compile(r"Repeat (\d+) => Best, last acc: (\d+(?:\.\d*)?) (\d+(?:\.\d*)?)")


def dc_family_accuracy(line: str) -> Accuracy | None:
    """DatasetCondensation's evaluation line (``main.py``, ``main_DM.py``; MTT's ``distill.py`` and IDM's
    ``IDM_cifar10.py`` print the same): ``Evaluate 5 random ConvNet, mean = 0.2612 std = 0.0041`` (fractions), and
    the last line of DC/DSA/DM, over every experiment: ``Run 1 experiments, train on ConvNet, evaluate 5 random
    ConvNet, mean  = 26.12%  std = 0.41%``."""
    if match := _EVALUATE.search(line):
        return {"mean": float(match[2]), "std": float(match[3]), "networks": int(match[1]), "final": False}
    if match := _RUN.search(line):
        return {"mean": float(match[2]) / 100, "std": float(match[3]) / 100, "networks": int(match[1]),
                "final": True}
    return None


def idc_accuracy(line: str) -> Accuracy | None:
    """IDC's test line (``test.py``'s ``test_data``, which ``condense.py`` calls): ``Repeat 2 => Best, last acc:
    49.8 48.9``, the means over repeats 0..2 in percent; the last accuracy is the one kept (no std printed)."""
    if match := _IDC.search(line):
        return {"mean": float(match[3]) / 100, "std": None, "networks": int(match[1]) + 1, "final": False}
    return None
