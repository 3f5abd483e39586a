"""The installed project imports its own packages from any working directory (notebooks run from notebooks/)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_kernels_resolves_to_the_repo_from_the_notebooks_dir():
    # A PyPI package is also called `kernels` (transformers >= 5.25 pulls it in): it must not win.
    out = subprocess.run([sys.executable, "-c", "import kernels, labcore; print(kernels.__file__)"],
                         cwd=ROOT / "notebooks", capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out).resolve().parent == ROOT / "kernels", (
        f"`import kernels` from notebooks/ found {out}, not this repo's kernels/: another package named "
        "`kernels` is installed (pip uninstall kernels, or check the transformers pin in pyproject.toml)")
