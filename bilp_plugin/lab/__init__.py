"""The experiment lab: the built-in host, the hosts of demo/sweep, ``bilp demo``, ``bilp sweep``, reports and
plots, the dataset loaders."""
