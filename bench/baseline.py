"""An earlier commit's packages beside this tree, so a benchmark measures before and after in one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unpack(ref: str, workdir: Path, *packages: str) -> bool:
    """Unpack `packages` as they were at git `ref` into `workdir`; False (and why, on stderr) if git cannot.
    Put `workdir` first on the path and this tree after it: the rest comes from this tree."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *packages], capture_output=True)
    if archive.returncode:
        print(f"baseline {ref}: {archive.stderr.decode().strip()}; skipped", file=sys.stderr)
        return False
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive.stdout, check=True)
    return True
