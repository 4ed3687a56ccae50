"""One exception type for everything the cluster tooling reports to a person.

Its message is a single line meant to be printed as-is (`modelapp-cluster up` prints it and exits 1):
a port in use, Go missing, a build failure with the tail of its log, a component that died.
"""

from __future__ import annotations


class ClusterError(RuntimeError):
    """A failure the user can act on; `str(exc)` is the one-line explanation."""
