"""An earlier release's source tree, for tests that run it next to the working tree (wire compatibility,
state-directory migration).

The tree is exported from the repository's release tag with ``git archive`` (nothing in the checkout or
its ``.git`` changes) and run with ``PYTHONPATH`` pointing at it: its ``bessgw`` then shadows the working
tree's, while the plugins installed in the test venv (unchanged since that release) still load.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the previous release: the one this release must run next to during a rolling upgrade
PREVIOUS_RELEASE = "v0.2.0"


def export_release(tag: str, dest: Path) -> Path:
    """Export release ``tag`` into ``dest`` and return it; skips the test where the tag is unavailable
    (a shallow clone without tags)."""
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", tag], cwd=ROOT, capture_output=True,
                                 timeout=60, check=True).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"release {tag} not available from git ({err}); fetch the tags to run this test")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest
