"""One adapter per upstream (``bilp_adapters.<name>``): ``manifest.toml`` (where the upstream lives, its pinned
commit, its patch series) and ``plugin.py`` (the hook implementations for that codebase)."""
