"""OCI registries for the local cluster: pulling containerDisks (pull.py, cache.py), serving them
(server.py, Debian's `docker-registry`), building them (containerdisk.py).

Every registry conversation goes through Debian's `skopeo` (containers/image, as CRI-O and Podman):
this package runs it and reads the OCI layouts it writes; it speaks no registry protocol itself.
"""
