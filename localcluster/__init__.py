"""localcluster: a single-machine Kubernetes + KubeVirt API server for the subset Lab Orchestrator uses.

Standalone (no Django). Run it with `python -m localcluster --state-dir DIR`; in tests use the
`local_cluster` pytest fixture (`localcluster.pytest_plugin`) or `localcluster.harness.start_local_cluster`.
"""
