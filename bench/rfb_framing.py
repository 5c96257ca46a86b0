"""What following a student's VNC stream costs (vncproxy/rfb.py): the framing of the machine's side
runs on every byte of every shared screen, watched or not.

    .venv/bin/python bench/rfb_framing.py [--frames 50]

Feeds full 1024x768 updates in 64 KiB reads, as the relay gets them: Hextile with a background and
four coloured subrectangles in every tile (the framing's worst common case: 3,072 tile headers),
and Raw (one header, 3 MiB passed by).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vncproxy.rfb import ServerStream

PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
WIDTH, HEIGHT = 1024, 768


def frames() -> dict[str, bytes]:
    tile = bytes([2 | 8 | 16]) + b"B" * 4 + b"\x04" + (b"c" * 4 + b"\x00\x11") * 4
    header = struct.pack(">BxH", 0, 1)
    return {
        "Hextile": header
        + struct.pack(">HHHHi", 0, 0, WIDTH, HEIGHT, 5)
        + tile * (WIDTH // 16 * HEIGHT // 16),
        "Raw": header + struct.pack(">HHHHi", 0, 0, WIDTH, HEIGHT, 0) + b"p" * (WIDTH * HEIGHT * 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    stream = ServerStream()
    server_init = struct.pack(">HH", WIDTH, HEIGHT) + PIXEL_FORMAT + struct.pack(">I", 4) + b"demo"
    stream.feed(b"RFB 003.008\n\x01\x01\0\0\0\0" + server_init)
    print(f"{'encoding':<8} {'KiB/frame':>10} {'ms/frame':>9} {'MB/s':>8}")
    for name, data in frames().items():
        started = time.perf_counter()
        for _ in range(args.frames):
            for offset in range(0, len(data), 65536):
                stream.feed(data[offset : offset + 65536])
        seconds = (time.perf_counter() - started) / args.frames
        assert not stream.broken and stream.at_boundary
        print(f"{name:<8} {len(data) / 1024:>10.0f} {seconds * 1000:>9.2f} {len(data) / seconds / 1e6:>8.0f}")


if __name__ == "__main__":
    main()
