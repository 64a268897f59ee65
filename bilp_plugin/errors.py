"""The one exception type the plugin raises for bad input."""


class BiLPError(Exception):
    """A user-facing error: the message names the bad value and the fix."""
