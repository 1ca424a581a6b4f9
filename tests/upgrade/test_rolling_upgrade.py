"""A rolling upgrade of a live campus: three gateways on the previous release, upgraded one at a time to
the working tree while a campus setpoint holds.

The previous release is the newest ``vX.Y.Z`` tag of this repository, installed into a venv of its own
(:mod:`tests.upgrade.release`). Each step stops one gateway with SIGTERM (it ramps its units to 0 kW,
leaves the gossip and gives its lease back) and starts the working tree on the same config and state
directory. Judged from outside the gateways (:mod:`tests.upgrade.rolling`):

- the devices: Σ measured P and Σ commanded P never above the setpoint in force; no device's gateway
  heartbeat silent as long as its watchdog, and its ``heartbeat_lost`` warning never set;
- every gateway that is up, asked continuously with its own release's client: every gateway listed, every
  other running gateway ``alive``, every running gateway's units in its campus view;
- every acknowledged campus command: in etcd and in the accepting gateway's journal after the upgrade
  (read by the new release), and the same command id again is a duplicate campus-wide.

The per-gateway restart gap (last heartbeat change a device saw before the stop -> first after the start)
is printed, with the start time (spawn -> READY=1), for the release notes.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bessgw import __version__
from tests.campus.device_campus import SAMPLING_TOLERANCE_KW, SETTLED_KW
from tests.campus.etcd_cluster import EtcdCluster
from tests.campus.test_campus_gateways import poll
from tests.upgrade.release import Release
from tests.upgrade.rolling import (
    DEVICE_WATCHDOG_S,
    Gateway,
    HeartbeatSampler,
    MembershipSampler,
    RollingCampus,
    stop_campus,
    wait_for,
    wait_whole,
    write_campus,
)

pytestmark = [pytest.mark.upgrade, pytest.mark.campus, pytest.mark.daemon, pytest.mark.federation,
              pytest.mark.timeout(420)]

FIRST_KW = 3000.0  # 6 containers of 2500 kW: two gateways can carry it while the third restarts
SECOND_KW = 3600.0  # committed through an upgraded gateway while the others still run the release
STOP_TIMEOUT_S = 15.0  # shutdown_grace_s (default) + margin


@pytest.fixture
def campus(installed_release: Release, fast_etcd: EtcdCluster, subprocess_env: dict[str, str],
           tmp_path: Path) -> Iterator[RollingCampus]:
    assert installed_release.version != __version__, (
        f"the working tree reports the released version {__version__}: bump bessgw.__version__ after tagging, "
        "or this test cannot tell the two apart")
    env = subprocess_env  # every release loads its installed plugins (vendor_a among them) by entry point
    gateways, simulators, devices, keys = write_campus(tmp_path, fast_etcd, env, installed_release)
    rig: RollingCampus | None = None
    try:
        for gateway in gateways:
            gateway.start(env)
        for gateway in gateways:
            assert gateway.process is not None
            gateway.process.wait_notify("READY", timeout_s=60)
        sampler = HeartbeatSampler(devices, fast_etcd.endpoints, keys)
        rig = RollingCampus(gateways, simulators, sampler, MembershipSampler(gateways), env, keys)
        wait_whole(rig, 60, "three gateways of the release alive everywhere, in etcd, with an allocator",
                   shares=False)
        sampler.start()
        rig.membership.start()
        yield rig
    finally:
        if rig is not None:
            rig.membership.stop()
            rig.sampler.stop()
        stop_campus(gateways, simulators)


def _started_version(gateway: Gateway) -> str:
    assert gateway.process is not None
    return gateway.process.wait_log(lambda e: e.get("event") == "starting", timeout_s=30)["version"]


def _setpoint(campus: RollingCampus, gateway: Gateway, p_kw: float, command_id: str) -> dict:
    result = gateway.cli(campus.env, "campus", "setpoint", "--p-kw", str(p_kw), "--id", command_id, "--json")
    assert result.returncode == 0, f"{gateway.id} ({gateway.version}): {result.stderr}"
    return json.loads(result.stdout)


def _wait_total(campus: RollingCampus, p_kw: float, timeout_s: float, what: str) -> None:
    poll(lambda: abs(campus.latest().total() - p_kw) < SETTLED_KW, timeout_s,
         f"{what} (Σ now {campus.latest().total():.1f} kW)")


def _over(campus: RollingCampus, bound_kw: Callable[[float], float],
          since_s: float) -> list[tuple[float, float, str, str]]:
    bad = []
    for sample in campus.sampler.since(since_s):
        # a sweep spans [at_s, done_s]: the larger bound of the two ends is in force for part of it
        limit = max(bound_kw(sample.at_s), bound_kw(sample.done_s))
        for which, total in (("measured", sample.total()), ("commanded", sample.commanded_total())):
            if total > limit + SAMPLING_TOLERANCE_KW:
                bad.append((round(sample.at_s - since_s, 3), round(total, 2), which,
                            f"sweep {(sample.done_s - sample.at_s) * 1e3:.0f} ms; measured/commanded by device "
                            + ", ".join(f"{d} {sample.measured[d]:g}/{sample.commanded[d]:g}"
                                        for d in sorted(sample.measured))))
    return bad


def _upgrade(campus: RollingCampus, gateway: Gateway) -> dict[str, float]:
    """SIGTERM the gateway, start the working tree on its config and state dir; the step's figures."""
    assert gateway.process is not None
    with campus.membership.restarting(gateway.id):
        stop_sent = time.monotonic()
        gateway.process.signal(signal.SIGTERM)
        code = gateway.process.proc.wait(STOP_TIMEOUT_S)
        exited = time.monotonic()
        assert code == 0, f"{gateway.id} ({gateway.version}) exited {code} on SIGTERM"
        gateway.process.stop()
        gateway.release = None
        spawned = time.monotonic()
        process = gateway.start(campus.env)
        process.wait_notify("READY", timeout_s=60)
        ready = time.monotonic()
        assert _started_version(gateway) == __version__

        def back() -> str | None:  # its devices see its heartbeat again, every gateway sees it alive and its units
            silent = [d for d in gateway.devices if not campus.sampler.silence_around(d, exited)[1] > exited]
            statuses = {other.id: {m["gateway_id"]: m["status"] for m in other.ask("members")["members"]}.get(
                gateway.id) for other in campus.gateways if other is not gateway}
            units = {(gateway.id, d) for d in gateway.devices}
            missing = {other.id: sorted(units - {(u["gateway_id"], u["summary"]["unit_id"])
                                                 for u in other.ask("view")["view"]["units"]})
                       for other in campus.gateways}
            if silent or set(statuses.values()) != {"alive"} or any(missing.values()):
                return (f"devices without a heartbeat since the stop: {silent}; {gateway.id} as peers see it: "
                        f"{statuses}; its units missing from views: {missing}")
            return None
        wait_for(back, 30, f"{gateway.id}'s devices commanded again, every gateway seeing it alive with its units")
    silences = [campus.sampler.silence_around(device, exited) for device in gateway.devices]
    last_before, first_after = min(b for b, _ in silences), max(a for _, a in silences)
    return {"stop_s": exited - stop_sent, "start_s": ready - spawned,
            "gap_s": max(a - b for b, a in silences),  # per device, the longest
            "tail_s": exited - last_before,  # last write seen -> process gone (sampling: ±50 ms)
            "first_s": first_after - ready}  # READY=1 -> last of its devices commanded again


def test_a_campus_upgraded_one_gateway_at_a_time_keeps_its_setpoint(
        campus: RollingCampus, installed_release: Release) -> None:
    gw1, gw2, gw3 = campus.gateways
    sampler, membership = campus.sampler, campus.membership
    assert {_started_version(gw) for gw in campus.gateways} == {installed_release.version}
    begin = time.monotonic()
    acknowledged: dict[str, tuple[Gateway, float, dict]] = {}
    commits: list[tuple[float, float]] = [(begin, 0.0)]  # (monotonic, setpoint kW) in force from then on

    sent = time.monotonic()
    acknowledged["before-upgrade"] = (gw2, FIRST_KW, _setpoint(campus, gw2, FIRST_KW, "before-upgrade"))
    commits.append((sent, FIRST_KW))
    _wait_total(campus, FIRST_KW, 30, "Σ measured ≈ the campus setpoint on the release")
    wait_whole(campus, 30, "every gateway applying its share on the release")

    figures: dict[str, dict[str, float]] = {}
    for step, gateway in enumerate((gw1, gw2, gw3)):
        figures[gateway.id] = _upgrade(campus, gateway)
        if step == 0:  # a mixed campus: the upgraded gateway accepts a command the release's allocator splits
            allocator = gw1.ask("campus_status")["campus"]["allocator"]
            print(f"\nmixed campus: setpoint {SECOND_KW:g} kW accepted by gw1 ({__version__}), allocator {allocator}"
                  f" ({campus.gateway(allocator).version})")
            sent = time.monotonic()
            acknowledged["mixed-campus"] = (gw1, SECOND_KW, _setpoint(campus, gw1, SECOND_KW, "mixed-campus"))
            commits.append((sent, SECOND_KW))
        wait_whole(campus, 60, f"the campus whole again after upgrading {gateway.id}")
        _wait_total(campus, commits[-1][1], 30, f"Σ measured ≈ the setpoint after upgrading {gateway.id}")
    end = time.monotonic()
    membership.stop()
    sampler.stop()

    for gateway_id, _begin, _end in membership.windows:  # how much the campus delivered while one was out
        during = [s.total() for s in sampler.samples if _begin <= s.at_s <= _end]
        figures[gateway_id]["min_kw"] = min(during, default=float("nan"))
    report = "\n".join(f"  {gw}: device gap {f['gap_s']:.2f} s = last write -> exit {f['tail_s']:.2f} s + "
                        f"spawn -> READY {f['start_s']:.2f} s + READY -> first write {f['first_s']:.2f} s "
                        f"(SIGTERM -> exit {f['stop_s']:.2f} s); campus Σ ≥ {f['min_kw']:.0f} kW meanwhile"
                        for gw, f in figures.items())
    print(f"\nrolling upgrade {installed_release.tag} ({installed_release.version}) -> {__version__} in "
          f"{end - begin:.1f} s ({len(sampler.samples)} device sweeps, {len(membership.samples)} membership "
          f"samples):\n{report}")

    for gateway in campus.gateways:  # for the release notes and the wire contracts: what each side complained of
        print(f"  {gateway.id} warnings/errors logged: {gateway.log_problems() or 'none'}")

    # --- the devices: never more than the setpoint in force, never uncommanded as long as their watchdog
    # before the first command nothing is committed, and a sample straddling a commit gets the larger bound
    def bound(at_s: float) -> float:
        return max(p for t, p in commits if t <= at_s)
    bad = _over(campus, bound, begin)
    assert not bad, f"{len(bad)} device sweeps above the setpoint in force: {bad[:5]}"
    # etcd, read by the test: the shares committed never add up to more than the setpoint in force
    # (a read sent at t is answered within its 0.3 s timeout: the later, larger bound applies)
    shares = [(round(r.sent_s - begin, 3), round(sum(p for p, _ in r.shares.values()), 2)) for r in sampler.etcd
              if r.sent_s >= begin and sum(p for p, _ in r.shares.values()) > bound(r.sent_s + 0.3) + 1e-6]
    assert not shares, f"{len(shares)} etcd reads with Σ shares above the setpoint: {shares[:5]}"
    assert sum(1 for r in sampler.etcd if r.sent_s >= begin and r.shares) > 20, "etcd was hardly ever read"
    assert not sampler.read_errors, sampler.read_errors[:5]
    assert sampler.max_gap_s(begin) < 1.0, "the device sampler stalled: the device-side checks saw nothing"
    tripped = [(round(t - begin, 3), device) for t, device in sampler.heartbeat_lost]
    assert not tripped, f"a device's own watchdog tripped (s since the start, device): {tripped[:5]}"
    silences = {d: sampler.longest_silence_s(d, begin) for d in sampler.devices}
    assert all(s < DEVICE_WATCHDOG_S for s in silences.values()), f"heartbeat silence per device: {silences}"
    assert all(f["gap_s"] < DEVICE_WATCHDOG_S and not math.isnan(f["gap_s"]) for f in figures.values()), figures

    # --- membership and the campus view, on every gateway that was up, at every sample
    ids = {gw.id for gw in campus.gateways}
    assert not membership.errors, membership.errors[:5]
    for gateway in campus.gateways:
        seen = [s for s in membership.samples if s.observer == gateway.id]
        assert len(seen) > 20, f"{gateway.id}: only {len(seen)} membership samples"
    split, incomplete = [], []
    for sample in membership.samples:
        up = {g for g in ids if not membership.was_down(g, sample.at_s)}
        if set(sample.statuses) != ids or any(sample.statuses[g] != "alive" for g in up):
            split.append((round(sample.at_s - begin, 3), sample.observer, sample.statuses))
        missing = {(gw.id, d) for gw in campus.gateways if gw.id in up for d in gw.devices} - sample.units
        if missing:
            incomplete.append((round(sample.at_s - begin, 3), sample.observer, sorted(missing)))
    assert not split, f"{len(split)} samples where a member list lost a gateway or a running one: {split[:5]}"
    assert not incomplete, f"{len(incomplete)} campus views missing a running gateway's units: {incomplete[:5]}"

    # --- no acknowledged command lost: in etcd, in the accepting gateway's journal, still idempotent
    status = json.loads(gw3.cli(campus.env, "campus", "status", "--json").stdout)
    assert status["setpoint"]["p_kw"] == SECOND_KW
    assert status["setpoint_revision"] == acknowledged["mixed-campus"][2]["revision"]
    for command_id, (accepted_by, p_kw, committed) in acknowledged.items():
        assert committed["command_id"] == command_id and not committed["duplicate"]
        journal = accepted_by.cli(campus.env, "journal", "tail", "--json", "-n", "1000")
        assert journal.returncode == 0, journal.stderr
        entries = [json.loads(line) for line in journal.stdout.splitlines()]
        assert any(e["command_id"] == f"campus:{command_id}" and e["requested_p_kw"] == p_kw for e in entries), (
            f"{command_id} missing from {accepted_by.id}'s journal after the upgrade")
    again = _setpoint(campus, gw3, FIRST_KW, "before-upgrade")  # accepted by gw2 on the release
    assert again["duplicate"] is True
