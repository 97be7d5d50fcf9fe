"""A one-line progress bar for a terminal: rules done, requests, samples and samples per second."""

from __future__ import annotations

import threading
import time
from typing import TextIO

WIDTH = 24
REDRAW_S = 0.1


class Progress:
    """Counts reported by the rules' threads; redrawn at most every 0.1 s, on one line of `stream`."""

    def __init__(self, stream: TextIO, rules: int, label: str = "rules"):
        self.stream, self.total, self.label = stream, rules, label
        self.done = self.requests = self.samples = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._lock = threading.Lock()

    def batch(self, requests: int, samples: int) -> None:
        """One batch of a rule was evaluated."""
        with self._lock:
            self.requests += requests
            self.samples += samples
            self._draw()

    def rule_done(self) -> None:
        with self._lock:
            self.done += 1
            self._draw(force=True)

    def close(self) -> None:
        """Clear the line, so that what follows starts on a clean one."""
        with self._lock:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (f"{bar(self.done, self.total)} {self.done}/{self.total} {self.label}, "
                f"{self.requests} requests, {_count(self.samples)} samples, {_count(self.samples / elapsed)} samples/s")

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._drawn >= REDRAW_S:
            self._drawn = now
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()


def bar(done: int, total: int, width: int = WIDTH) -> str:
    """`[#####.....]`: done of total."""
    filled = width * done // max(1, total)
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f}"
