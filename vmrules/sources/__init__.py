"""Where samples come from: a Prometheus-compatible query API (prometheus.py over net/transport.py,
answers parsed while they arrive by stream.py and parse.py) and VictoriaMetrics export files
(exportfile.py); both give QueryResult batches (result.py).

A source is chosen by the datasource URL's scheme (`open_source`); a new kind of source is one
module with a class that has `batches(query, window)` and `close()`, and one line in SCHEMES.
Light to import: a source's module loads when it is opened.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vmrules.model import Datasource
    from vmrules.sources.result import QueryResult
    from vmrules.window import Window

SCHEMES = {                          # URL scheme -> the class that answers it
    "http": "vmrules.sources.prometheus:HttpSource",
    "https": "vmrules.sources.prometheus:HttpSource",
    "file": "vmrules.sources.exportfile:FileSource",
}


class Source(Protocol):
    """Answers a query over a window in batches of complete series, in time order per series."""

    def batches(self, query: str, window: Window) -> Iterator[QueryResult]: ...

    def close(self) -> None: ...


def open_source(ds: Datasource, env: Mapping[str, str], log: Callable[[str], None]) -> Source:
    """The source for a datasource, by its URL's scheme."""
    scheme = ds.url.split(":", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(f"datasource {ds.url!r}: unknown scheme {scheme!r}; known: {', '.join(sorted(SCHEMES))}")
    module, name = SCHEMES[scheme].split(":")
    cls = getattr(importlib.import_module(module), name)
    source: Source = cls.open(ds, env, log)
    return source


def normalize_url(url: str) -> str:
    """A datasource URL as every part of vmrules uses it: an API prefix without a trailing slash
    (a `file:` path as it is)."""
    return url if url.startswith("file:") else url.rstrip("/")


def url_problem(url: str, schemes: tuple[str, ...] = ("http://", "https://", "file:")) -> str | None:
    """What is wrong with a URL vmrules is to read from or send to (None: nothing); a host and port
    without a scheme, the usual slip, is told to add http://."""
    if url.startswith(schemes):
        return None
    if "//" not in url and re.fullmatch(r"[A-Za-z0-9.\-]+(:[0-9]+)?(/.*)?", url, re.S):
        return f"{url!r} has no scheme: add http:// in front (https:// for TLS)"
    return f"{url!r} must start with {', '.join(schemes[:-1])} or {schemes[-1]}"
