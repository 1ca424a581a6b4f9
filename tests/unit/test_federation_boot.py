"""Boot numbers: larger on every start, also when the clock steps back, recorded in the state dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from bessgw.errors import ConfigError
from bessgw.federation.boot import BOOT_FILE, boot_stamp, next_boot

NOW = 1_800_000_000.0


def test_without_a_state_dir_the_clock_numbers_boots() -> None:
    assert next_boot(NOW) == boot_stamp(NOW)
    assert boot_stamp(NOW + 1.0) == boot_stamp(NOW) + 10  # tenths of a second
    assert boot_stamp(0.0) == 1  # never 0, which means "unknown" on the wire


def test_the_counter_keeps_boots_growing_when_the_clock_steps_back(tmp_path: Path) -> None:
    first = next_boot(NOW, tmp_path)
    assert first == boot_stamp(NOW)
    assert (tmp_path / BOOT_FILE).read_text().strip() == str(first)
    assert next_boot(NOW, tmp_path) == first + 1  # two starts in the same tenth of a second
    assert next_boot(NOW - 3600, tmp_path) == first + 2  # the clock went back an hour
    assert next_boot(NOW + 60, tmp_path) == boot_stamp(NOW + 60)  # the clock ahead of the counter wins


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"-5\n", b"9" * 100, b"\xff\xfe"])
def test_a_garbled_counter_falls_back_to_the_clock_and_is_rewritten(tmp_path: Path, content: bytes) -> None:
    (tmp_path / BOOT_FILE).write_bytes(content)
    assert next_boot(NOW, tmp_path) == boot_stamp(NOW)
    assert (tmp_path / BOOT_FILE).read_text() == f"{boot_stamp(NOW)}\n"


def test_a_counter_that_is_no_regular_file_or_cannot_be_written_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / BOOT_FILE).mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        next_boot(NOW, tmp_path)
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file where the state directory should be")
    with pytest.raises(ConfigError, match="cannot record the federation boot number"):
        next_boot(NOW, not_a_dir)
