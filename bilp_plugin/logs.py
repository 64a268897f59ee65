"""The ``bilp`` logger: BiLP's one-line progress messages (run record, kept counts), on stderr as ``bilp: ...``."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("bilp")


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at each record (not the stream it was created with)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def show_progress() -> None:
    """Show the ``bilp`` logger's INFO lines on stderr, unless a handler is already attached to it."""
    if not log.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("bilp: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
