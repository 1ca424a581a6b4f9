"""The exception hierarchy of bessgw.

Every error a person can act on derives from :class:`BessgwError`; the CLI prints those without a
traceback and exits with the code attached to the class. Anything else escaping is a bug.
"""

from __future__ import annotations

EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_CONFIG = 78


class BessgwError(Exception):
    """Base of every error that is reported to a person rather than as a traceback."""

    exit_code: int = EX_SOFTWARE


class ConfigError(BessgwError):
    """A configuration file is unreadable or invalid.

    ``problems`` holds one line per problem, each naming the file, the key path and what was expected,
    e.g. ``config/site.toml: units[3].modbus.port: Input should be <= 65535 (got 70000)``.
    """

    exit_code = EX_CONFIG

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PluginError(BessgwError):
    """A plugin is broken, incompatible, or clashes with another one."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        self.message = message
        super().__init__(f"plugin {plugin}: {message}")


class DeviceError(BessgwError):
    """A southbound device or link failed; handled at the unit boundary, never fatal to the daemon."""


class DeviceTimeoutError(DeviceError):
    """A request to a device did not complete within its timeout."""


class DeviceUnavailableError(DeviceError):
    """The link to a device is down (not connected, or its circuit breaker is open)."""


class DeviceProtocolError(DeviceError):
    """The device answered, but with an error (e.g. a Modbus exception code) or a malformed payload.

    ``code`` carries the protocol's own error code where there is one.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class IncompatibleDeviceError(DeviceError):
    """The device identified itself with something the driver refuses (unknown firmware, old protocol)."""


class DecisionExpiredError(BessgwError):
    """A setpoint reached the device door after its decision's deadline and was not written.

    The gateway was paused (SIGSTOP, a long GC, a loaded machine) or the write waited too long: whatever
    was decided back then may no longer hold (a source went silent, a campus share moved), so the write is
    dropped and the next control period decides again. Decreases of ``|P|`` never expire.
    """


class NegotiationError(BessgwError):
    """Capability negotiation refused a unit; the message is the reason."""


class CoordinationError(BessgwError):
    """The campus coordination store (etcd) could not do what was asked: no endpoint answered in time, the
    cluster has no leader, a lease is gone, or the request was refused. The campus setpoint is then not
    committed; the message says why (exit 69, ``EX_UNAVAILABLE``)."""

    exit_code = EX_UNAVAILABLE


class CorruptRecordError(BessgwError):
    """A value read from the coordination store is not a record this version understands (bad JSON, NaN,
    a wrong type, an unknown field, an oversized value, another schema version). It is counted and never
    applied. ``key`` names where it was read, when known."""

    def __init__(self, message: str, key: str = "") -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class NewerRecordError(CorruptRecordError):
    """A record of a newer schema version than this release reads (a newer release wrote it): counted and
    never applied like a corrupt one, but the message says that an upgrade, not a bug, is the cause."""


class LeaseLostError(CoordinationError):
    """The etcd lease is gone (expired or revoked): everything bound to it is deleted; take a new one."""


class SetpointRefusedError(BessgwError):
    """A campus setpoint was refused before reaching etcd: its values are not a setpoint (NaN, out of
    range, a malformed command id). Exit 65, ``EX_DATAERR``."""

    exit_code = 65


class InstallError(BessgwError):
    """``bessgw install-service`` cannot install the unit files: an unusable prefix (relative, under a home
    directory the unit hides, no bessgw there) or a destination it cannot write. Exit 73, ``EX_CANTCREAT``."""

    exit_code = EX_CANTCREAT
