"""BiLP's one-line messages (run record, kept counts, fallbacks), on stderr as ``bilp: ...``.

Written directly, not through :mod:`logging`: every log record reads ``time.time``, which the upstreams use to
seed their generators, and a reproducible launch (``bilp launch --fake-clock``) replaces it with a clock
that advances per call. A ``--bilp`` run that changes nothing must not move that clock either.
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """Print ``bilp: message`` on the current ``sys.stderr``."""
    print(f"bilp: {message}", file=sys.stderr, flush=True)
