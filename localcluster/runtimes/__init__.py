"""Runtimes behind VirtualMachineInstances, chosen per server with `--runtime`."""

from __future__ import annotations

import importlib
from typing import Any

from localcluster.runtimes.base import (
    DialFailed,
    NamespaceNetwork,
    NotSupported,
    PhaseReporter,
    PhaseUpdate,
    Runtime,
    StreamKind,
    StreamUnavailable,
    image_not_found,
    vmi_images,
)

__all__ = [
    "RUNTIMES",
    "DialFailed",
    "NamespaceNetwork",
    "NotSupported",
    "PhaseReporter",
    "PhaseUpdate",
    "Runtime",
    "StreamKind",
    "StreamUnavailable",
    "image_not_found",
    "make_runtime",
    "runtime_class",
    "vmi_images",
]

# name -> "module:Class". Imported only when chosen: the qemu runtime pulls in much more than the
# `none` runtime the test suite uses, and server start-up time matters for every test session.
RUNTIMES: dict[str, str] = {
    "none": "localcluster.runtimes.none:NoneRuntime",
    "qemu": "localcluster.runtimes.qemu:QemuRuntime",
}


def runtime_class(name: str) -> type[Runtime]:
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
    module_name, _, class_name = RUNTIMES[name].partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
    return cls


def make_runtime(name: str, report: PhaseReporter, **options: Any) -> Runtime:
    return runtime_class(name)(report, **options)
