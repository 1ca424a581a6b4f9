"""Tabulated, piecewise-linear curves: how every chemistry figure in this plugin is stored.

Datasheets and papers give curves as a handful of points (OCV at 0, 10, 20 ... % SOC; allowed C-rate per
temperature band). Keeping exactly those points, and interpolating linearly between them with
``np.interp``, means the numbers in the source read the same as in the reference they came from, the
evaluation is vectorised over fleets of units, and the curve is constant beyond its first and last points
(so a derating that is 0 at a hard limit stays 0 further out, which keeps it monotone).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Curve:
    """``y(x)`` through tabulated points, linear in between, flat beyond the ends.

    :param x: strictly increasing abscissae (SOC in %, temperature in °C).
    :param y: the values at those points.
    """

    __slots__ = ("x", "y")

    def __init__(self, x: Sequence[float], y: Sequence[float]) -> None:
        xs = np.asarray(x, dtype=float)
        ys = np.asarray(y, dtype=float)
        if xs.ndim != 1 or xs.shape != ys.shape or xs.size < 2:
            raise ValueError(
                f"a curve needs two equally long 1-D sequences of >= 2 points (got {xs.shape}, {ys.shape})"
            )
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
            raise ValueError("curve points must be finite")
        if np.any(np.diff(xs) <= 0):
            raise ValueError(f"curve abscissae must be strictly increasing (got {xs.tolist()})")
        xs.flags.writeable = False
        ys.flags.writeable = False
        self.x = xs
        self.y = ys

    def __call__(self, value: np.ndarray | float) -> np.ndarray:
        """The curve at ``value`` (any shape; NaN in gives NaN out, so callers decide what unknown means)."""
        return np.interp(np.asarray(value, dtype=float), self.x, self.y)

    def __repr__(self) -> str:
        points = ", ".join(f"({x:g}, {y:g})" for x, y in zip(self.x, self.y, strict=True))
        return f"Curve({points})"


def derating(
    temperature: Curve, soc: Curve, temp_c: np.ndarray | float, soc_pct: np.ndarray | float
) -> np.ndarray:
    """Temperature factor times SOC factor, clipped to 0..1; an unknown (NaN) input allows nothing.

    Negotiation asks for the envelope with whatever the unit reports; a NaN temperature or SOC must turn
    into "no current", not into a NaN that would fail validation further on.
    """
    factor = temperature(temp_c) * soc(soc_pct)
    return np.clip(np.nan_to_num(factor, nan=0.0), 0.0, 1.0)
