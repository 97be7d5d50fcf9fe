"""A rule's `unit:`: how its values read in charts, tables and templates (2 GiB, not 2.15G)."""

from __future__ import annotations

import math

UNITS = ("bytes", "percent", "ratio", "seconds")
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_SECONDS = (("d", 86_400.0), ("h", 3_600.0), ("m", 60.0), ("s", 1.0))


def format_value(value: float, unit: str | None = None) -> str:
    """A value as people read it in `unit`: bytes in powers of 1024, percent (0-100) and ratio (0-1) with a
    % sign, seconds as 1h30m or 250ms; without a unit, 3 significant digits with k, M, G, T."""
    v = float(value)
    if not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
    match unit:
        case "bytes":
            i = 0
            while abs(v) >= 1024 and i < len(_IEC) - 1:
                v, i = v / 1024, i + 1
            return f"{v:.3g} {_IEC[i]}"
        case "percent":
            return f"{v:.3g}%"
        case "ratio":
            return f"{v * 100:.3g}%"
        case "seconds":
            return _seconds(v)
    for suffix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e4)):
        if abs(v) >= size:
            return f"{v / (size if suffix != 'k' else 1e3):.3g}{suffix}"
    return f"{v:.3g}"


def _seconds(v: float) -> str:
    """1h30m, 2d1h, 59.5s, 250ms: the two largest units that are not zero."""
    if v == 0:
        return "0s"
    sign, v = ("-" if v < 0 else ""), abs(v)
    if v < 1:
        return f"{sign}{v * 1000:.3g}ms"
    parts: list[str] = []
    for suffix, size in _SECONDS:
        n = (round(v, 3) if v >= 1 else 0) if suffix == "s" else v // size    # whole seconds keep a fraction
        if n:
            parts.append(f"{n:g}{suffix}")
            v -= n * size
        if len(parts) == 2:
            break
    return sign + "".join(parts)
