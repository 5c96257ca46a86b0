"""Building blocks of the `qemu` runtime (localcluster/runtimes/qemu.py).

- `host`: which system tools exist, and whether KVM really works here;
- `images`: the image store behind `containerDisk.image` references;
- `cloudinit`: the NoCloud `cidata` ISO;
- `network`: one `vde_switch` per namespace (the lab's private L2 segment);
- `process`: one supervised `qemu-system-x86_64` per VMI, with pidfiles for crash clean-up;
- `qmp`: a small client for QEMU's monitor protocol;
- `serial`: the serial console multiplexer;
- `png`: PPM to PNG for screenshots when QEMU cannot write PNG itself.
"""
