"""Editors check the shipped configs against the shipped schema: taplo (the engine of VS Code's "Even Better
TOML") follows each config's ``#:schema`` line, accepts the configs as shipped and flags a misspelt key.

taplo is installed from the pinned ``taplo/package-lock.json`` when missing; the test is skipped only when
``npm`` is not on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent / "taplo"
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "config").rglob("*.toml"))


@pytest.fixture(scope="module")
def taplo() -> str:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is needed for the taplo check (install Node.js >= 18)")
    binary = HERE / "node_modules" / ".bin" / "taplo"
    if not binary.exists():
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return str(binary)


def _lint(taplo: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([taplo, "lint", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_taplo_accepts_every_shipped_config_against_its_schema_line(taplo: str, config: Path) -> None:
    result = _lint(taplo, config)
    assert result.returncode == 0, result.stderr[-2000:]


def test_taplo_flags_a_misspelt_key_through_the_schema_line(taplo: str, tmp_path: Path) -> None:
    bad = ROOT / "config" / f"_taplo_check_{tmp_path.name}.toml"  # beside the schema, as a site's config would be
    bad.write_text('#:schema ./bessgw.schema.json\n[gateway]\nid = "gw1"\nstate_dirr = "/var/lib/bessgw"\n')
    try:
        result = _lint(taplo, bad)
    finally:
        bad.unlink()
    assert result.returncode != 0 and "state_dirr" in result.stderr
