"""The simulated vendor_a controllers of a whole fleet, as numpy arrays: control logic + register image.

One chemistry equivalent-circuit model covers all N containers and is stepped at the controller rate
(10 Hz). Each step the controller logic decides, per container and vectorised, what power is actually
applied — the setpoint clamped to rated power, the BMS limits (chemistry C-rate times its temperature/SOC
derating), the SOC window, and zero while stopped, faulted, or when the gateway heartbeat has been
silent longer than the watchdog period — then the model moves SOC, voltage, current and temperature, and
every telemetry register of every container is re-encoded into one ``(N, 256)`` uint16 image that the
Modbus servers serve slices of. Setpoint writes land in the same image and are decoded on the next step.
"""

from __future__ import annotations

import numpy as np

from bessgw.plugin import ChemistryModel, RegisterType, WordOrder, decode_value, encode_string
from bessgw_vendor_a.registermap import CHEMISTRIES, Register, RegisterMap, bit, load_map

IMAGE_REGISTERS = 256
STANDBY, RUNNING, FAULT = 0, 1, 2
_INT_RANGES = {
    RegisterType.U16: (0, 0xFFFF),
    RegisterType.I16: (-0x8000, 0x7FFF),
    RegisterType.U32: (0, 0xFFFFFFFF),
    RegisterType.I32: (-0x80000000, 0x7FFFFFFF),
}


def encode_column(image: np.ndarray, reg: Register, values: np.ndarray) -> None:
    """Write ``values`` (one per container) into ``image[:, reg.address...]``, saturating at the type's
    range like a real controller's fixed-point registers do."""
    if reg.kind is RegisterType.F32:
        words = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)
    else:
        low, high = _INT_RANGES[reg.kind]
        raw = np.clip(np.rint(np.asarray(values, dtype=np.float64) / reg.scale), low, high).astype(np.int64)
        if reg.kind.width == 1:
            image[:, reg.address] = raw & 0xFFFF
            return
        words = raw & 0xFFFFFFFF
    hi, lo = (words >> 16) & 0xFFFF, words & 0xFFFF
    first, second = (lo, hi) if reg.word_order is WordOrder.LITTLE else (hi, lo)
    image[:, reg.address] = first
    image[:, reg.address + 1] = second


def decode_register(image_row: np.ndarray, reg: Register) -> float:
    return decode_value(image_row[reg.address : reg.address + reg.width].tolist(), 0, reg.kind,
                        reg.word_order, reg.scale)


def decode_column(image: np.ndarray, reg: Register) -> np.ndarray:
    """The value of ``reg`` for every container (the vectorised inverse of :func:`encode_column`)."""
    first = image[:, reg.address].astype(np.int64)
    if reg.kind.width == 1:
        raw = first - 0x10000 * (first >= 0x8000) if reg.kind is RegisterType.I16 else first
        return raw * reg.scale
    second = image[:, reg.address + 1].astype(np.int64)
    hi, lo = (second, first) if reg.word_order is WordOrder.LITTLE else (first, second)
    words = (hi << 16) | lo
    if reg.kind is RegisterType.F32:
        return words.astype(np.uint32).view(np.float32).astype(np.float64) * reg.scale
    if reg.kind is RegisterType.I32:
        words = words - (1 << 32) * (words >= 0x80000000)
    return words * reg.scale


class Fleet:
    """N simulated controllers sharing one vectorised chemistry model."""

    def __init__(
        self,
        count: int,
        chemistry: ChemistryModel,
        *,
        firmware: str = "v2",
        rated_power_kw: float = 2500.0,
        energy_kwh: float = 5000.0,
        max_q_kvar: float = 1000.0,
        soc_pct: float | np.ndarray = 50.0,
        ambient_c: float = 25.0,
        watchdog_s: float = 5.0,
        serial_prefix: str = "VA",
    ) -> None:
        if count < 1:
            raise ValueError("a fleet needs at least one container")
        code = {name: c for c, name in CHEMISTRIES.items()}.get(chemistry.name)
        if code is None:
            known = ", ".join(CHEMISTRIES.values())
            raise ValueError(f"vendor_a builds {known} containers, not {chemistry.name}")
        self.count = count
        self.chemistry = chemistry
        self.identity = load_map("identity")
        self.map: RegisterMap = load_map(firmware)
        self.firmware = firmware
        self.rated_power_kw = rated_power_kw
        self.energy_kwh = energy_kwh
        self.max_q_kvar = max_q_kvar
        self.ambient_c = ambient_c
        self.watchdog_s = watchdog_s
        self.soc_min_pct = max(chemistry.soc_min_pct, 5.0)
        self.soc_max_pct = min(chemistry.soc_max_pct, 95.0)
        self.model = chemistry.equivalent_circuit(count, energy_kwh, soc_pct=soc_pct, temp_c=ambient_c)
        self.image = np.zeros((count, IMAGE_REGISTERS), dtype=np.uint16)
        self.time_s = 0.0
        self.seq = np.zeros(count, dtype=np.int64)
        self.p_kw = np.zeros(count)
        self.q_kvar = np.zeros(count)
        self.latched_alarms = np.zeros(count, dtype=np.int64)
        self.heartbeat = np.zeros(count, dtype=np.int64)
        self.heartbeat_at = np.full(count, -np.inf)  # never seen: the watchdog holds the unit in standby
        self.frozen = np.zeros(count, dtype=bool)  # fault knob: registers stop changing
        self.out_of_range = np.zeros(count, dtype=bool)  # fault knob: SOC register reads 0xFFFF
        self.soh_pct = 99.0 - 0.05 * np.arange(count) % 3.0
        self._write_identity(code, int(firmware.lstrip("v")))
        self._write(self.map["run"], np.ones(count))
        self.step(0.0)

    # ----------------------------------------------------------------------------- identity

    def _write_identity(self, chemistry_code: int, major: int) -> None:
        ident = self.identity
        model = f"VA-{int(self.rated_power_kw)}-{self.chemistry.name.upper()}"
        for index in range(self.count):
            row = self.image[index]
            for name, text in (("vendor", "VENDOR-A"), ("model", model), ("serial", f"VA{index:06d}")):
                reg = ident[name]
                row[reg.address : reg.address + reg.count] = encode_string(text, reg.count)
        values = {
            "fw_major": major, "fw_minor": 3, "chemistry_code": chemistry_code,
            "rated_power_kw": self.rated_power_kw, "rated_energy_kwh": self.energy_kwh,
            "max_q_kvar": self.max_q_kvar, "soc_min_pct": self.soc_min_pct, "soc_max_pct": self.soc_max_pct,
            "ramp_kw_per_s": self.rated_power_kw,  # full power in one second
        }
        for name, value in values.items():
            self._write(ident[name], np.full(self.count, float(value)))

    def set_firmware_major(self, index: int, major: int) -> None:
        """Pretend container ``index`` runs another firmware (tests of map selection and refusal)."""
        reg = self.identity["fw_major"]
        self.image[index, reg.address] = major

    def _write(self, reg: Register, values: np.ndarray) -> None:
        encode_column(self.image, reg, values)

    def _read(self, name: str) -> np.ndarray:
        return decode_column(self.image, self.map[name])

    # ------------------------------------------------------------------------------- writes

    def validate_write(self, index: int, address: int, values: list[int]) -> bool:
        """Whether a write is acceptable (a setpoint beyond rated power is refused, exception 3)."""
        row = self.image[index].copy()
        row[address : address + len(values)] = values
        for name, limit in (("p_setpoint_kw", self.rated_power_kw), ("q_setpoint_kvar", self.max_q_kvar)):
            reg = self.map[name]
            touched = address < reg.address + reg.width and reg.address < address + len(values)
            if touched and abs(decode_register(row, reg)) > limit + 1e-6:
                return False
        return True

    def apply_write(self, index: int, address: int, values: list[int], now_s: float) -> None:
        """A Modbus write landed: store it; note heartbeat changes and fault resets."""
        hb = self.map["heartbeat"].address
        old_hb = int(self.image[index, hb])
        self.image[index, address : address + len(values)] = values
        if address <= hb < address + len(values) and int(self.image[index, hb]) != old_hb:
            self.heartbeat_at[index] = now_s
        reset = self.map["fault_reset"].address
        if address <= reset < address + len(values) and self.image[index, reset]:
            self.latched_alarms[index] = 0
            self.image[index, reset] = 0

    # --------------------------------------------------------------------------------- step

    def step(self, dt_s: float, now_s: float | None = None) -> None:
        """Advance every container by ``dt_s`` and re-encode the telemetry registers."""
        self.time_s = self.time_s + dt_s if now_s is None else now_s
        chem, model, n = self.chemistry, self.model, self.count
        setpoint = self._read("p_setpoint_kw")
        q_setpoint = self._read("q_setpoint_kvar")
        run = self._read("run") >= 1
        heartbeat_ok = (self.time_s - self.heartbeat_at) <= self.watchdog_s
        if not heartbeat_ok.all():  # a real controller drops a stale command with the link
            lost = ~heartbeat_ok & (self.heartbeat_at > -np.inf)
            if lost.any():
                self._zero_setpoints(lost)
        soc, temp = model.soc_pct, model.temp_c
        charge_kw = np.minimum(self.rated_power_kw, chem.max_charge_c * self.energy_kwh
                               * np.clip(chem.charge_derating(temp, soc), 0.0, 1.0))
        discharge_kw = np.minimum(self.rated_power_kw, chem.max_discharge_c * self.energy_kwh
                                  * np.clip(chem.discharge_derating(temp, soc), 0.0, 1.0))
        soc_high = soc >= self.soc_max_pct
        soc_low = soc <= self.soc_min_pct
        charge_kw = np.where(soc_high, 0.0, charge_kw)
        discharge_kw = np.where(soc_low, 0.0, discharge_kw)
        faulted = self.latched_alarms != 0
        active = run & heartbeat_ok & ~faulted
        p = np.where(active, np.clip(setpoint, -charge_kw, discharge_kw), 0.0)
        q = np.where(active, np.clip(q_setpoint, -self.max_q_kvar, self.max_q_kvar), 0.0)
        if dt_s > 0:
            model.step(p, dt_s, self.ambient_c)
        self.p_kw, self.q_kvar = p, q
        cell_v = np.asarray(model.cell_v, dtype=float)
        spread_v = 0.004 + 0.002 * (np.arange(n) % 3)
        temp_now = np.asarray(model.temp_c, dtype=float)
        alarms = self.latched_alarms.copy()
        alarms |= np.where(cell_v + spread_v > chem.cell_v_max + 0.05, bit("alarms", "cell_overvoltage"), 0)
        alarms |= np.where(cell_v - spread_v < chem.cell_v_min - 0.05, bit("alarms", "cell_undervoltage"), 0)
        alarms |= np.where(temp_now + 1.5 > chem.temp_max_c, bit("alarms", "over_temperature"), 0)
        alarms |= np.where(temp_now - 1.5 < chem.temp_min_c, bit("alarms", "under_temperature"), 0)
        self.latched_alarms |= alarms & bit("alarms", "internal_fault")
        warnings = np.zeros(n, dtype=np.int64)
        warnings |= np.where(~heartbeat_ok, bit("warnings", "heartbeat_lost"), 0)
        warnings |= np.where(soc_high, bit("warnings", "soc_high"), 0)
        warnings |= np.where(soc_low, bit("warnings", "soc_low"), 0)
        limited = np.abs(p - np.where(active, setpoint, 0.0)) > 0.5
        warnings |= np.where(limited, bit("warnings", "power_limited"), 0)
        warnings |= np.where(~run, bit("warnings", "stopped"), 0)
        state = np.where(faulted, FAULT, np.where(active, RUNNING, STANDBY))

        live = ~self.frozen
        self.seq = np.where(live, (self.seq + 1) & 0xFFFF, self.seq)
        columns = {
            "seq": self.seq, "state": state, "soc_pct": model.soc_pct, "soh_pct": self.soh_pct,
            "p_kw": p, "q_kvar": q, "dc_v": model.pack_v, "dc_a": model.pack_a,
            "cell_temp_min_c": temp_now - 1.5, "cell_temp_max_c": temp_now + 1.5,
            "cell_v_min": cell_v - spread_v, "cell_v_max": cell_v + spread_v,
            "alarms": alarms, "warnings": warnings,
            "max_charge_kw": charge_kw, "max_discharge_kw": discharge_kw,
        }
        if live.all():
            for name, values in columns.items():
                self._write(self.map[name], np.asarray(values, dtype=float))
        else:  # frozen containers keep their registers exactly as they were
            saved = self.image[~live].copy()
            for name, values in columns.items():
                self._write(self.map[name], np.asarray(values, dtype=float))
            self.image[~live] = saved
        if self.out_of_range.any():
            self.image[self.out_of_range, self.map["soc_pct"].address] = 0xFFFF

    def _zero_setpoints(self, mask: np.ndarray) -> None:
        for name in ("p_setpoint_kw", "q_setpoint_kvar"):
            reg = self.map[name]
            self.image[mask, reg.address : reg.address + reg.width] = 0

    def state(self, index: int) -> int:
        return int(self.image[index, self.map["state"].address])
