"""Hostile command-line numbers get a usage error (exit 2) naming the option, never a traceback or a
command that misbehaves quietly. Pure: argparse refuses them before any gateway is asked."""

from __future__ import annotations

import pytest

from bessgw import cli

HOSTILE = [
    # (argv, option named in the error)
    (["status", "--watch", "inf"], "--watch"),  # OverflowError from time.sleep
    (["status", "--watch", "nan"], "--watch"),
    (["status", "--watch", "-1"], "--watch"),
    (["setpoint", "--p-kw", "1", "--hold", "--heartbeat-s", "-1"], "--heartbeat-s"),  # ValueError from time.sleep
    (["setpoint", "--p-kw", "1", "--hold", "--heartbeat-s", "0"], "--heartbeat-s"),  # heartbeats in a busy loop
    (["setpoint", "--p-kw", "1", "--hold", "--heartbeat-s", "nan"], "--heartbeat-s"),  # never a heartbeat
    (["setpoint", "--p-kw", "1", "--hold", "--heartbeat-s", "1e308"], "--heartbeat-s"),
    (["journal", "tail", "-n", "99999999999999999999999"], "-n/--lines"),  # OverflowError from SQLite
    (["journal", "tail", "-n", "-1"], "-n/--lines"),  # printed nothing, exit 0
    (["journal", "tail", "-n", "0"], "-n/--lines"),
]


@pytest.mark.parametrize(("argv", "option"), HOSTILE, ids=[" ".join(argv) for argv, _ in HOSTILE])
def test_hostile_numbers_are_usage_errors(argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--config", "/nonexistent/bessgw.toml"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and "Traceback" not in err, err
    assert len(err.splitlines()[-1]) < 200


def test_sane_values_still_parse() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["status", "--watch"]).watch == 2.0
    assert parser.parse_args(["status", "--watch", "0.5"]).watch == 0.5
    assert parser.parse_args(["setpoint", "--p-kw", "-0.0", "--hold", "--heartbeat-s", "2"]).heartbeat_s == 2.0
    assert parser.parse_args(["journal", "tail", "-n", "50"]).lines == 50
