"""Tenancy figures (issue 10): what hostile tenants cost good ones, in the operator and in `modelapp bump`.

`python -m benchmarks.tenancy`; see benchmarks/README.md, "Tenancy (issue 10)".
"""
