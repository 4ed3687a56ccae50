"""Benchmark of the operator against a baseline without it, on a local cluster with kwok nodes.

Run: `.venv/bin/python -m benchmarks.operator` (figures in benchmarks/README.md). Everything happens in
a cluster of its own (started in a temporary folder, stopped at the end), so nothing else on the machine
is touched and the control plane's flags are the ones under test. The operator is the real
`modelapp run` subprocess; the baseline creates the same ModelApps and server-side applies the children
the same builders produce (`modelapp_operator.kube.apply`, same field manager) with no operator at all.
"""
