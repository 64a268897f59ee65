"""The built-in host's adapter (``bilp_plugin.lab.host``): no upstream, no manifest, no patches."""
