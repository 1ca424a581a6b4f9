"""The fuzz harness, short and seeded: every surface takes a few thousand generated inputs with no crash,
no hang, no traceback in the log and bounded memory (bench/fuzz.py runs the same at 10^5 and more).

Each surface runs in its own ``bench/fuzz.py`` process, so its log capture and memory figures are its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chaos

FUZZ = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"
#: inputs per surface: seconds each (Modbus goes through a real simulator and reconnects: fewer)
COUNTS = {"config": 3000, "admin": 3000, "gossip": 5000, "can": 5000, "modbus": 400}
#: RSS growth after warm-up that would mean something is kept per input (a few thousand inputs)
MAX_GROWTH_MB = 20.0


@pytest.mark.parametrize("surface", sorted(COUNTS))
def test_surface_survives_generated_inputs(surface: str, subprocess_env) -> None:
    result = subprocess.run(
        [sys.executable, str(FUZZ), "--surface", surface, "--count", str(COUNTS[surface]), "--seed", "12"],
        env=subprocess_env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(result.stdout.splitlines()[-1])["surfaces"][surface]
    assert stats["inputs"] >= COUNTS[surface], stats
    assert (stats["crashes"], stats["hangs"], stats["tracebacks"]) == (0, 0, 0), result.stdout[-3000:]
    assert stats["rss_growth_mb"] < MAX_GROWTH_MB, stats
    if surface == "can":  # every frame reached the transport's reader (none lost to a bus reopen)
        assert stats["outcomes"]["delivered"] == stats["inputs"], stats
    if surface == "gossip":  # loopback UDP: the kernel may drop a few under load, not most
        assert stats["outcomes"]["delivered"] >= 0.9 * stats["inputs"], stats


def test_the_opcua_surface_is_a_hook(subprocess_env) -> None:
    """OPC UA method arguments are fuzzed by their own harness, registered through ``register_surface``."""
    result = subprocess.run([sys.executable, str(FUZZ), "--surface", "opcua", "--count", "10"],
                            env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    stats = json.loads(result.stdout.splitlines()[-1])["surfaces"]["opcua"]
    assert stats["inputs"] == 0 and "register_surface" in stats["examples"][0]
