"""The `vmrules` command: parse options, call one library function, print the result."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

# Measured (bench/README.md): Arrow's default mimalloc pool keeps the memory of freed
# batches, the system allocator gives it back (W1 peak 265 -> 194-201 MiB, no slower).
# Arrow reads this once, when it is first imported, so it is set before anything imports it.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import click  # noqa: E402

from vmrules import __version__
from vmrules.config.schema import schema_text
from vmrules.config.validate import load_ruleset, validate_paths
from vmrules.delivery.lock import writable_folder
from vmrules.durations import format_time_ms, parse_duration_ms, parse_time_ms
from vmrules.errors import ConfigError, UsageError, VmrulesError
from vmrules.model import RuleSet
from vmrules.net.http import ALLOW_ENV, parse_allow_env, redact_url, scrub
from vmrules.render.text import FORMATS, format_problems

DEFAULT_PATHS = ("rules/",)
_ALLOW_ENV_OPTION = click.option(
    "--allow-env", "allow_env", multiple=True, metavar="NAME[=URL]",
    help="Let rule files read this environment variable, sent only to URLs under URL when given "
         "(repeatable; adds to $VMRULES_ALLOW_ENV). Rule files read no variable unless allowed.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmrules")
def main() -> None:
    """Declarative YAML rules for VictoriaMetrics: validate rule files, apply them, export the rows."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: path:line:col: error: message; json: one document; github: workflow annotations.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too: the lints of rules that cannot do "
              "what they say.")
@click.option("--online", is_flag=True, help="Also ask each rule's datasource whether the selectors of its query have "
              "series in the rule's window (reads the secrets the files name); a selector with none is a warning.")
@click.option("--datasource", metavar="URL", help="With --online: ask this datasource instead of the rules' own.")
@_ALLOW_ENV_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Also say what could not be checked (MetricsQL beyond PromQL).")
@click.option("-q", "--quiet", is_flag=True, help="Print problems only, no closing line.")
def validate(paths: tuple[str, ...], fmt: str, strict: bool, online: bool, datasource: str | None,
             allow_env: tuple[str, ...], verbose: bool, quiet: bool) -> None:
    """Check rule files (default: rules/) without reading secrets or touching the network.

    Queries are parsed offline in each datasource's dialect. Exit 0 when every file is valid (warnings
    allowed unless --strict), 1 when any problem is found, 2 on a wrong command line.
    """
    if datasource and not online:
        raise click.UsageError("--datasource is for --online (validate is offline otherwise)")
    try:
        result = validate_paths(paths or DEFAULT_PATHS)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    if online and result.ruleset is not None:
        from vmrules.commands.online import check_series

        try:
            online_warnings = check_series(result.ruleset, allow=_allow_env(allow_env), datasource=datasource)
        except UsageError as exc:              # a --datasource vmrules cannot ask, an allowed variable not set
            raise click.UsageError(str(exc)) from None
        result.warnings = sorted(result.warnings + online_warnings)
    shown = sorted(result.problems + result.warnings + (result.notes if verbose else []))
    out = format_problems(shown, fmt)
    if out:
        click.echo(out)
    failed = not result.ok or strict and bool(result.warnings)
    if fmt == "text" and not quiet:
        n = len(result.files)
        parts = [f"{len(result.problems)} problem(s)"] if result.problems else []
        parts += [f"{len(result.warnings)} warning(s)"] if result.warnings else []
        click.echo(f"{n} file(s), {', '.join(parts) or 'valid'}", err=True)
    sys.exit(1 if failed else 0)


@main.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--junit", metavar="FILE", type=click.Path(dir_okay=False), help="Also write the results as JUnit XML.")
@click.option("--coverage", is_flag=True, help="List the rules, thresholds and routes no test exercised.")
@click.option("-q", "--quiet", is_flag=True, help="Print failures only.")
def test_cmd(paths: tuple[str, ...], junit: str | None, coverage: bool, quiet: bool) -> None:
    """Run the rule unit tests (`tests:` in rule files, default: rules/) offline.

    Exit 0 when every test passes, 1 when any fails, 2 when the files are invalid.
    """
    from vmrules.commands.test import format_results, junit_xml, run_tests
    from vmrules.delivery.atomic import atomic_path

    ruleset = _load(paths)
    results, cov = run_tests(ruleset)
    if not results:
        click.echo(f"no tests found in {', '.join(paths or DEFAULT_PATHS)} (add `tests:` to a rule file)", err=True)
    shown = results if not quiet else [r for r in results if not r.ok]
    if shown or not quiet:
        click.echo(format_results(shown, cov if coverage else None))
    if junit:
        with atomic_path(junit) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(junit_xml(results))
    sys.exit(0 if all(r.ok for r in results) else 1)


@main.command("query")
@click.argument("exprs", nargs=-1, required=True, metavar="EXPR...")
@click.option("--datasource", metavar="URL", envvar="VMRULES_DATASOURCE", required=True,
              help="Prometheus API prefix (or file:PATH); default $VMRULES_DATASOURCE.")
@click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="Request header (repeatable); ${VAR} is read from the environment.")
@click.option("--from", "from_", metavar="T", help="Window start: RFC 3339, unix seconds, now, now-1h.")
@click.option("--to", metavar="T", help="Window end (default now).")
@click.option("--since", metavar="DUR", help="Window of this length ending at --to (default 1h).")
@click.option("--step", default="1m", show_default=True, metavar="DUR", help="Resolution of the range query.")
@click.option("--instant", is_flag=True, help="One instant query at --to instead of a range.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl", "parquet"]), default="table",
              show_default=True, help="table: a readable preview; the others: every row, as the targets write them.")
@click.option("-o", "--output", metavar="FILE", type=click.Path(),
              help="Write to FILE (atomically) instead of standard output; needed for parquet.")
@click.option("--partition-by", "partition_by", multiple=True, metavar="KEY",
              help="With --format parquet: -o names a dataset's folder, and the rows are added to it in "
                   "KEY=VALUE/ folders (repeatable: date, hour, rule, metric, severity, alert or a label).")
@click.option("-v", "--verbose", is_flag=True, help="Log each request (never a credential).")
def query_cmd(exprs: tuple[str, ...], datasource: str, headers: tuple[str, ...], from_: str | None, to: str | None,
              since: str | None, step: str, instant: bool, fmt: str, output: str | None,
              partition_by: tuple[str, ...], verbose: bool) -> None:
    """Fetch queries without rule files, through the same fast path, as rows of the usual table.

    Exit 0 on success, 1 when a query fails, 2 on a wrong command line.
    """
    from vmrules.commands.query import run_query
    from vmrules.sources.result import FetchError

    if fmt == "parquet" and not output:
        raise click.UsageError("--format parquet needs -o FILE" + (" (the dataset's folder)" if partition_by else ""))
    if partition_by and fmt != "parquet":
        raise click.UsageError("--partition-by writes a Parquet dataset: add --format parquet")
    if output and os.path.isdir(output) and not partition_by:
        raise click.UsageError(f"-o {output} is a folder; a folder takes a dataset: add --partition-by")
    if output:
        _writable("-o", output)
    from_ms, to_ms = _window_options(from_, to, since or (None if from_ else "1h"))
    header_map = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.UsageError(f"--header {h!r}: expected 'Name: value'")
        header_map[name.strip()] = value.strip()
    def log(message: str) -> None:
        click.echo(f"vmrules: {message}", err=True)

    try:
        text = run_query(list(exprs), datasource, header_map, from_ms, to_ms, _duration("--step", step), instant,
                         fmt, output, log if verbose else None, sys.stdout.buffer, partition_by)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except FetchError as exc:
        click.echo(scrub(f"error: {exc}"), err=True)
        sys.exit(1)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    except (VmrulesError, ValueError) as exc:       # rows a dataset cannot take: nothing of them written
        click.echo(scrub(f"error: {output}: {exc}; nothing written"), err=True)
        sys.exit(1)
    if text:
        click.echo(text)


@main.command("convert")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def convert_cmd(files: tuple[str, ...]) -> None:
    """Print the alerting rules of Prometheus/vmalert rule files as vmrules rules (where the mapping is exact).

    Exit 0 when printed, 2 when a file is not a valid Prometheus rule file.
    """
    from vmrules.commands.convert import convert_files

    try:
        click.echo(convert_files(list(files)), nl=False)
    except ConfigError as exc:
        click.echo(format_problems(exc.problems), err=True)
        raise click.exceptions.Exit(2) from None


@main.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of rule files (for editors and other tools), with installed plugins' targets."""
    from vmrules.config.schema import schema
    from vmrules.targets.registry import target_plugins

    if target_plugins():
        click.echo(json.dumps(schema(), indent=2))
    else:
        click.echo(schema_text(), nl=False)


@main.command("targets")
def targets_cmd() -> None:
    """List the target types: built-in ones and those of installed plugins (entry points vmrules.targets)."""
    from vmrules.targets.registry import registry

    types = registry().values()
    width = max(len(t.name) for t in types)
    for t in types:
        click.echo(f"{t.name.ljust(width)}  {t.kind:<8}  {t.source:<12}  {t.description}")


@main.command("apply")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--datasource", metavar="URL",
              help="Override every rule's datasource url (file:PATH reads an export file).")
@click.option("--from", "from_", metavar="T", help="Window start: RFC 3339, unix seconds, now, now-1h.")
@click.option("--to", metavar="T", help="Window end (default now).")
@click.option("--since", metavar="DUR", help="Window of this length ending at --to, e.g. 6h.")
@click.option("--output-dir", default="exports", show_default=True, type=click.Path(file_okay=False),
              help="Where file targets and databases are written.")
@click.option("--rule", "rules", multiple=True, metavar="NAME", help="Only this rule (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the plan (windows, queries, rendered paths); write nothing.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64), help="Rules run at once.")
@click.option("--incremental", is_flag=True,
              help="Fetch only what came after the last run (watermarks in OUTPUT_DIR/.vmrules-state.json).")
@click.option("--lag", default="60s", show_default=True, metavar="DUR",
              help="Incremental: windows end this long before --to/now, so late samples are not missed.")
@click.option("--chunk", metavar="DUR", help="Run the window chunk by chunk (backfill), e.g. 1d; needs --from/--since.")
@click.option("--shard", metavar="I/N", help="Only the rules of shard I of N (0 <= I < N), by a hash of the rule name.")
@click.option("--report", "report_path", metavar="FILE.html", type=click.Path(dir_okay=False),
              help="Also write one self-contained HTML page: per rule a chart against its thresholds, and the numbers.")
@click.option("--metrics-file", metavar="FILE.prom", type=click.Path(dir_okay=False),
              help="Write the run's metrics (per rule: success, last success, duration, rows, alerts) there, "
                   "atomically, in the Prometheus text format, for node_exporter's textfile collector.")
@click.option("--push-metrics", "push_url", metavar="URL",
              help="Also POST those metrics to URL: VictoriaMetrics' /api/v1/import/prometheus or a "
                   "Pushgateway's /metrics/job/NAME.")
@_ALLOW_ENV_OPTION
@click.option("--no-pushdown", is_flag=True,
              help="Fetch every sample, even for rules whose rows are only alert rows (pushdown sends their "
                   "conditions to the server, which then sends only the samples that can alert).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every message and the summary as JSON lines on stderr, for log pipelines.")
@click.option("-v", "--verbose", is_flag=True, help="Log each request (never a credential).")
@click.option("-q", "--quiet", is_flag=True, help="No summary and no progress bar; errors only.")
def apply_cmd(paths: tuple[str, ...], datasource: str | None, from_: str | None, to: str | None, since: str | None,
              output_dir: str, rules: tuple[str, ...], dry_run: bool, concurrency: int, incremental: bool, lag: str,
              chunk: str | None, shard: str | None, report_path: str | None, metrics_file: str | None,
              push_url: str | None, allow_env: tuple[str, ...], no_pushdown: bool, log_format: str, verbose: bool,
              quiet: bool) -> None:
    """Run rules (default: rules/): fetch, filter, assign severities, route and export.

    Exit 0 when every rule ran, 1 when some rule failed (the others still ran),
    2 when the rule files or the command line are invalid (nothing fetched or written).
    """
    import gc

    from vmrules.commands.apply import ApplyOptions, apply
    from vmrules.render.text import empty_notes, format_plan, format_summary, json_events

    # Measured with py-spy on W1: the cyclic collector took ~19% of all samples, walking the
    # objects of the imported modules again and again. A run leaves no cycles behind (tested),
    # so the collector is frozen out of the modules and run rarely.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

    started = time.monotonic()
    from_ms, to_ms = _window_options(from_, to, since)
    if report_path:
        _writable("--report", report_path)
    if metrics_file:
        _writable("--metrics-file", metrics_file)
    if push_url and urllib.parse.urlsplit(push_url).scheme not in ("http", "https"):
        raise click.UsageError(f"--push-metrics {push_url}: expected an http:// or https:// URL")
    ruleset = _load(paths)
    as_json = log_format == "json"

    def say(message: str) -> None:
        if as_json:
            _json_line({"event": "log", "level": "info", "message": message})
        else:
            click.echo(scrub(f"vmrules: {message}"), err=True)

    options = ApplyOptions(output_dir=output_dir, datasource=datasource, from_ms=from_ms, to_ms=to_ms,
                           rules=rules, dry_run=dry_run, concurrency=concurrency, log=say if verbose else None,
                           notice=None if quiet else say, incremental=incremental, lag_ms=_duration("--lag", lag),
                           shard=_shard(shard) if shard else None, allow_env=_allow_env(allow_env),
                           no_pushdown="--no-pushdown" if no_pushdown else
                           "--report needs every sample" if report_path else None)
    if not (quiet or dry_run or chunk or as_json) and sys.stderr.isatty():
        from vmrules.render.progress import Progress
        options.progress = Progress(sys.stderr, 0)
    if report_path and not dry_run:
        from vmrules.render.html import Charts
        options.charts = Charts()
    with _running(options):
        if chunk:
            from vmrules.commands.backfill import backfill
            if options.to_ms is None:
                options.to_ms = int(time.time() * 1000)
            report = backfill(ruleset, options, _duration("--chunk", chunk), None if quiet or dry_run else _progress)
        else:
            report = apply(ruleset, options)
    if dry_run:
        click.echo(format_plan(report, output_dir))
        sys.exit(0 if report.ok else 1)
    if report_path:
        from vmrules.render.html import write_report
        with _writing(report_path):
            write_report(report_path, f"vmrules apply {report.run['id']}", f"{len(report.rules)} rule(s), "
                         f"{'all ran' if report.ok else f'{len(report.failed)} failed'}; exports in {output_dir}",
                         report.rules, ruleset, options.charts)
        if options.notice:
            options.notice(f"wrote the report {report_path}")
    monitored = _self_metrics(report, metrics_file, push_url, time.monotonic() - started,
                              options.notice or (lambda _m: None))
    if as_json:
        for event in json_events(report, output_dir):
            if event["event"] == "run" and monitored:      # its metrics were not written or pushed
                event["ok"] = False
            _json_line(event)
        for r in report.failed:
            _json_line({"event": "log", "level": "error", "rule": r.name, "message": r.error})
        for note in empty_notes(report):
            _json_line({"event": "log", "level": "warning", "message": note.removeprefix("note: ")})
        for problem in monitored:
            _json_line({"event": "log", "level": "error", "message": problem})
        sys.exit(0 if report.ok and not monitored else 1)
    if not quiet:
        click.echo(format_summary(report, output_dir))
        for note in empty_notes(report):
            click.echo(note, err=True)
    for r in report.failed:
        click.echo(f"error: rule {r.name}: {r.error}", err=True)
    for problem in monitored:
        click.echo(f"error: {problem}", err=True)
    sys.exit(0 if report.ok and not monitored else 1)


def _self_metrics(report: Any, path: str | None, url: str | None, seconds: float, say: Any) -> list[str]:
    """The run's metrics to a file and/or a URL; what could not be done (the run then exits 1)."""
    if not (path or url):
        return []
    from vmrules.delivery.atomic import atomic_path
    from vmrules.net.http import HttpError
    from vmrules.render.metrics import last_successes, prometheus_text, push

    previous: dict[str, float] = {}
    if path:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with open(path, encoding="utf-8") as f:
                previous = last_successes(f.read(1 << 20))
    text = prometheus_text(report, time.time(), seconds, previous)
    problems = []
    if path:
        try:
            with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            say(f"wrote the run's metrics to {path}")
        except OSError as exc:
            problems.append(f"--metrics-file {path}: cannot write it: {exc.strerror or exc}")
    if url:
        try:
            push(url, text)
            say(f"pushed the run's metrics to {redact_url(url)}")
        except HttpError as exc:
            problems.append(f"--push-metrics: not delivered: {exc}")
    return problems


@main.command("plan")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--datasource", metavar="URL", help="Override every rule's datasource url (file:PATH reads an export).")
@click.option("--from", "from_", metavar="T", help="Window start: RFC 3339, unix seconds, now, now-1h.")
@click.option("--to", metavar="T", help="Window end (default now).")
@click.option("--since", metavar="DUR", help="Window of this length ending at --to, e.g. 7d.")
@click.option("--rule", "rules", multiple=True, metavar="NAME", help="Only this rule (repeatable).")
@click.option("--base", metavar="GIT_REF", help="Also plan the rule files as they are at this git ref, and compare.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True,
              help="markdown: a table for a pull-request comment (with --base).")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64), help="Rules run at once.")
@click.option("--report", "report_path", metavar="FILE.html", type=click.Path(dir_okay=False),
              help="Also write one self-contained HTML page: per rule a chart against its thresholds, and the numbers.")
@_ALLOW_ENV_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log each request (never a credential).")
def plan_cmd(paths: tuple[str, ...], datasource: str | None, from_: str | None, to: str | None, since: str | None,
             rules: tuple[str, ...], base: str | None, fmt: str, concurrency: int, report_path: str | None,
             allow_env: tuple[str, ...], verbose: bool) -> None:
    """Fetch and evaluate rules (default: rules/) and print what each target would receive; write nothing.

    Exit 0 when every rule ran, 1 when some rule failed, 2 on invalid files or command line.
    """
    from vmrules.commands.apply import ApplyOptions
    from vmrules.commands.plan import as_json, diff, format_diff, format_text, plan, plan_base

    from_ms, to_ms = _window_options(from_, to, since)
    if report_path:
        _writable("--report", report_path)
    ruleset = _load(paths)
    options = ApplyOptions(datasource=datasource, from_ms=from_ms,
                           to_ms=to_ms if to_ms is not None else int(time.time() * 1000),   # one "now" for both
                           rules=rules, concurrency=concurrency, allow_env=_allow_env(allow_env),
                           log=(lambda m: click.echo(scrub(f"vmrules: {m}"), err=True)) if verbose else None)
    if sys.stderr.isatty():
        from vmrules.render.progress import Progress
        options.progress = Progress(sys.stderr, 0)
    if report_path:
        from vmrules.render.html import Charts
        options.charts = Charts()
    diffs, notes, base_charts, base_report = None, list[str](), None, None
    with _running(options):
        head = plan(ruleset, options)
        if base:
            if report_path:
                from vmrules.render.html import Charts
                base_charts = Charts()
            base_report, notes = plan_base(base, paths or DEFAULT_PATHS,
                                           replace(options, progress=None, charts=base_charts))
            diffs = diff(base_report, head)
    for note in notes:
        click.echo(f"vmrules: {note}", err=True)
    if report_path:
        from vmrules.render.html import Base, write_report
        then = None
        if base_charts is not None and base_report is not None:
            then = Base({r.name: r for r in base_report.ruleset.rules} if base_report.ruleset else {}, base_charts)
        with _writing(report_path):
            write_report(report_path, "vmrules plan" + (f", compared with the rules at {base}" if base else ""),
                         f"{len(head.rules)} rule(s) fetched and evaluated; no target written",
                         head.rules, ruleset, options.charts, then)
        click.echo(f"vmrules: wrote the report {report_path}", err=True)
    if fmt == "json":
        click.echo(as_json(head, diffs))
    elif diffs is not None:
        click.echo(format_diff(diffs, base or "", markdown=fmt == "markdown"))
        if fmt == "text":
            click.echo("")
            click.echo(format_text(head))
    else:
        click.echo(format_text(head))
    for r in head.rules:
        if r.status != "ok":
            click.echo(f"error: rule {r.name}: {r.error}", err=True)
    sys.exit(0 if head.ok else 1)


@contextlib.contextmanager
def _running(options: Any) -> Iterator[None]:
    """Around a library call: its UsageError becomes click's (exit 2); the progress bar is cleared."""
    try:
        yield
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        if options.progress is not None:
            options.progress.close()


def _json_line(record: dict[str, object]) -> None:
    """One structured log record on stderr, with the time it was written (never a credential)."""
    stamp = format_time_ms(int(time.time() * 1000))
    click.echo(scrub(json.dumps({"time": stamp, **record}, default=str)), err=True)


def _writable(option: str, path: str) -> None:
    """Refuse an output file whose folder cannot be written, before any work is done."""
    try:
        writable_folder(path)
    except OSError as exc:
        raise click.UsageError(f"{option} {path}: cannot write there: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:      # an error naming the file (exit 1), not a traceback
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


def _allow_env(items: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """$VMRULES_ALLOW_ENV and the --allow-env items: the variables rule files may read, and where they may go."""
    try:
        return parse_allow_env(os.environ.get(ALLOW_ENV, ""), *items)
    except ValueError as exc:
        raise click.UsageError(f"{ALLOW_ENV} or --allow-env: {exc}") from None


def _load(paths: tuple[str, ...]) -> RuleSet:
    """The rule set under `paths` (default rules/); invalid files print their problems and exit 2."""
    try:
        return load_ruleset(paths or DEFAULT_PATHS)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    except ConfigError as exc:
        click.echo(format_problems(exc.problems), err=True)
        raise click.exceptions.Exit(2) from None


def _duration(option: str, text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise click.UsageError(f"{option}: {exc}") from None


def _shard(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise click.UsageError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/3")
    return int(i), int(n)


def _progress(done: int, total: int, span: tuple[int, int], report: Any) -> None:
    """One line per chunk: a bar, the chunk's window, and how it went."""
    from vmrules.render.progress import bar

    failed = len(report.failed)
    rows = sum(sum(r.rows.values()) for r in report.rules)
    samples = sum(r.counts.samples for r in report.rules)
    seconds = max(max((r.seconds for r in report.rules), default=0.0), 1e-3)
    status = f"{failed} rule(s) failed" if failed else "ok"
    click.echo(f"vmrules: {bar(done, total, 20)} chunk {done}/{total} "
               f"{format_time_ms(span[0])} .. {format_time_ms(span[1])}: "
               f"{samples} samples ({samples / seconds:.0f}/s), {rows} rows, {status}", err=True)


def _window_options(from_: str | None, to: str | None, since: str | None) -> tuple[int | None, int | None]:
    now_ms = int(time.time() * 1000)
    try:
        to_ms = parse_time_ms(to, now_ms) if to else None
        if since and from_:
            raise click.UsageError("give either --since or --from, not both")
        if since:
            return (to_ms if to_ms is not None else now_ms) - parse_duration_ms(since), to_ms
        from_ms = parse_time_ms(from_, now_ms) if from_ else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if from_ms is not None and from_ms > (to_ms if to_ms is not None else now_ms):
        raise click.UsageError("--from is later than --to")
    return from_ms, to_ms


def run() -> None:
    """The `vmrules` program: the command, then an exit that skips the interpreter's teardown.

    Measured (bench/README.md, 2026-12-02): tearing down the modules a run imports (pyarrow, numpy,
    jinja2) took 59-68 ms after a W1 run of ~0.9 s. Everything the command wrote is closed and committed
    when it returns; what exiting still owes is done here: the exit handlers (logging, temporary
    folders) and flushing stdout and stderr. A thread still running, or output that cannot be
    flushed (a closed pipe), takes the ordinary exit, whose behaviour is Python's.
    """
    import atexit
    import threading

    try:
        main()                  # click's standalone mode always ends in SystemExit
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        if sys.stderr is not None:
            print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()     # noqa: SLF001 - the handlers Python would run next
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:          # None: started with the descriptor closed (`>&-`)
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code & 0xFF)
