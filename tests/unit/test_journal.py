"""The command journal and idempotent commands: durable before acknowledged, ids remembered, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bessgw.control.arbitration import Arbiter, Mode, SourcePolicy
from bessgw.control.commands import Command, CommandProcessor, GatewayRange
from bessgw.control.errors import CommandRejectedError, JournalError
from bessgw.control.journal import Journal, read_tail, tail_text

POLICIES = [SourcePolicy("local", 300, 30.0), SourcePolicy("scada", 200, 10.0)]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


_OPEN: list[Journal] = []


@pytest.fixture(autouse=True)
def _close_journals():
    yield
    while _OPEN:
        _OPEN.pop().close()


def processor(state_dir: Path, clock: FakeClock, **kwargs) -> CommandProcessor:
    journal = Journal.in_state_dir(state_dir)
    _OPEN.append(journal)
    return CommandProcessor(journal, Arbiter(POLICIES, hold_s=5.0, now=clock()), clock=clock, **kwargs)


def test_journal_is_wal_with_full_sync(tmp_path: Path) -> None:
    with Journal.in_state_dir(tmp_path) as journal:
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert (tmp_path / "commands.sqlite3").exists()


def test_a_command_is_journaled_then_applied_and_acknowledged(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock, gateway_range=lambda: GatewayRange(1000.0, 800.0, 100.0))
    result = proc.submit(Command("c-1", "scada", p_kw=900.0, q_kvar=-150.0, principal="alice",
                                 expires_at=clock.now + 60))
    assert (result.requested_p_kw, result.applied_p_kw) == (900.0, 800.0)
    assert (result.requested_q_kvar, result.applied_q_kvar) == (-150.0, -100.0)
    assert result.note == "clamped to the gateway's range"
    entry = proc.journal.get("c-1")
    assert entry is not None and (entry.source, entry.principal, entry.received_at) == ("scada", "alice", clock.now)
    state = proc.arbiter.decide(clock.now, ramp_kw_per_s=10.0)
    assert (state.source, state.target_p_kw, state.command_id) == ("scada", 800.0, "c-1")


def test_repeating_an_id_has_no_further_effect_and_returns_the_first_result(tmp_path: Path) -> None:
    clock = FakeClock()
    changes: list[int] = []
    proc = processor(tmp_path, clock, on_change=lambda: changes.append(1))
    first = proc.submit(Command("a", "scada", p_kw=100.0))
    clock.now += 1
    proc.submit(Command("b", "scada", p_kw=200.0))
    clock.now += 1
    again = proc.submit(Command("a", "scada", p_kw=100.0))  # a retry: the first result, no second effect
    assert again == first
    assert proc.repeats == 1
    with pytest.raises(CommandRejectedError, match="other arguments") as conflict:
        proc.submit(Command("a", "local", p_kw=300.0))  # the same id meaning something else is refused
    assert conflict.value.code == "conflict"
    assert len(changes) == 2  # the control loop is poked for new commands only
    assert proc.journal.count() == 2
    state = proc.arbiter.decide(clock.now, ramp_kw_per_s=10.0)
    assert (state.source, state.target_p_kw) == ("scada", 200.0)


def test_refused_commands_are_not_journaled(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    with pytest.raises(CommandRejectedError, match="unknown source 'opcua'"):
        proc.submit(Command("x", "opcua", p_kw=1.0))
    with pytest.raises(CommandRejectedError, match="finite"):
        proc.submit(Command("x", "local", p_kw=float("nan")))
    with pytest.raises(CommandRejectedError, match="already expired"):
        proc.submit(Command("x", "local", p_kw=1.0, expires_at=clock.now - 1))
    with pytest.raises(CommandRejectedError, match="command id"):
        proc.submit(Command("", "local", p_kw=1.0))
    assert proc.journal.count() == 0
    assert proc.submit(Command("x", "local", p_kw=5.0)).applied_p_kw == 5.0  # a corrected retry is accepted


def test_restart_remembers_ids_and_does_not_reapply_expired_setpoints(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    proc.submit(Command("old-local", "local", p_kw=-50.0, expires_at=clock.now + 10))
    first = proc.submit(Command("scada-1", "scada", p_kw=250.0, q_kvar=20.0, expires_at=clock.now + 3600))
    proc.journal.record_heartbeats({"scada": clock.now + 19})  # scada stays live up to the restart
    proc.journal.close()

    clock.now += 20  # restart after the local setpoint expired, before the scada one does
    restarted = processor(tmp_path, clock)
    restored = restarted.restore(restarted.journal.heartbeats())
    assert [r.command_id for r in restored] == ["scada-1"]
    state = restarted.arbiter.decide(clock.now, ramp_kw_per_s=10.0)
    assert (state.mode, state.source, state.target_p_kw, state.target_q_kvar) == (Mode.ACTIVE, "scada", 250.0, 20.0)
    # ids survive the restart: a repeat is answered from the journal and changes nothing
    assert restarted.submit(Command("scada-1", "scada", p_kw=250.0, q_kvar=20.0)) == first
    assert restarted.submit(Command("old-local", "local", p_kw=-50.0)).applied_p_kw == -50.0
    assert restarted.arbiter.decide(clock.now, ramp_kw_per_s=10.0).target_p_kw == 250.0


TIMEOUTS = {policy.name: policy.heartbeat_timeout_s for policy in POLICIES}


def test_a_setpoint_whose_source_went_silent_is_not_restored(tmp_path: Path) -> None:
    """Finding 12.1: a setpoint the fail-safe dropped (source silent) must not come back after kill -9."""
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    proc.submit(Command("s-700", "scada", p_kw=700.0))
    proc.journal.record_heartbeats({"scada": clock.now + 2})  # heard from until t+2, then silent
    proc.journal.close()
    clock.now += 2 + TIMEOUTS["scada"] + 0.5  # restarted after the source's timeout ran out
    restarted = processor(tmp_path, clock)
    assert restarted.restore(restarted.journal.heartbeats(), TIMEOUTS) == []
    assert restarted.arbiter.decide(clock.now, ramp_kw_per_s=10.0).target_p_kw == 0.0


def test_a_live_source_keeps_its_setpoint_across_a_restart_until_its_own_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    proc.submit(Command("s-700", "scada", p_kw=700.0))
    proc.journal.record_heartbeats({"scada": clock.now + 5})
    proc.journal.close()
    clock.now += 8  # restart 3 s after the last heartbeat (timeout 10 s)
    restarted = processor(tmp_path, clock)
    assert [r.command_id for r in restarted.restore(restarted.journal.heartbeats(), TIMEOUTS)] == ["s-700"]
    assert restarted.arbiter.decide(clock.now, ramp_kw_per_s=10.0).target_p_kw == 700.0
    clock.now += 7.5  # the timeout counts from the last heartbeat before the restart, not from the restart
    state = restarted.arbiter.decide(clock.now, ramp_kw_per_s=10.0)
    assert state.mode is Mode.HOLD and state.source is None


def test_a_dropped_setpoint_is_journaled_and_never_restored(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    proc.submit(Command("s-900", "scada", p_kw=900.0))
    clock.now += TIMEOUTS["scada"] + 1
    proc.arbiter.decide(clock.now, ramp_kw_per_s=10.0)
    dropped = proc.arbiter.take_dropped()
    assert [(source, command_id) for source, command_id, _why in dropped] == [("scada", "s-900")]
    proc.journal.record_drop(source="scada", unit_id="", command_id="s-900", reason=dropped[0][2], at=clock.now)
    proc.journal.record_heartbeats({"scada": clock.now})  # even if the source is heard from again
    proc.journal.close()
    restarted = processor(tmp_path, clock)
    assert restarted.restore(restarted.journal.heartbeats(), TIMEOUTS) == []
    with pytest.raises(CommandRejectedError, match="other arguments"):  # the old id cannot revive it either
        restarted.submit(Command("s-900#dropped", "scada", p_kw=900.0))


@pytest.mark.parametrize("command_id", ["x" * 129, "x" * 1_000_000, "a\nb", "nul\x00", "tab\tid", ""])
def test_ids_are_bounded_and_printable_and_refusals_keep_nothing(tmp_path: Path, command_id: str) -> None:
    """Finding 12.3: a 1 MB id or one with NUL/newline is refused at the door and not kept anywhere."""
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    with pytest.raises(CommandRejectedError) as refused:
        proc.submit(Command(command_id, "local", p_kw=1.0))
    assert refused.value.code == "invalid"
    assert proc.journal.count() == 0 and not proc._results


def test_non_string_ids_and_principals_are_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    for command in (Command(42, "local", p_kw=1.0), Command("ok", "local", p_kw=1.0, principal="a" * 200),  # type: ignore[arg-type]
                    Command("ok", "local", p_kw=True)):  # type: ignore[arg-type]
        with pytest.raises(CommandRejectedError):
            proc.submit(command)
    assert proc.journal.count() == 0


def test_strict_commands_are_refused_outside_the_range_never_clamped(tmp_path: Path) -> None:
    """Finding 12.4: Q = 1e308 on a strict (OPC UA) command is refused, like P, not clamped and answered Good."""
    clock = FakeClock()
    proc = processor(tmp_path, clock, gateway_range=lambda: GatewayRange(1000.0, 1000.0, 500.0))
    for p_kw, q_kvar in ((2000.0, 0.0), (0.0, 1e308), (0.0, -1e308)):
        with pytest.raises(CommandRejectedError) as refused:
            proc.submit(Command(f"s-{p_kw}-{q_kvar}", "scada", p_kw=p_kw, q_kvar=q_kvar, clamp=False))
        assert refused.value.code == "out_of_range"
    assert proc.journal.count() == 0
    assert proc.submit(Command("ok", "scada", p_kw=900.0, q_kvar=400.0, clamp=False)).applied_q_kvar == 400.0


def test_a_schema_1_journal_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "commands.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE commands (seq INTEGER PRIMARY KEY AUTOINCREMENT, command_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL, source TEXT NOT NULL, principal TEXT NOT NULL, received_at REAL NOT NULL,
            requested_p_kw REAL, requested_q_kvar REAL, applied_p_kw REAL, applied_q_kvar REAL, expires_at REAL,
            note TEXT NOT NULL DEFAULT '');
        INSERT INTO commands (command_id, kind, source, principal, received_at, requested_p_kw, requested_q_kvar,
            applied_p_kw, applied_q_kvar) VALUES ('old-1', 'setpoint', 'local', 'root', 1700000000, 5, 0, 5, 0);
        PRAGMA user_version=1;""")
    db.commit()
    db.close()
    assert [e.command_id for e in read_tail(path)] == ["old-1"]  # the CLI reads an old journal as it is
    journal = Journal(path)
    _OPEN.append(journal)
    assert journal.get("old-1").unit_id == ""
    journal.record(command_id="new-1", kind="setpoint", source="scada", principal="p", received_at=1.0,
                   unit_id="u1", traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert journal.get("new-1").unit_id == "u1"


def test_a_journal_from_a_newer_release_is_refused_clearly(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "commands.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="newer than this release"):
        Journal(path)


def test_the_journal_is_not_readable_by_other_users(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "commands.sqlite3")
    _OPEN.append(journal)
    assert (tmp_path / "commands.sqlite3").stat().st_mode & 0o007 == 0


def test_release_withdraws_a_source(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    proc.submit(Command("s", "scada", p_kw=100.0))
    proc.submit(Command("l", "local", p_kw=-10.0))
    assert proc.arbiter.decide(clock.now, ramp_kw_per_s=1.0).source == "local"
    proc.submit(Command("l-off", "local", kind="release"))
    assert proc.arbiter.decide(clock.now, ramp_kw_per_s=1.0).source == "scada"
    assert proc.journal.get("l-off").kind == "release"


def test_async_submit_journals_in_a_worker_thread(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)

    async def scenario():
        return await asyncio.gather(*(proc.submit_async(Command(f"id-{i % 5}", "scada", p_kw=float(i % 5)))
                                      for i in range(20)))

    results = asyncio.run(scenario())
    assert proc.journal.count() == 5
    by_id = {}
    for result in results:
        by_id.setdefault(result.command_id, result)
        assert result == by_id[result.command_id]  # every repeat got the first result


def test_tail_prints_lines_and_json(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    for i in range(5):
        clock.now += 1
        proc.submit(Command(f"c{i}", "scada", p_kw=10.0 * i, principal="ops"))
    text = tail_text(tmp_path, n=2)
    lines = text.splitlines()
    assert len(lines) == 2 and "c3" in lines[0] and "c4" in lines[1]
    assert "scada/ops" in lines[1] and "P 40 -> 40 kW" in lines[1]
    rows = [json.loads(line) for line in tail_text(tmp_path, n=3, as_json=True).splitlines()]
    assert [row["command_id"] for row in rows] == ["c2", "c3", "c4"]
    assert rows[-1]["requested_p_kw"] == 40.0 and rows[-1]["principal"] == "ops"


def test_tail_of_a_missing_journal_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no command journal here"):
        read_tail(tmp_path / "commands.sqlite3")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_state_dir_is_a_journal_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError, match="cannot open the command journal"):
        Journal.in_state_dir(blocker / "state")


def test_prune_keeps_each_sources_latest(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = processor(tmp_path, clock)
    proc.submit(Command("s-old", "scada", p_kw=1.0))
    proc.submit(Command("l-old", "local", p_kw=1.0))
    clock.now += 100
    proc.submit(Command("s-new", "scada", p_kw=2.0))
    assert proc.journal.prune(before=clock.now - 50) == 1
    assert proc.journal.get("s-old") is None and proc.journal.get("l-old") is not None


WRITER = textwrap.dedent("""
    import sys, time
    from bessgw.control.arbitration import Arbiter, SourcePolicy
    from bessgw.control.commands import Command, CommandProcessor
    from bessgw.control.journal import Journal

    journal = Journal.in_state_dir(sys.argv[1])
    proc = CommandProcessor(journal, Arbiter([SourcePolicy("scada", 1, 10.0)], hold_s=1.0), clock=time.time)
    for i in range(1_000_000):
        result = proc.submit(Command(f"cmd-{i}", "scada", p_kw=float(i), principal="kill-test"))
        print(f"ack {result.command_id} {result.seq}", flush=True)
""")


def test_every_acknowledged_command_survives_kill_9(tmp_path: Path) -> None:
    """A real writer process is SIGKILLed mid-stream; every ack the parent saw is in the journal."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    acked: list[str] = []
    deadline = time.monotonic() + 60.0
    try:
        assert child.stdout is not None
        while len(acked) < 200 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(line.split()[1])
        os.kill(child.pid, signal.SIGKILL)
        # acks already written to the pipe before the kill count too
        rest, err = child.communicate(timeout=30)
        acked += [line.split()[1] for line in rest.splitlines() if line.startswith("ack ") and len(line.split()) == 3]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 200, f"writer produced only {len(acked)} acks: {err[-2000:]}"
    with Journal.in_state_dir(tmp_path) as journal:
        missing = [command_id for command_id in acked if journal.get(command_id) is None]
        assert missing == []
        assert journal.count() >= len(acked)
