"""A third-party BiLP adapter, packaged apart from bilp-plugin: the toy upstream ``toy_upstream.py``."""
