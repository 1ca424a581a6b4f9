"""CAN ingest benchmark: frames on the bus -> vendor_c unit telemetry updated, vs bare cantools decode.

A real 1 Mbit/s CAN bus carries at most ~8,000 8-byte frames/s; the gateway must keep up with a saturated
bus on one core. This script, with no arguments:

1. decodes the same BMS_Status payloads with cantools alone (``Message.decode``): the raw library's rate;
2. offers 8,000 frames/s for 5 s on a python-can virtual bus to a real ``CanTransport`` with eight
   vendor_c drivers (the path of production: reader thread, batch hand-over once per gather window,
   dispatch by id, latest-wins coalescing of cyclic telemetry, DBC decode with length/range checks,
   driver state update) and measures frames ingested (received and routed by the bus), frames delivered
   to drivers (the rest were superseded by a newer frame of the same id in the same batch), dropped,
   the latency from a delivered frame's bus timestamp to its decoded values being what ``read()``
   returns (p50/p99), and the CPU the gateway's threads (event loop + CAN reader + writer) spent:
   frames per CPU-second is what one core could ingest;
3. the same paced load made of BMS_Alarms frames only: alarm frames are never coalesced, so every frame
   is decoded (the worst case, and the proof that none is lost: delivered must equal sent);
4. sends a burst as fast as the sender thread can and measures end-to-end throughput.

The sender shares the process (and the GIL) with the gateway because python-can's virtual bus is
in-process only; gateway CPU is measured per thread from /proc, so the sender's cost is not counted
in the capacity figure, but it does slow the burst figure. Ends with one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import can
import numpy as np
import structlog
from bessgw_vendor_c import protocol as p

from bessgw.config import parse_config, unit_options
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import build_plugin_manager
from bessgw.southbound.can.transport import CanTransport

NODES = 8
OFFERED_FPS = 8000
PACED_S = 5.0
BURST_FRAMES = 40_000
BARE_ROUNDS = 5


def _payloads(count: int, message: str = p.STATUS) -> list[tuple[int, bytes]]:
    """Realistic frames: eight nodes, values moving as a running BMS's do (status, or alarm bits)."""
    rng = np.random.default_rng(1)
    frames = []
    for i in range(count):
        node = 1 + i % NODES
        if message == p.STATUS:
            frame = p.encode(p.STATUS, node, SOC=float(rng.uniform(5, 95)), SOH=98.0,
                             PackVoltage=float(rng.uniform(1200, 1400)),
                             PackCurrent=float(rng.uniform(-800, 800)),
                             BmsState=2, ContactorsClosed=1, WatchdogTripped=0)
        else:
            frame = p.encode(p.ALARMS, node, Warnings=i & 0xFFFF, CellImbalance=i & 1)
        frames.append((frame.arbitration_id, frame.data))
    return frames


def bare_cantools(frames: list[tuple[int, bytes]]) -> float:
    """Frames per CPU-second of cantools decoding the same payloads, no bus, no checks (best of a few rounds).

    Timed with this thread's CPU clock, as the gateway's capacity is, so that other load on the machine
    (which stretches wall-clock time, not CPU time) does not move the ratio.
    """
    message = p.database().get_message_by_name(p.STATUS)
    best = 0.0
    for _ in range(BARE_ROUNDS):
        start = time.thread_time()
        for _, data in frames:
            message.decode(data, decode_choices=False)
        best = max(best, len(frames) / max(time.thread_time() - start, 1e-9))
    return best


def _thread_cpu_s(native_ids: list[int]) -> float:
    """CPU time of the given threads of this process, in seconds (Linux /proc schedstat, ns resolution)."""
    total = 0
    for tid in native_ids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except OSError:
            continue
    return total / 1e9


def _gateway_threads(channel: str) -> list[int]:
    ids = [threading.get_native_id()]
    for thread in threading.enumerate():
        if thread.name in (f"can-rx-{channel}",) or thread.name.startswith(f"can-tx-{channel}"):
            ids.append(thread.native_id)
    return ids


def _sender(channel: str, frames: list[tuple[int, bytes]], rate: float | None, go: threading.Event) -> None:
    bus = can.Bus(interface="virtual", channel=channel)
    messages = [can.Message(arbitration_id=i, data=d, is_extended_id=True) for i, d in frames]
    go.wait(10)
    start = time.perf_counter()
    sent = 0
    try:
        while sent < len(messages):
            due = len(messages) if rate is None else min(len(messages), int((time.perf_counter() - start) * rate))
            while sent < due:
                bus.send(messages[sent])
                sent += 1
            if rate is not None:
                time.sleep(0.001)  # pacing the offered load, not synchronisation
    finally:
        bus.shutdown()


async def _run(frames: list[tuple[int, bytes]], rate: float | None, window_s: float | None = None) -> dict[str, float]:
    channel = f"bench-{uuid.uuid4().hex[:8]}"
    config = parse_config({
        "gateway": {"id": "bench"},
        "southbound": {"can": {} if window_s is None else {"batch_window_s": window_s}},
        "units": [{"id": f"c{n}", "driver": "vendor_c",
                   "can": {"interface": "virtual", "channel": channel, "node_id": n}} for n in range(1, NODES + 1)],
    })
    registry = build_plugin_manager().collect()
    spec = registry.drivers["vendor_c"]
    log = structlog.get_logger("bench")
    transport = CanTransport(config, log)
    latencies = np.zeros(len(frames))
    done = asyncio.Event()
    state = {"n": 0, "last": 0.0, "mismatch": 0}
    drivers = []
    stats_box: list = []
    for unit in config.units:
        link = transport.link_for(unit)
        driver = spec.factory(DriverContext(unit.id, link, unit_options(unit, spec.unit_options)))
        link.unsubscribe()  # re-subscribe, as the driver does, through a probe that stamps the update

        def probe(frame, driver=driver):
            driver._on_frame(frame)
            now = time.time()
            i = state["n"]
            latencies[i] = now - frame.timestamp
            name = driver._handlers[frame.arbitration_id]
            if driver.values.get(name) is None or driver.stamps[name] != frame.timestamp:
                state["mismatch"] += 1
            state["n"] = i + 1
            state["last"] = time.perf_counter()
            if stats_box[0].frames_rx >= len(frames):
                done.set()

        link.subscribe([p.frame_id(name, link.node_id) for name in p.TELEMETRY_MESSAGES], probe, latest_only=True)
        link.subscribe([p.frame_id(name, link.node_id) for name in p.EVENT_MESSAGES], probe)
        drivers.append(driver)
    task = asyncio.create_task(transport.run())
    await asyncio.wait_for(transport.bus("virtual", channel).opened.wait(), 5)
    stats = transport.bus_stats()[f"virtual:{channel}"]
    stats_box.append(stats)
    go = threading.Event()
    sender = threading.Thread(target=_sender, args=(channel, frames, rate, go), daemon=True)
    sender.start()
    await asyncio.sleep(0.1)  # let the sender open its bus (setup, not synchronisation of results)
    threads = _gateway_threads(channel)
    cpu0, wall0 = _thread_cpu_s(threads), time.perf_counter()
    go.set()
    try:
        await asyncio.wait_for(done.wait(), (len(frames) / (rate or 2000.0)) + 30)
    except asyncio.TimeoutError:
        pass
    wall = state["last"] - wall0
    threads = _gateway_threads(channel)
    cpu = _thread_cpu_s(threads) - cpu0
    # the unit's state reflects the last frame of its node
    driver = drivers[(len(frames) - 1) % NODES]
    arbitration_id, last_data = frames[-1]
    name = driver._handlers[arbitration_id]
    assert driver.values[name] == p.decode(name, last_data), "the driver does not hold the last frame"
    if name == p.STATUS:
        t = await driver.read()
        assert abs(t.soc_pct - p.decode(p.STATUS, last_data)["SOC"]) < 1e-9, "telemetry is not the last frame"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await transport.close()
    sender.join(5)
    n = state["n"]
    ingested = stats.frames_rx - stats.frames_unrouted
    return {
        "ingested": ingested,
        "delivered": n,
        "coalesced": stats.frames_coalesced,
        "dropped": len(frames) - ingested,
        "wall_s": wall,
        "fps": ingested / wall if wall > 0 else 0.0,
        "gateway_cpu_s": cpu,
        "latency_p50_ms": float(np.percentile(latencies[:n], 50) * 1000) if n else float("nan"),
        "latency_p99_ms": float(np.percentile(latencies[:n], 99) * 1000) if n else float("nan"),
        "batches": stats.batches,
        "mismatch": state["mismatch"],
    }


def main() -> None:
    frames = _payloads(int(OFFERED_FPS * PACED_S))
    bare = bare_cantools(frames)
    paced = asyncio.run(_run(frames, OFFERED_FPS))
    alarms = asyncio.run(_run(_payloads(int(OFFERED_FPS * PACED_S), p.ALARMS), OFFERED_FPS))
    burst = asyncio.run(_run(frames[:BURST_FRAMES], None))
    unbatched = asyncio.run(_run(frames, OFFERED_FPS, window_s=0.0))  # hand-over as soon as frames arrive

    def capacity_of(run: dict[str, float]) -> float:
        return run["ingested"] / run["gateway_cpu_s"] if run["gateway_cpu_s"] > 0 else float("inf")

    capacity, capacity_alarms, capacity_unbatched = capacity_of(paced), capacity_of(alarms), capacity_of(unbatched)
    cpu_pct = 100.0 * paced["gateway_cpu_s"] / paced["wall_s"] if paced["wall_s"] > 0 else float("nan")
    print(f"cantools bare decode             : {bare:10,.0f} frames per CPU-second (no bus)")
    print(f"offered (paced) on virtual bus   : {OFFERED_FPS:10,d} frames/s for {PACED_S:g} s (BMS_Status)")
    print(f"  ingested end to end            : {paced['fps']:10,.0f} frames/s, {paced['ingested']} frames,"
          f" dropped {paced['dropped']}, {paced['batches']} batches")
    print(f"  delivered to drivers           : {paced['delivered']:10d} frames, {paced['coalesced']} superseded"
          f" in their batch (latest-wins telemetry)")
    print(f"  gateway CPU (loop+reader+tx)   : {cpu_pct:10.1f} % of one core")
    print(f"  latency bus -> telemetry       : p50 {paced['latency_p50_ms']:.3f} ms,"
          f" p99 {paced['latency_p99_ms']:.3f} ms")
    print(f"  capacity per core              : {capacity:10,.0f} frames per gateway CPU-second")
    print(f"  ratio capacity / bare cantools : {capacity / bare:10.3f}")
    print(f"alarm frames only (never coalesced): {alarms['ingested']} ingested, {alarms['delivered']} delivered,"
          f" dropped {alarms['dropped']}, capacity {capacity_alarms:,.0f} frames per CPU-second"
          f" (ratio {capacity_alarms / bare:.3f}), p99 {alarms['latency_p99_ms']:.3f} ms")
    print(f"batch_window_s = 0 (no gather)   : {capacity_unbatched:10,.0f} frames per CPU-second"
          f" (ratio {capacity_unbatched / bare:.3f}), {unbatched['batches']} batches,"
          f" p99 {unbatched['latency_p99_ms']:.3f} ms")
    print(f"burst (sender as fast as it can) : {burst['fps']:10,.0f} frames/s end to end,"
          f" dropped {burst['dropped']}, p99 {burst['latency_p99_ms']:.1f} ms")
    keeps_up = paced["dropped"] == 0 and capacity >= OFFERED_FPS
    print(f"keeps up with a saturated 1 Mbit/s bus on one core: {'yes' if keeps_up else 'NO'}")
    no_alarm_lost = alarms["dropped"] == 0 and alarms["delivered"] == alarms["ingested"] and not alarms["coalesced"]
    print(f"every alarm frame delivered: {'yes' if no_alarm_lost else 'NO'}")
    print(json.dumps({
        "bench": "can_decode",
        "offered_fps": OFFERED_FPS,
        "paced_ingested_fps": round(paced["fps"]),
        "paced_dropped": paced["dropped"],
        "paced_delivered": paced["delivered"],
        "paced_coalesced": paced["coalesced"],
        "paced_batches": paced["batches"],
        "latency_p50_ms": round(paced["latency_p50_ms"], 3),
        "latency_p99_ms": round(paced["latency_p99_ms"], 3),
        "gateway_cpu_pct_one_core": round(cpu_pct, 1),
        "capacity_fps_per_core": round(capacity),
        "cantools_bare_fps": round(bare),
        "ratio_capacity_vs_bare": round(capacity / bare, 3),
        "alarms_capacity_fps_per_core": round(capacity_alarms),
        "alarms_ratio_vs_bare": round(capacity_alarms / bare, 3),
        "alarms_dropped": alarms["dropped"],
        "alarms_delivered": alarms["delivered"],
        "alarms_latency_p99_ms": round(alarms["latency_p99_ms"], 3),
        "every_alarm_delivered": no_alarm_lost,
        "no_window_capacity_fps_per_core": round(capacity_unbatched),
        "no_window_ratio_vs_bare": round(capacity_unbatched / bare, 3),
        "no_window_latency_p99_ms": round(unbatched["latency_p99_ms"], 3),
        "burst_fps": round(burst["fps"]),
        "burst_dropped": burst["dropped"],
        "keeps_up": keeps_up,
    }))


if __name__ == "__main__":
    main()
