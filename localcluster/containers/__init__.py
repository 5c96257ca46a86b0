"""Pods as real Linux containers: images unpacked by umoci, run by runc, on the lab network.

`runner.py` is the kubelet of the local cluster (one pod sandbox per pod, containers restarted as
the pod's restartPolicy says, statuses reported back to the cluster); `images.py` finds and
unpacks images; `spec.py` builds the OCI runtime config from the pod (pure); `exec.py` runs
`runc exec` for pods/exec.
"""
