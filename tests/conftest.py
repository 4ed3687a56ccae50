"""Test configuration shared by every tier.

Design notes: servers (the local Kubernetes control plane, Azurite, the S3 server, the OCI
registry) are started by fixtures in `tests/fixtures/`, bound to 127.0.0.1, once per session,
and every test gets fresh room of its own (a namespace, a container, a bucket, a repository).
"""

pytest_plugins: list[str] = [
    "tests.fixtures.azurite",
    "tests.fixtures.s3",
    "tests.fixtures.registry",
    "tests.fixtures.models",
    "tests.fixtures.cluster",
    "tests.fixtures.operator",
    "tests.fixtures.real_node",
    "tests.fixtures.helm",
    "tests.fixtures.images",
    "tests.fixtures.private_cluster",
    "tests.fixtures.kind",
    "tests.fixtures.e2e",
    "tests.fixtures.addons",
]
