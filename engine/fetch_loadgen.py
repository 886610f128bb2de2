"""Fetch MLCommons LoadGen's source distribution for the engine build, verified by hash.

LoadGen is not copied into this repository: the build takes the pinned release's sdist from
the package registry with pip (so the machine's own index settings apply), checks its SHA-256
against the pin below, and unpacks it into the build directory. VISIONPERF_LOADGEN_SDIST may
name a local copy of the same file (offline builds); it is checked against the same hash.

usage: fetch_loadgen.py DEST_DIR   -> prints the unpacked source directory
"""

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "6.0.17"  # keep equal to the mlcommons-loadgen pin in pyproject.toml
SHA256 = "a2e85d09e3cc0c606f89bfe1fbf97537c8b5b238ae0afbd923ad9c710fcf2ca8"
NAME = f"mlcommons_loadgen-{VERSION}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    dest = Path(sys.argv[1]).resolve()
    src = dest / NAME
    if (src / "loadgen.h").exists() and (dest / ".verified").read_text().strip() == SHA256:
        print(src)
        return
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{NAME}.tar.gz"
    local = os.environ.get("VISIONPERF_LOADGEN_SDIST")
    if local:
        archive.write_bytes(Path(local).read_bytes())
    elif not archive.exists() or _sha256(archive) != SHA256:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"mlcommons-loadgen=={VERSION}", "-d", str(dest)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not archive.exists():
            sys.exit(f"visionperf: could not fetch mlcommons-loadgen {VERSION} source with pip "
                     f"({(r.stderr or r.stdout).strip().splitlines()[-1:] or 'no output'}); "
                     "set VISIONPERF_LOADGEN_SDIST to a downloaded copy of "
                     f"{archive.name} for an offline build")
    got = _sha256(archive)
    if got != SHA256:
        sys.exit(f"visionperf: {archive} has SHA-256 {got}, expected {SHA256} "
                 f"(mlcommons-loadgen {VERSION}): refusing to build against it")
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    (dest / ".verified").write_text(SHA256 + "\n")
    print(src)


if __name__ == "__main__":
    main()
