"""The query corpora in tests/corpus against real oracles, and the offline parser against the corpora.

Oracles (run them with `-k "promtool or victoria"`):
- promtool (Debian's prometheus 2.42) checks one rule file holding every corpus query, run once per session:
  every `promql` query passes, every `metricsql` query fails (it needs a MetricsQL extension), and every query
  broken in promql fails at exactly the recorded line:col with the recorded message.
- VictoriaMetrics (the session's `vm` fixture, Debian's 1.79.5) answers /api/v1/query for every valid query
  with 200, except groups marked `since:` a newer release, which it must still reject (so a stale `since` shows);
  that covers the two PromQL queries it lacks functions for (day_of_year, histogram_fraction). It rejects
  every query broken in metricsql with a 4xx error, and parses every query broken only in promql. Where its
  error names the unparsed rest of the query, that place agrees with the recorded MetricsQL place.

Parser tests (`vmrules.querylang.check`): no problems for valid queries; for broken ones a first problem at the
recorded place in each listed dialect, and no problem in the other dialect.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.data import END_S

CORPUS = Path(__file__).parent / "corpus"
DIALECTS = ("promql", "metricsql")
Version = tuple[int, int, int]


@dataclass(frozen=True)
class Valid:
    section: str                 # "promql" or "metricsql"
    query: str
    source: str
    since: Version | None        # the VictoriaMetrics release that first accepts it, if newer than ours
    id: str


@dataclass(frozen=True)
class Broken:
    query: str
    line: int                    # 1-based, within the query
    col: int                     # 1-based, as promtool counts it (UTF-8 bytes)
    dialects: tuple[str, ...]
    why: str
    promtool: str | None         # promtool's message, for entries broken in promql
    metricsql_at: tuple[int, int] | None   # MetricsQL's own (line, col), where it differs
    id: str

    def place(self, dialect: str) -> tuple[int, int]:
        if dialect == "metricsql" and self.metricsql_at is not None:
            return self.metricsql_at
        return self.line, self.col


def _version(text: str) -> Version:
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text)
    assert m, f"not a version: {text!r}"
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _slug(query: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", query).strip("_")[:48] or "blank"


def load_valid() -> list[Valid]:
    doc = yaml.safe_load((CORPUS / "queries.yaml").read_text(encoding="utf-8"))
    out: list[Valid] = []
    for section in DIALECTS:
        for group in doc[section]:
            for item in group["queries"]:
                query, since = (item["query"], item.get("since", group.get("since"))) if isinstance(item, dict) \
                    else (item, group.get("since"))
                out.append(Valid(section, query, group["source"], _version(since) if since else None,
                                 f"{section}-{len(out):03d}-{_slug(query)}"))
    return out


def load_broken() -> list[Broken]:
    out: list[Broken] = []
    for n, e in enumerate(yaml.safe_load((CORPUS / "broken.yaml").read_text(encoding="utf-8"))):
        mql = (e.get("metricsql_line", 1), e["metricsql_col"]) if "metricsql_col" in e else None
        out.append(Broken(e["query"], e.get("line", 1), e["col"], tuple(e["dialects"]), e["why"], e.get("promtool"),
                          mql, f"broken-{n:03d}-{_slug(e['query'])}"))
    return out


VALID = load_valid()
BROKEN = load_broken()


def offset_of(query: str, line: int, col: int) -> int:
    """The 0-based string index of 1-based (line, col); col counts UTF-8 bytes as promtool does."""
    lines = query.split("\n")
    assert 1 <= line <= len(lines), f"line {line} is outside the query's {len(lines)} lines"
    text = lines[line - 1].encode()
    assert 1 <= col <= len(text) + 1, f"column {col} is outside line {line} ({len(text)} bytes)"
    return sum(len(s) + 1 for s in lines[: line - 1]) + len(text[: col - 1].decode())


def place_of(query: str, offset: int) -> tuple[int, int]:
    """The 1-based (line, col) of a string index, col in UTF-8 bytes."""
    start = query.rfind("\n", 0, offset) + 1
    return query.count("\n", 0, offset) + 1, len(query[start:offset].encode()) + 1


def caret(query: str, offset: int) -> str:
    return f"{query[:offset]}⟦{query[offset:offset + 1] or 'EOF'}⟧{query[offset + 1:]}"


# ---------------------------------------------------------------------------------------------------------------
# the corpora themselves


def test_corpus_is_well_formed() -> None:
    assert len([v for v in VALID if v.section == "promql"]) >= 150
    assert len([v for v in VALID if v.section == "metricsql"]) >= 150
    assert 60 <= len(BROKEN) <= 90
    queries = [v.query for v in VALID] + [b.query for b in BROKEN]
    dupes = {q for q in queries if queries.count(q) > 1}
    assert not dupes, f"queries listed twice: {sorted(dupes)}"
    ids = [v.id for v in VALID] + [b.id for b in BROKEN]
    assert len(ids) == len(set(ids))
    for v in VALID:
        assert v.source.startswith("https://"), v
        assert v.query.strip() and v.query == v.query.rstrip("\n"), v
    for b in BROKEN:
        assert b.dialects and set(b.dialects) <= set(DIALECTS), b
        assert b.why.strip(), b
        assert (b.promtool is not None) == ("promql" in b.dialects), b
        assert b.metricsql_at is None or set(b.dialects) == set(DIALECTS), b
        for d in b.dialects:
            offset_of(b.query, *b.place(d))       # inside the text


# ---------------------------------------------------------------------------------------------------------------
# promtool: one run over every corpus query


@dataclass(frozen=True)
class PromtoolError:
    line: int
    col: int
    message: str


def _record(kind: str, n: int) -> str:
    return f"corpus_{kind}_{n}"


@pytest.fixture(scope="session")
def promtool_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PromtoolError | str]:
    """promtool's verdict on every corpus query, by record name; a query it accepts is absent."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run `make test` (it installs Debian's prometheus)"
    rules = [{"record": _record("valid", n), "expr": v.query} for n, v in enumerate(VALID)]
    rules += [{"record": _record("broken", n), "expr": b.query} for n, b in enumerate(BROKEN)]
    path = tmp_path_factory.mktemp("promtool") / "corpus.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "corpus", "rules": rules}]}, allow_unicode=True),
                    encoding="utf-8")
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    out: dict[str, PromtoolError | str] = {}
    for text in (run.stdout + run.stderr).splitlines():
        m = re.search(r'rule \d+, "(corpus_\w+)": (.*)$', text)
        if not m:
            continue
        parse = re.fullmatch(r"could not parse expression: (\d+):(\d+): parse error: (.*)", m.group(2))
        out[m.group(1)] = PromtoolError(int(parse.group(1)), int(parse.group(2)), parse.group(3)) if parse \
            else m.group(2)
    # a sanity check on the parsing above: promtool fails exactly when it reported something
    assert (run.returncode != 0) == bool(out), f"promtool exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    return out


@pytest.mark.parametrize("n", [n for n, v in enumerate(VALID) if v.section == "promql"],
                         ids=[v.id for v in VALID if v.section == "promql"])
def test_promtool_accepts_promql_query(promtool_errors: dict[str, PromtoolError | str], n: int) -> None:
    assert _record("valid", n) not in promtool_errors, f"{VALID[n].query!r}: {promtool_errors[_record('valid', n)]}"


@pytest.mark.parametrize("n", [n for n, v in enumerate(VALID) if v.section == "metricsql"],
                         ids=[v.id for v in VALID if v.section == "metricsql"])
def test_promtool_rejects_metricsql_only_query(promtool_errors: dict[str, PromtoolError | str], n: int) -> None:
    assert _record("valid", n) in promtool_errors, \
        f"{VALID[n].query!r} is valid PromQL: it belongs in the promql section"


@pytest.mark.parametrize("n", range(len(BROKEN)), ids=[b.id for b in BROKEN])
def test_promtool_on_broken_query(promtool_errors: dict[str, PromtoolError | str], n: int) -> None:
    b = BROKEN[n]
    got = promtool_errors.get(_record("broken", n))
    if "promql" not in b.dialects:
        assert got is None, f"{b.query!r} is broken in PromQL too: {got}"
        return
    assert isinstance(got, PromtoolError), f"{b.query!r}: promtool said {got!r}"
    assert (got.line, got.col, got.message) == (b.line, b.col, b.promtool), \
        f"promtool puts it at {caret(b.query, offset_of(b.query, got.line, got.col))}"


# ---------------------------------------------------------------------------------------------------------------
# VictoriaMetrics


@pytest.fixture(scope="session")
def vm_version() -> Version:
    """The running server's release: its -version flag, else the Debian package's version."""
    binary = shutil.which("victoria-metrics")
    assert binary, "victoria-metrics is not installed: run `make test` (it installs Debian's package)"
    said = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"v(\d+\.\d+\.\d+)", said)
    if m:
        return _version(m.group(1))
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"], capture_output=True, text=True)
    assert dpkg.returncode == 0 and dpkg.stdout, "cannot tell the VictoriaMetrics version (-version is empty, no dpkg)"
    return _version(dpkg.stdout)


@dataclass(frozen=True)
class Answer:
    status: int
    error: str          # the error without VictoriaMetrics' `error when executing query=...: ` prefix


def ask(vm: Any, query: str) -> Answer:
    url = f"{vm.url}/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": END_S})
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return Answer(r.status, "")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        assert body.get("status") == "error", body
        error = re.sub(r'^error when executing query=".*?" for \(time=\d+, step=\d+\): ', "", body["error"],
                       flags=re.S)
        return Answer(e.code, error)
    except OSError as e:     # a query that crashes the server would take every later test with it
        pytest.fail(f"VictoriaMetrics gave no answer to {query!r}: {e}")


def unparsed_offset(query: str, error: str) -> int | None:
    """Where VictoriaMetrics stopped parsing: its error quotes the rest of the query as `unparsed data`."""
    m = re.search(r'unparsed data(?: left)?: ("(?:[^"\\]|\\.)*")$', error)
    if not m:
        return None
    try:
        rest = json.loads(m.group(1))
    except ValueError:
        return None
    return len(query) - len(rest) if query.endswith(rest) else None


def data_dependent(error: str) -> bool:
    """An error from evaluating a query VictoriaMetrics did parse, caused by the data (no series where it needs
    exactly one), not by the query's text: `topk(x, 3)` or `x @ start` with no single `x` or `start` series."""
    return error.startswith("cannot evaluate ") and bool(
        re.search(r"must contain a single timeseries|must return a single series", error))


@pytest.mark.parametrize("n", range(len(VALID)), ids=[v.id for v in VALID])
def test_victoria_accepts_valid_query(vm: Any, vm_version: Version, n: int) -> None:
    v = VALID[n]
    got = ask(vm, v.query)
    if v.since is not None and vm_version < v.since:
        assert got.status >= 400, \
            f"{v.query!r} is marked since {v.since} but VictoriaMetrics {vm_version} accepts it: drop `since`"
        return
    assert got.status == 200, f"{v.query!r}: HTTP {got.status}: {got.error}"


@pytest.mark.parametrize("n", range(len(BROKEN)), ids=[b.id for b in BROKEN])
def test_victoria_on_broken_query(vm: Any, n: int) -> None:
    b = BROKEN[n]
    got = ask(vm, b.query)
    if "metricsql" not in b.dialects:
        assert got.status == 200 or data_dependent(got.error), \
            f"{b.query!r} is broken in MetricsQL too: HTTP {got.status}: {got.error}"
        return
    assert 400 <= got.status < 500 and got.error, f"{b.query!r}: HTTP {got.status}: {got.error}"
    stop = unparsed_offset(b.query, got.error)
    if stop is not None and (b.metricsql_at is not None or "promql" not in b.dialects):
        assert place_of(b.query, stop) == b.place("metricsql"), \
            f"VictoriaMetrics stops at {caret(b.query, stop)}: {got.error}"


# ---------------------------------------------------------------------------------------------------------------
# the offline parser


def _problems(query: str, dialect: str) -> list[Any]:
    from vmrules.querylang import check

    return list(check(query, dialect).problems)


VALID_CASES = [(n, d) for n, v in enumerate(VALID) for d in (DIALECTS if v.section == "promql" else ("metricsql",))]


@pytest.mark.parametrize(("n", "dialect"), VALID_CASES, ids=[f"{VALID[n].id}-as-{d}" for n, d in VALID_CASES])
def test_parser_accepts_valid_query(n: int, dialect: str) -> None:
    query = VALID[n].query
    problems = _problems(query, dialect)
    assert not problems, f"{query!r} ({VALID[n].source}) as {dialect}: " + "; ".join(
        f"{caret(query, p.offset)}: {p.message}" for p in problems)


BROKEN_CASES = [(n, d) for n in range(len(BROKEN)) for d in DIALECTS]


@pytest.mark.parametrize(("n", "dialect"), BROKEN_CASES, ids=[f"{BROKEN[n].id}-as-{d}" for n, d in BROKEN_CASES])
def test_parser_on_broken_query(n: int, dialect: str) -> None:
    b = BROKEN[n]
    problems = _problems(b.query, dialect)
    if dialect not in b.dialects:
        assert not problems, f"{b.query!r} is valid {dialect}: " + "; ".join(
            f"{caret(b.query, p.offset)}: {p.message}" for p in problems)
        return
    want = offset_of(b.query, *b.place(dialect))
    assert problems, f"{b.query!r} as {dialect}: no problem found ({b.why}); expected at {caret(b.query, want)}"
    first = problems[0]
    assert first.offset == want, (f"{b.why}: expected at {caret(b.query, want)}, "
                                  f"got {caret(b.query, first.offset)}: {first.message}")
