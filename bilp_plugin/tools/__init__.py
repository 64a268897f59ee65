"""Tools around the upstreams: ``bilp-apply`` (patch series), the reproducible launcher, data layouts."""
