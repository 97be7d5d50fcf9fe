"""`apply`: run rules (fetch -> evaluate -> route -> export), isolated from each other."""

from __future__ import annotations

import os
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vmrules.commands.variables import check_variables
from vmrules.config.validate import rule_template_context
from vmrules.delivery import scratch
from vmrules.delivery.lock import run_lock
from vmrules.delivery.state import Carry, State, StateError
from vmrules.durations import Time, format_time_ms, parse_duration_ms, time_ms
from vmrules.errors import RuleError, UsageError, VmrulesError
from vmrules.evaluate.counts import Counts
from vmrules.evaluate.pushdown import UNKNOWN_COUNTS, Pushdown, decide
from vmrules.model import Datasource, Rule, RuleSet, Target
from vmrules.net.http import Env, HttpError, redact_dsn, redact_url, rule_env, scrub
from vmrules.sources import normalize_url, open_source, url_problem
from vmrules.sources.result import FetchError, QueryResult
from vmrules.targets.registry import PluginError, kind_of
from vmrules.targets.registry import get as get_target
from vmrules.templates import TemplateError, check_table_name, confine, render
from vmrules.window import Window, rule_window

if TYPE_CHECKING:  # pyarrow and the writers load while the first answer is already on its way
    import pyarrow as pa

    from vmrules.delivery.outputs import Part, RuleOutputs
    from vmrules.evaluate.rows import EvalState, Evaluation

Log = Callable[[str], None]


@dataclass
class ApplyOptions:
    """What `vmrules apply` was asked to do."""

    output_dir: str = "exports"
    datasource: str | None = None            # overrides every rule's datasource url
    from_ms: int | None = None
    to_ms: int | None = None                 # default: now
    rules: Sequence[str] = ()                # only these rules
    dry_run: bool = False
    concurrency: int = 4
    env: Mapping[str, str] | None = None     # for ${VAR}; default os.environ
    allow_env: Mapping[str, tuple[str, ...]] | None = None   # variables rule files may read (name -> URL
    #                                          prefixes, () = any URL); default: what VMRULES_ALLOW_ENV says
    keep_tables: bool = False                # keep each rule's routed tables in RunReport.tables (memory!)
    log: Log | None = None                   # -v: requests, retries, files
    notice: Log | None = None                # always shown: waiting for another run's lock
    incremental: bool = False                # windows start after each rule's watermark (state file)
    lag_ms: int = 60_000                     # incremental: windows end this long before --to/now
    shard: tuple[int, int] | None = None     # (i, n): only the rules whose name hashes to i of n
    progress: Any = None                     # a progress.Progress (terminal bar), told of batches and rules
    charts: Any = None                       # an htmlreport.Charts, given each evaluated batch (--report)
    carry: dict[str, Carry] | None = None    # not incremental: alert states by rule, read and left for the
                                             # next window that continues this one (--chunk)
    written: set[str] | None = None          # files earlier chunks of this backfill wrote: added to, not replaced
    open_episodes: bool = True               # file targets get the episodes still open at the window's end
                                             # (not in incremental runs, nor in a backfill's chunks but the last)
    no_pushdown: str | None = None           # why no rule's conditions go into its query this run (None: they
                                             # go where exact: `--no-pushdown`, a report needs every sample)
    start: Time = None                       # as the command line's --from / --to / --since: RFC 3339,
    end: Time = None                         # unix seconds or "now-1h" as text, unix ms, or a datetime;
    since: str | None = None                 # turned into from_ms / to_ms when the options are made

    def __post_init__(self) -> None:
        now = int(time.time() * 1000)
        if self.end is not None:
            self.to_ms, self.end = time_ms(self.end, now), None
        if self.since is not None:
            self.from_ms, self.since = (self.to_ms if self.to_ms is not None else now) - parse_duration_ms(
                self.since), None
        if self.start is not None:
            self.from_ms, self.start = time_ms(self.start, now), None


@dataclass
class Destination:
    """Where one target of one rule writes: a file, a table in a database file, or a service."""

    target: Target
    kind: str                 # file | database | service
    path: str                 # file or database: absolute, inside the output directory; service: its URL
    table: str | None = None  # database only
    context: dict[str, Any] = field(default_factory=dict)   # what its templates see


@dataclass
class RuleReport:
    """Numbers and status of one rule in one run."""

    name: str
    window: Window
    query: str
    datasource: str
    destinations: list[Destination] = field(default_factory=list)
    status: str = "planned"   # planned | ok | failed
    error: str = ""
    counts: Counts = field(default_factory=Counts)
    rows: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    bytes_read: int = 0
    fetched: int = 0                   # samples fetched, the lookback's included
    seconds: float = 0.0
    carry_in: Carry | None = None      # the alert states this window continues (then it has no lookback)
    carry_out: Carry | None = None     # the alert states at the window's end, once it ran
    pushdown: Pushdown = field(default_factory=Pushdown)    # the query sent, when it filters on the server


@dataclass
class Output:
    """One file, table or service written by the run."""

    target: str
    type: str
    path: str                 # file or database path; a service's URL
    table: str | None
    rows: int
    kind: str = "file"
    unit: str = "rows"        # what `rows` counts: rows, episodes, alerts (alertmanager) or samples (write-back)
    files: int | None = None  # a partitioned dataset (path is its root): the files this run added
    skipped: bool = False     # a file left unwritten: no rows this run (skip_empty)


@dataclass
class RunReport:
    """Everything `apply` did; `ok` is False when some rule failed."""

    run: dict[str, Any]
    rules: list[RuleReport]
    outputs: list[Output] = field(default_factory=list)
    tables: dict[tuple[str, str], pa.Table] = field(default_factory=dict)   # (rule, target) -> rows

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.rules)

    @property
    def failed(self) -> list[RuleReport]:
        return [r for r in self.rules if r.status == "failed"]


def apply(ruleset: RuleSet, options: ApplyOptions) -> RunReport:
    """Run the selected rules and write their targets; a failing rule never stops the others."""
    log = options.log or (lambda _m: None)
    now = datetime.now(UTC)
    to_ms = options.to_ms if options.to_ms is not None else int(now.timestamp() * 1000)
    if ruleset.prometheus_files:
        listed = ", ".join(ruleset.prometheus_files[:3]) + (" and more" if len(ruleset.prometheus_files) > 3 else "")
        raise UsageError(f"{listed}: Prometheus rule files with no route for their rows; add a vmrules file "
                         "that routes them: prometheus_rules: [{files: [alerts/*.yml], route: [{to: TARGET}]}] "
                         "(`vmrules plan` runs them as they are)")
    rules = _select(ruleset, options.rules, options.shard)
    sources = {r.name: rule_datasource(r, options.datasource) for r in rules}
    check_variables(rules, sources, ruleset.targets, allowed_env(options))
    if options.progress is not None:
        options.progress.total = len(rules)
    run = new_run(now)

    def planned(state: State | None) -> RunReport:
        reports = []
        for rule in rules:
            carry = (state.carries if state is not None else options.carry or {}).get(rule.name)
            window = _window(rule, options, to_ms, state)
            if carry is not None and carry.continues(rule.state_fingerprint(), window.first_ms, rule.step_ms):
                window = replace(window, lookback_ms=0)
            else:
                carry = None
            rep = _plan(rule, ruleset, sources[rule.name], window, run, options)
            rep.carry_in = carry
            reports.append(rep)
        _check_shared_paths(reports)
        if options.shard is not None and not options.incremental:
            _check_other_shards(ruleset, rules, reports, run, options, to_ms)
        return RunReport(run, reports)

    if options.dry_run:
        return planned(_load_state(options.output_dir) if options.incremental else None)
    with run_lock(options.output_dir, options.notice or log):
        state = None
        if options.incremental:
            state = _load_state(options.output_dir)
            state.recover(log)           # a commit a killed run journaled is finished first
        with scratch.space(options.output_dir, run["id"], log):     # and what killed runs left goes
            report = planned(state)
            if state is not None:
                state.begin({r.name: r.window.start_ms for r in report.rules
                             if r.window.points and not r.window.instant})
            _execute(rules, ruleset, sources, report, options, log, state)
    return report


def _load_state(output_dir: str) -> State:
    try:
        return State.load(output_dir)
    except StateError as exc:
        raise UsageError(str(exc)) from None


def _window(rule: Rule, options: ApplyOptions, to_ms: int, state: State | None) -> Window:
    """The rule's window, with the lookback its alert states need.

    Incremental: ending `lag` before `to`, starting right after the rule's watermark
    however far back it is (a pause longer than `range` loses nothing); the first
    run of a rule takes its `range`.
    """
    lookback = rule.warmup_ms
    if not options.incremental:
        return rule_window(rule, options.from_ms, to_ms)
    end = to_ms - options.lag_ms
    mark = state.watermarks.get(rule.name) if state is not None else None
    step = rule.step_ms
    if rule.instant:
        end = end // step * step
        if mark is None or end > mark:
            return Window(end, end, step, instant=True, lookback_ms=lookback)
        return Window(end + step, end, step)
    w = rule_window(rule, options.from_ms, end)
    first = state.firsts.get(rule.name) if state is not None else None
    if mark is None and first is not None and options.from_ms is None:   # a first run that did not finish
        mark = first - step
    if mark is not None:
        after = (mark // step + 1) * step
        w = Window(after if options.from_ms is None else max(after, w.start_ms), w.end_ms, step)
    return replace(w, lookback_ms=lookback)


def _execute(rules: list[Rule], ruleset: RuleSet, sources: dict[str, Datasource], report: RunReport,
             options: ApplyOptions, log: Log, state: State | None) -> None:
    by_name = {r.name: r for r in rules}

    def one(rep: RuleReport) -> RuleOutputs | None:
        out = _run_rule(by_name[rep.name], rep, sources[rep.name], ruleset, report, options, log)
        if options.progress is not None:
            options.progress.rule_done()
        return out

    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        outputs = list(pool.map(one, report.rules))
    _finish_files(report, [o for o in outputs if o is not None], log, state, options.carry, options.written)


def _select(ruleset: RuleSet, names: Sequence[str], shard: tuple[int, int] | None = None) -> list[Rule]:
    rules = list(ruleset.rules)
    if names:
        known = {r.name for r in ruleset.rules}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"no rule named {', '.join(unknown)}; rules: {', '.join(sorted(known)) or 'none'}")
        rules = [r for r in rules if r.name in set(names)]
    if shard is not None:
        rules = [r for r in rules if shard_of(r.name, shard[1]) == shard[0]]
    return rules


def shard_of(name: str, shards: int) -> int:
    """The shard (0..shards-1) a rule belongs to: a hash of its name, the same on every machine and run."""
    return zlib.crc32(name.encode()) % shards


def allowed_env(options: ApplyOptions) -> Env:
    """The environment rule files may read; a VMRULES_ALLOW_ENV that cannot be read is a usage error."""
    try:
        return rule_env(options.env, options.allow_env)
    except HttpError as exc:
        raise UsageError(str(exc)) from None


def rule_datasource(rule: Rule, override: str | None) -> Datasource:
    if override:
        if why := url_problem(override):
            raise UsageError(f"--datasource {why}")
        base = rule.datasource or Datasource(url=override)
        return replace(base, url=normalize_url(override))
    if rule.datasource is None:
        raise UsageError(f"rule {rule.name} has no datasource: add `datasource: {{url: ...}}` to its file "
                         "or pass --datasource URL")
    return rule.datasource


def new_run(now: datetime, tag: str | None = None) -> dict[str, Any]:
    """What templates see as `run` (its window's `from` and `to` are added per rule)."""
    return {"id": f"{now:%Y%m%d_%H%M%S}_{tag or uuid.uuid4().hex[:6]}", "stamp": f"{now:%Y%m%d_%H%M%S}",
            "started_at": format_time_ms(int(now.timestamp() * 1000))}


def destination(rule: Rule, target: Target, run: dict[str, Any], window: Window, output_dir: str,
                datasource: str = "") -> Destination:
    """Where one target of one rule writes in a window: its templates rendered, its path confined."""
    ctx = rule_template_context(rule, {**run, "from": format_time_ms(window.start_ms),
                                       "to": format_time_ms(window.end_ms)}, target)
    ctx["rule"]["datasource"] = datasource
    kind = kind_of(target.type)
    if kind == "service":
        where = redact_url(str(target.options.get("url", "")))
        if "metric" in target.options:
            where += f" as {render(target.options['metric'], ctx)}"
        return Destination(target, kind, where, context=ctx)
    if kind == "database" and "dsn" in target.options:     # a server: its DSN, shown without the password
        server = check_table_name(render(target.options["table"], ctx), qualified=True)
        return Destination(target, kind, redact_dsn(str(target.options["dsn"])), server, ctx)
    path = confine(output_dir, render(target.options["path"], ctx))
    table = check_table_name(render(target.options["table"], ctx)) if kind == "database" else None
    return Destination(target, kind, path, table, ctx)


def _plan(rule: Rule, ruleset: RuleSet, ds: Datasource, window: Window, run: dict[str, Any],
          options: ApplyOptions) -> RuleReport:
    rep = RuleReport(rule.name, window, rule.query, ds.url if ds.is_file else redact_url(ds.url))
    off = options.no_pushdown or ("--report needs every sample" if options.charts is not None else None)
    rep.pushdown = decide(rule, ruleset.targets, ds.dialect, ds.is_file, off)
    try:
        for name in dict.fromkeys(n for route in rule.routes for n in route.to):
            rep.destinations.append(destination(rule, ruleset.targets[name], run, window, options.output_dir,
                                                rep.datasource))
    except (TemplateError, KeyError, PluginError) as exc:
        rep.status, rep.error = "failed", f"target paths: {exc}"
    return rep


def unit_of(target: Target) -> str:
    """What a target's count counts."""
    return {"alertmanager": "alerts", "victoriametrics": "samples"}.get(
        target.type, "episodes" if target.shape == "episodes" else "rows")


def _check_shared_paths(reports: list[RuleReport]) -> None:
    """Two different targets may not write the same file (rules of one target may share it)."""
    owner: dict[str, str] = {}
    for rep in reports:
        for d in rep.destinations:
            if d.kind != "file":
                continue
            first = owner.setdefault(d.path, d.target.name)
            if first != d.target.name:
                raise UsageError(f"targets {first} and {d.target.name} both write {d.path}")
    roots = {path: name for rep in reports for d in rep.destinations if d.kind == "file" and d.target.partition_by
             for path, name in [(d.path, d.target.name)]}
    for path, name in owner.items():           # a dataset's folder is its own: readers take every file in it
        for root, dataset in roots.items():
            if path != root and os.path.commonpath([root, path]) == root:
                raise UsageError(f"target {name} writes {path}, inside the folder of target {dataset}'s dataset "
                                 f"({root}), whose readers would take it for a part of it: give it another path")


def _check_other_shards(ruleset: RuleSet, rules: list[Rule], reports: list[RuleReport], run: dict[str, Any],
                        options: ApplyOptions, to_ms: int) -> None:
    """A file that rules of another shard write too would be replaced by each shard's run: refuse it.

    (Incremental runs add to files, so shards may share them there.)"""
    assert options.shard is not None
    shards = options.shard[1]
    mine = {d.path: rep.name for rep in reports for d in rep.destinations if d.kind == "file"}
    chosen = {r.name for r in rules}
    for rule in ruleset.rules:
        if rule.name in chosen:
            continue
        rep = _plan(rule, ruleset, Datasource(url=""), rule_window(rule, options.from_ms, to_ms), run, options)
        for d in rep.destinations:
            if d.kind == "file" and d.path in mine and not d.target.partition_by:   # a dataset only gains files
                raise UsageError(f"target {d.target.name} renders {d.path} for rule {mine[d.path]} of this shard and "
                                 f"for rule {rule.name} of shard {shard_of(rule.name, shards)}/{shards}: one shard's "
                                 "run would replace the rows the other wrote; put {{ rule.name }} in the path, or "
                                 "run the shards with --incremental, which adds to a file instead of replacing it")


def _run_rule(rule: Rule, rep: RuleReport, ds: Datasource, ruleset: RuleSet, report: RunReport,
              options: ApplyOptions, log: Log) -> RuleOutputs | None:
    """Fetch, evaluate and write one rule, batch by batch; on any failure nothing of it remains."""
    if rep.status == "failed":
        return None
    if options.incremental and not rep.window.points:     # nothing new since the last run
        rep.status = "ok"
        return None
    started = time.monotonic()
    out = None
    log(f"rule {rule.name}: pushdown {rep.pushdown.describe()}")
    try:
        after = _table_watermarks(rule, rep, rule_env(options.env, options.allow_env)) if options.incremental else {}
        for batch, ev, state in evaluated(rule, ds, rep.window, ruleset.targets, options, log, after, rep.carry_in,
                                          rep.pushdown.query):
            if out is None:
                from vmrules.delivery.outputs import RuleOutputs
                out = RuleOutputs(rule.name, rep.destinations, report.run["id"],
                                  rule_env(options.env, options.allow_env), log, rule.step_ms,
                                  options.keep_tables, _watermark(rep.window) if options.incremental else None,
                                  options.output_dir)
            rep.requests += batch.requests
            rep.bytes_read += batch.bytes_read
            rep.fetched += batch.samples
            rep.counts.add(ev.counts)
            rep.counts.series = len(state.seen)       # each series once, however many batches it spans
            if rep.pushdown.on:
                rep.counts.unknown = UNKNOWN_COUNTS
            out.write(ev)
        assert out is not None and state is not None
        if any(d.target.shape == "episodes" for d in rep.destinations):
            out.write(_episodes_at_end(rule, rep, state, ruleset.targets, options))
        out.finish()
        rep.status = "ok"
        rep.carry_out = _carry_out(rule, rep.window, state)
        rep.rows = dict(out.rows)
        if out.tables:
            import pyarrow as pa
            for name, tables in out.tables.items():
                report.tables[(rule.name, name)] = pa.concat_tables(tables, promote_options="permissive")
        return out
    except FetchError as exc:
        rep.status, rep.error = "failed", scrub(f"datasource {rep.datasource}: {exc}")
    except RuleError as exc:
        rep.status, rep.error = "failed", scrub(exc.message)
    except Exception as exc:  # noqa: BLE001 - one rule's failure must never stop the others
        rep.status, rep.error = "failed", scrub(f"{type(exc).__name__}: {exc}")
    finally:
        rep.seconds = time.monotonic() - started
    if out is not None:
        out.abort()
    return None


def _episodes_at_end(rule: Rule, rep: RuleReport, state: EvalState, targets: Mapping[str, Target],
                     options: ApplyOptions) -> Evaluation:
    """Episodes that ended by the window's end, and the open ones for the targets that take them now:
    databases (updated as they go on) and services (Alertmanager) always, files only at the end of a whole run."""
    from vmrules.evaluate.rows import finish_episodes

    files_too = options.open_episodes and not options.incremental
    now = [d.target.name for d in rep.destinations if d.kind != "file" or files_too]
    w = rep.window
    return finish_episodes(rule, state, w.end_ms, w.first_ms if w.lookback_ms else None, targets, now)


def _carry_out(rule: Rule, window: Window, state: EvalState) -> Carry | None:
    """The alert states to hand to the window that continues this one (None: the rule keeps none)."""
    if not window.points or not (state.open or state.carried or any(t.stateful for t in rule.thresholds)):
        return None
    state.forget_before(window.end_ms, rule.step_ms, [t.keep_firing_ms for t in rule.thresholds])
    return Carry(rule.state_fingerprint(), window.end_ms, state.to_doc())


def _watermark(window: Window) -> int | None:
    """What a rule's watermark becomes once this window is delivered (None: the window is empty)."""
    return window.end_ms if window.points else None


def _table_watermarks(rule: Rule, rep: RuleReport, env: Env) -> dict[str, int]:
    """Per database target, the last point its table already holds (committed by a run killed before its state)."""
    marks = {}
    for d in rep.destinations:
        if d.kind == "database" and d.table is not None:
            read = get_target(d.target.type).watermark
            if read is None:
                continue
            try:
                mark = read(d.path, d.table, rule.name, d.target, env)
            except VmrulesError as exc:
                raise RuleError(rule.name, f"target {d.target.name}: table {d.table}: {exc}") from None
            if mark is not None:
                marks[d.target.name] = mark
    return marks


def evaluated(rule: Rule, ds: Datasource, window: Window, targets: Mapping[str, Target], options: ApplyOptions,
              log: Log, after: Mapping[str, int] | None = None, carry: Carry | None = None,
              query: str | None = None) -> Iterator[tuple[QueryResult, Evaluation, EvalState]]:
    """The rule's batches as they arrive, each evaluated (the state carries series and alert states across
    them, starting from `carry`); the progress bar and the report's charts are told of each.
    Samples of the lookback feed the alert states only. `query`: sent instead of the rule's (pushdown)."""
    state = None
    emit_from = window.first_ms if window.lookback_ms else None
    for batch in rule_batches(rule, ds, window, options, log, query):
        if state is None:      # pyarrow loads once the first request is out, while the answer streams in
            from vmrules.evaluate.rows import EvalState, evaluate
            state = _carried_state(rule, carry) if carry is not None else EvalState()
        ev = evaluate(rule, batch, targets, state, after, emit_from)
        if options.progress is not None:
            options.progress.batch(batch.requests, batch.samples)
        if options.charts is not None:
            options.charts.add(rule.name, ev.table)
        yield batch, ev, state


def _carried_state(rule: Rule, carry: Carry) -> EvalState:
    from vmrules.evaluate.rows import EvalState

    try:
        return EvalState.from_doc(carry.state)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise RuleError(rule.name, f"its alert state in the incremental state file cannot be read ({exc}); "
                        "move the file away to start afresh") from None


def rule_batches(rule: Rule, ds: Datasource, window: Window, options: ApplyOptions, log: Log,
                 query: str | None = None) -> Iterator[QueryResult]:
    """The rule's samples in batches of complete series (at least one batch, maybe empty); `query` replaces
    the rule's."""
    if window.points == 0:
        yield QueryResult.empty()
        return
    source = open_source(ds, rule_env(options.env, options.allow_env), log)
    try:
        for part in window.fetches():
            yield from source.batches(query or rule.query, part)
    finally:
        source.close()


def _finish_files(report: RunReport, outputs: list[RuleOutputs], log: Log, state: State | None,
                  carries: dict[str, Carry] | None, written: set[str] | None) -> None:
    """Put every file in place from the parts of the rules that succeeded; move watermarks; list all outputs.

    Incremental runs (and later chunks of a backfill) add to a file an earlier one wrote.
    Incremental runs commit files and watermarks together (journaled in the state):
    if any file cannot be prepared, no file is written and no rule that writes files moves on.
    """
    from vmrules.delivery.outputs import commit, prepare
    from vmrules.delivery.state import remove_files

    by_final: dict[str, list[Part]] = {}
    for out in outputs:
        for part in out.parts:
            by_final.setdefault(part.final, []).append(part)
    reps = {r.name: r for r in report.rules}
    renames, files, skipped = [], [], []
    for final, parts in sorted(by_final.items()):
        t = parts[0].target
        if not any(p.rows for p in parts) and t.options.get("skip_empty", state is not None):
            remove_files(p.path for p in parts)
            skipped.append(Output(t.name, t.type, final, None, 0, "file", unit_of(t), skipped=True))
            continue
        keep = state is not None or (written is not None and final in written)
        ready, rows, problems = prepare(parts, keep_existing=keep)
        for p in parts:
            if problems:
                reps[p.rule].status, reps[p.rule].error = "failed", problems[0]
        if not problems:
            t = parts[0].target
            renames += ready
            files.append(Output(t.name, t.type, final, None, rows, "file", unit_of(t),
                                len(ready) if t.partition_by else None))
    if state is not None and len(files) + len(skipped) < len(by_final):
        remove_files(r.ready for r in renames)
        renames, files, skipped = [], [], []
        for p in (p for parts in by_final.values() for p in parts):
            if reps[p.rule].status == "ok":
                reps[p.rule].status, reps[p.rule].error = "failed", "files not written: another file failed"
    try:
        moved = [r for r in report.rules if r.status == "ok" and _watermark(r.window) is not None]
        if state is None:
            commit(renames, log)
        else:
            state.commit(renames, {r.name: m for r in moved if (m := _watermark(r.window)) is not None}, log,
                         {r.name: r.carry_out for r in moved})
    except OSError as exc:      # a disk error while renaming: the journal lets the next run finish it
        for p in (p for parts in by_final.values() for p in parts):
            reps[p.rule].status, reps[p.rule].error = "failed", f"files not put in place: {exc}"
        files = []
    report.outputs += files + skipped
    if written is not None:
        written.update(f.path for f in files)
    if carries is not None:
        for r in report.rules:
            if r.status == "ok" and r.carry_out is not None:
                carries[r.name] = r.carry_out
    tables: dict[tuple[str, str, str | None], Output] = {}
    for rep in report.rules:
        if rep.status != "ok":
            continue
        for d in rep.destinations:
            if d.kind != "file" and d.target.name in rep.rows:
                entry = tables.setdefault((d.target.name, d.path, d.table),
                                          Output(d.target.name, d.target.type, d.path, d.table, 0, d.kind,
                                                 unit_of(d.target)))
                entry.rows += rep.rows[d.target.name]
    report.outputs += tables.values()
