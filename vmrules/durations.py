"""Durations (`30s`, `5m`, `1h30m`, `1w`) and points in time (RFC 3339, unix seconds, `now-1h`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w))+$"
MAX_DURATION_MS = (2 ** 63 - 1) // 1_000_000     # Go's durations, about 292 years: Prometheus' limit, and ours


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration such as `1h30m`; ValueError when it is not one."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms s m h d w), e.g. 5m or 1h30m")
    return sum(int(n) * UNITS_MS[u] for n, u in _PART.findall(text))


MAX_TIME_MS = 253_402_300_799_999      # 9999-12-31T23:59:59.999Z, the last time RFC 3339 can write


def parse_time_ms(text: str, now_ms: int) -> int:
    """A point in time as unix milliseconds: RFC 3339, unix seconds, `now`, `now-1h`; between 1970 and 9999."""
    ms = _time_ms(text, now_ms)
    if not 0 <= ms <= MAX_TIME_MS:
        hint = " (unix seconds are expected; this looks like milliseconds)" if ms > MAX_TIME_MS and \
            re.fullmatch(r"\d{13,16}(\.\d+)?", text.strip()) else ""
        raise ValueError(f"time {text[:40]!r} is outside 1970 .. 9999{hint}")
    return ms


def _time_ms(text: str, now_ms: int) -> int:
    s = text.strip()
    if s == "now":
        return now_ms
    m = re.fullmatch(r"now\s*([+-])\s*(\S+)", s)
    if m:
        delta = parse_duration_ms(m.group(2))
        return now_ms - delta if m.group(1) == "-" else now_ms + delta
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        return round(float(s) * 1000) if len(s) < 30 else MAX_TIME_MS + 1
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use RFC 3339, unix seconds, now or now-1h") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return round(d.timestamp() * 1000)


Time = int | str | datetime | None     # unix ms, "now-1h", RFC 3339, unix seconds as text, or a datetime


def time_ms(t: int | str | datetime, now_ms: int) -> int:
    """A time as the Python API takes it: unix milliseconds, a datetime, or text as the command line's."""
    if isinstance(t, datetime):
        return int(t.timestamp() * 1000)
    if isinstance(t, int):
        return t
    return parse_time_ms(str(t), now_ms)


def format_time_ms(ms: int) -> str:
    """RFC 3339 in UTC, seconds precision unless milliseconds are set."""
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = d.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def format_duration_ms(ms: int) -> str:
    """The shortest duration text for `ms`, e.g. 5400000 -> 1h30m."""
    if ms == 0:
        return "0s"
    out = []
    for unit in ("w", "d", "h", "m", "s", "ms"):
        n, ms = divmod(ms, UNITS_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
