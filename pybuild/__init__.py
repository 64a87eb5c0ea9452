"""pybuild: a daemonless container image builder, runtime and git-like layer store.

Kept import-free so that `pybuild --help` starts fast.
"""

__version__ = "0.1.0"
