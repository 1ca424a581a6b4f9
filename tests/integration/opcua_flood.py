"""A client that never authenticates: raw TCP connections to an OPC UA endpoint, re-opened when closed.

Run as its own process by test_opcua_connections.py (an attacker is not in the operator's event loop):

    python -m tests.integration.opcua_flood <endpoint url> <silent> <hello_only> <duration_s>

``silent`` connections never send a byte; ``hello_only`` ones send an OPC UA HEL and then nothing. Each
is re-opened as soon as the server closes it. Prints ``ready`` once every connection was opened once,
then a JSON line of counts when ``duration_s`` is over (or on SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import sys
from urllib.parse import urlparse

PACING_S = 0.01  # between a close and the re-open: a refused connection must not spin the CPU


def hello(endpoint_url: str) -> bytes:
    """An OPC UA HEL message (Part 6, 7.1.2.3) for ``endpoint_url``."""
    url = endpoint_url.encode()
    body = struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + struct.pack("<i", len(url)) + url
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body


async def flood(url: str, silent: int, hello_only: int, duration_s: float) -> dict[str, int]:
    parsed = urlparse(url)
    address = (parsed.hostname or "127.0.0.1", parsed.port or 4840)
    counts = {"opened": 0, "closed_by_server": 0, "refused": 0}
    ready = asyncio.Event()
    total = silent + hello_only

    async def hold(speak: bool) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(*address)
            except OSError:
                counts["refused"] += 1
                await asyncio.sleep(PACING_S)
                continue
            counts["opened"] += 1
            if counts["opened"] >= total:
                ready.set()
            try:
                if speak:
                    writer.write(hello(url))
                while await reader.read(4096):  # an ACK, if any; then until the server closes
                    pass
            except OSError:
                pass
            finally:
                writer.close()
            counts["closed_by_server"] += 1
            await asyncio.sleep(PACING_S)

    tasks = [asyncio.create_task(hold(speak=False)) for _ in range(silent)]
    tasks += [asyncio.create_task(hold(speak=True)) for _ in range(hello_only)]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(ready.wait(), duration_s)
        print("ready", flush=True)
        await asyncio.wait_for(stop.wait(), duration_s)
    except asyncio.TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return counts


if __name__ == "__main__":
    endpoint, silent_n, hello_n, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(flood(endpoint, silent_n, hello_n, duration))), flush=True)
