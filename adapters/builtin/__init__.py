"""The built-in host's adapter (``bilp_plugin.host``): no upstream, no manifest, no patches."""
