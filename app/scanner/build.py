"""Build the agent zipapp reproducibly: same sources → same bytes → same SHA-256 on every ingest node."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

PACKAGE = "mipo_scanner"
_MAIN = f"from {PACKAGE}.__main__ import main\nraise SystemExit(main())\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def build_zipapp() -> bytes:
    """The agent as one executable zip (`python3 agent.pyz …`); fixed timestamps and order for a stable hash."""
    source = Path(__file__).parent
    buf = io.BytesIO()
    buf.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        entries = [("__main__.py", _MAIN.encode())]
        entries += [(f"{PACKAGE}/{p.name}", p.read_bytes()) for p in sorted(source.glob("*.py"))]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "agent.pyz")
    blob = build_zipapp()
    out.write_bytes(blob)
    print(f"{out}: {len(blob)} bytes, sha256 {sha256_hex(blob)}")
