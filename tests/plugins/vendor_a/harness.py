"""vendor_a units for tests: the simulator on loopback and the site configuration pointing at it.

The gateway side (Modbus transport, driver, unit supervisors) is the conformance kit's
:class:`bessgw.testing.Southbound`; this module only says what vendor_a's units look like.
"""

from __future__ import annotations

from typing import Any

from bessgw_vendor_a.simulator import VendorASimulator

from bessgw.testing import RecordingLog, Southbound, installed_plugins

__all__ = ["Gateway", "RecordingLog", "chemistry", "gateway_config", "registry", "simulator"]

_REGISTRY = None


def registry():
    """The installed plugins (collected once per test process)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = installed_plugins()
    return _REGISTRY


def chemistry(name: str = "lfp"):
    return registry().chemistries[name]


def gateway_config(ports: list[int], *, modbus: dict[str, Any] | None = None,
                   defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """A site configuration with one vendor_a unit ``u<i>`` per port; units retry like the transport."""
    modbus = dict(modbus or {})
    retry = {"retry_min_s": modbus.get("reconnect_min_s", 0.5), "retry_max_s": modbus.get("reconnect_max_s", 30.0)}
    return {
        "gateway": {"id": "test-gw"},
        "southbound": {"modbus": {"reconnect_min_s": 0.5, "reconnect_max_s": 30.0, "request_timeout_s": 1.0,
                                  "connect_timeout_s": 2.0, **modbus}},
        "defaults": {"poll_interval_s": 0.1, "stale_after_s": 1.0, "bad_after_s": 5.0, "heartbeat_interval_s": 1.0,
                     **retry, **(defaults or {})},
        "units": [
            {"id": f"u{i}", "driver": "vendor_a", "modbus": {"host": "127.0.0.1", "port": port}}
            for i, port in enumerate(ports)
        ],
    }


class Gateway(Southbound):
    """vendor_a units behind the Modbus transport."""

    def __init__(self, config: dict[str, Any], log: RecordingLog | None = None) -> None:
        super().__init__(config, registry=registry(), log=log)

    @property
    def supervisors(self):
        """The supervised units by id."""
        return self.units


def simulator(count: int = 1, **kw: Any) -> VendorASimulator:
    """A simulator on OS-chosen loopback ports, with the installed LFP model."""
    return VendorASimulator(chemistry(kw.pop("chemistry", "lfp")), count=count, port=0, **kw)
