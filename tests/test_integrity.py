"""Nothing lost, nothing duplicated: long pauses, first runs killed half-way, shards sharing files,
static labels that would merge series."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support import read
from tests.support.data import END_S, dataset
from tests.support.servers import FaultServer, Reply, VictoriaMetrics
from vmrules.cli import main
from vmrules.delivery.state import STATE_NAME, State

ROOT = Path(__file__).parent.parent
VMRULES = [sys.executable, "-m", "vmrules"]
TARGETS = ("targets:\n"
           "  db: {type: sqlite, path: s.db, table: t}\n"
           "  f: {type: csv, path: 'inc/{{ rule.name }}-{{ run.from }}.csv'}\n")


def run(folder: Path, out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "-q", *args])
    return res.exit_code, res.output


def csv_points(folder: Path) -> list[tuple[str, int]]:
    return sorted((r["labels"], r["timestamp"]) for f in sorted(folder.glob("*.csv")) for r in read.rows(str(f)))


def db_points(db: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(db)
    try:
        return sorted((lab, int(read._norm({"timestamp": ts})["timestamp"]))
                      for lab, ts in con.execute("SELECT labels, timestamp FROM t"))
    finally:
        con.close()


def test_a_pause_longer_than_the_range_loses_nothing(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + "rules: [{name: cpu, query: cpu_usage, range: 5m, "
                                            "route: [{to: [db, f]}]}]\n")
    out = tmp_path / "out"
    first_to = END_S - 3 * 3600
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(first_to))[0] == 0
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0   # 2h later
    want = sorted((lab, t) for lab in {lab for lab, _ in csv_points(out / "inc")}
                  for t in range(first_to - 300, END_S - 3600 + 1, 60))
    assert len(want) == 12 * 126
    assert csv_points(out / "inc") == want
    assert db_points(out / "s.db") == want


def test_a_first_run_killed_after_its_table_committed_is_fetched_again_from_its_start(tmp_path: Path) -> None:
    """SQLite committed, the files and the state did not: the next run starts where the first one did."""
    folder = file_rules(tmp_path, TARGETS + "rules: [{name: cpu, query: cpu_usage, range: 30m, "
                                            "route: [{to: [db, f]}]}]\n")
    out = tmp_path / "out"
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0
    state = json.loads((out / STATE_NAME).read_text())
    del state["rules"]["cpu"]                      # as if killed after the database commit, before the rest
    state["first_windows"] = {"cpu": (END_S - 3600 - 30 * 60) * 1000}
    (out / STATE_NAME).write_text(json.dumps(state))
    for f in (out / "inc").glob("*.csv"):
        f.unlink()
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3000))[0] == 0
    assert csv_points(out / "inc") == db_points(out / "s.db")      # the CSV got the first window too
    assert len(db_points(out / "s.db")) == 12 * (31 + 10)


def test_the_first_window_is_recorded_before_anything_is_fetched(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + "rules: [{name: cpu, query: no_such_series, range: 30m, route: [{to: f}],"
                                            " datasource: {url: 'http://127.0.0.1:9', timeout: 1s}}]\n")
    out = tmp_path / "out"
    code, _ = run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))
    assert code == 1
    assert State.load(str(out)).firsts == {"cpu": (END_S - 3600 - 30 * 60) * 1000}
    assert "cpu" not in State.load(str(out)).watermarks


def test_shards_never_replace_each_others_files(tmp_path: Path) -> None:
    body = "".join(f"  - {{name: r{i}, query: cpu_usage, route: [{{to: all}}]}}\n" for i in range(6))
    folder = file_rules(tmp_path, "targets: {all: {type: csv, path: all.csv}}\nrules:\n" + body)
    out = tmp_path / "out"
    window = ["--from", str(END_S - 600), "--to", str(END_S)]
    code, output = run(folder, out, *window, "--shard", "0/2")
    assert code == 2 and "all.csv" in output and "of shard 1/2" in output and "--incremental" in output
    assert not (out / "all.csv").exists()
    for shard in ("0/2", "1/2"):                   # incremental shards add to the file they share
        code, output = run(folder, out, *window, "--shard", shard, "--incremental", "--lag", "0s")
        assert code == 0, output
    rules = sorted({r["rule"] for r in read.rows(str(out / "all.csv"))})
    assert rules == [f"r{i}" for i in range(6)]
    assert len(read.rows(str(out / "all.csv"))) == 6 * 12 * 11


def test_static_labels_that_merge_series_fail_the_rule(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + "rules:\n"
                        "  - {name: merged, query: cpu_usage, labels: {instance: all}, route: [{to: [db, f]}]}\n"
                        "  - {name: fine, query: cpu_usage, labels: {team: ops}, route: [{to: f}]}\n")
    out = tmp_path / "out"
    code, output = run(folder, out, "--from", str(END_S - 600), "--to", str(END_S))
    assert code == 1
    assert "rule merged: the static labels {'instance': 'all'} make the series" in output
    assert "the same series" in output
    assert not (out / "s.db").exists() and {f.name.split("-")[0] for f in (out / "inc").glob("*.csv")} == {"fine"}


# -- every target type, answers of many batches, runs killed at random moments -------------------
def test_every_target_exactly_or_at_least_once_through_killed_runs(vm: VictoriaMetrics, tmp_path: Path) -> None:
    """Each run's answer comes in several requests (max_points_per_series: 4), so every sink gets many
    batches whose dictionaries differ; about half the runs are SIGKILLed. Files, a partitioned dataset and
    tables then hold each sample once; the webhook and the write-back got each at least once."""
    hook = FaultServer(lambda seen: Reply(200, b"ok"))
    back = VictoriaMetrics(str(tmp_path))
    try:
        folder = tmp_path / "rules"
        folder.mkdir()
        (folder / "r.yaml").write_text(f"""version: 1
datasource: {{url: '{vm.url}', max_points_per_series: 4}}
targets:
  c: {{type: csv, path: 'c/{{{{ run.from }}}}.csv'}}
  j: {{type: json, path: 'j/{{{{ run.from }}}}.json'}}
  l: {{type: jsonl, path: 'l/{{{{ run.from }}}}.jsonl'}}
  p: {{type: parquet, path: 'p/{{{{ run.from }}}}.parquet'}}
  d: {{type: parquet, path: d, partition_by: [date, instance, severity]}}
  a: {{type: sqlite, path: s.db, table: appended}}
  u: {{type: sqlite, path: s.db, table: upserted, mode: upsert}}
  h: {{type: webhook, url: '{hook.url}/h', batch_size: 50}}
  v: {{type: victoriametrics, url: '{back.url}', metric: copy}}
rules:
  - name: cpu
    query: cpu_usage
    range: 20m
    step: 1m
    thresholds: [{{severity: hot, above: 70, for: 3m}}, {{severity: warm, above: 50}}]
    route: [{{to: [c, j, l, p, d, a, u, h, v]}}]
""")
        out = tmp_path / "out"
        rnd = random.Random(11)
        cmd = [*VMRULES, "apply", str(folder), "--output-dir", str(out), "-q", "--incremental", "--lag", "0s", "--to"]
        to, last, killed, took = END_S - 3 * 3600, END_S - 3600, 0, 0.0
        first = to - 20 * 60
        for i in range(20):                         # bounded: 20 runs, every other one killed
            started = time.monotonic()
            proc = subprocess.Popen([*cmd, str(to)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
            if i % 2:
                time.sleep(rnd.uniform(0.2, 0.9) * took)    # the last whole run's time: most of it is start-up
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    killed += 1
            _, err = proc.communicate(timeout=120)
            assert proc.returncode in (0, -signal.SIGKILL), err
            if not i % 2:
                took = time.monotonic() - started
            to = min(last, to + rnd.randint(4, 15) * 60)
        subprocess.run([*cmd, str(last)], cwd=ROOT, check=True, timeout=120)
        assert killed >= 5
        want = sorted((lab, t) for lab in {json.dumps({k: v for k, v in line["metric"].items() if k != "__name__"},
                                                      sort_keys=True, separators=(",", ":")) for line in dataset()
                                           if line["metric"]["__name__"] == "cpu_usage"}
                      for t in range(first, last + 1, 60))
        for kind in ("c", "j", "l", "p"):
            got = sorted((r["labels"], r["timestamp"]) for f in sorted((out / kind).iterdir())
                         for r in read.rows(str(f)))
            assert got == want, kind
        assert read.dataset_points(out / "d") == want
        for table in ("appended", "upserted"):
            assert sorted((r["labels"], r["timestamp"]) for r in read.rows(str(out / "s.db"), table)) == want
        delivered = {(r["labels"], int(read._norm(r)["timestamp"])) for s in hook.seen
                     for r in json.loads(s.body)["rows"]}
        assert delivered == set(want)                              # at least once
        urllib.request.urlopen(back.url + "/internal/force_flush").read()
        q = urllib.parse.urlencode({"match[]": "copy", "start": first, "end": last})
        stored = set()
        for line in urllib.request.urlopen(f"{back.url}/api/v1/export?{q}", timeout=30).read().splitlines():
            doc = json.loads(line)
            lab = json.dumps({k: v for k, v in doc["metric"].items() if k != "__name__"}, sort_keys=True,
                             separators=(",", ":"))
            stored |= {(lab, t // 1000) for t in doc["timestamps"]}
        assert stored == set(want)
    finally:
        hook.stop()
        back.stop()


def test_a_damaged_alert_state_fails_its_rule_clearly(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + "rules: [{name: cpu, query: cpu_usage, range: 30m, "
                                            "thresholds: [{above: 50, for: 5m}], route: [{to: [db, f]}]}]\n")
    out = tmp_path / "out"
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0
    state = json.loads((out / STATE_NAME).read_text())
    state["rules"]["cpu"]["alert_state"]["state"]["thresholds"] = [["m", "{}", "x"]]
    (out / STATE_NAME).write_text(json.dumps(state))
    code, output = run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3000))
    assert code == 1 and "rule cpu: its alert state in the incremental state file cannot be read" in output
    state["rules"]["cpu"]["alert_state"]["as_of_ms"] = 1e400
    (out / STATE_NAME).write_text(json.dumps(state).replace("Infinity", "1e400"))
    code, output = run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3000))
    assert code == 2 and "not a vmrules state file" in output


def test_a_csv_added_to_with_other_columns_is_refused(tmp_path: Path) -> None:
    body = "targets: {f: {type: csv, path: latest.csv, columns: [timestamp, value]}}\n" \
           "rules: [{name: cpu, query: cpu_usage, range: 30m, route: [{to: f}]}]\n"
    folder = file_rules(tmp_path, body)
    out = tmp_path / "out"
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0
    before = (out / "latest.csv").read_text()
    (folder / "r.yaml").write_text((folder / "r.yaml").read_text().replace("[timestamp, value]",
                                                                            "[rule, timestamp, value]"))
    code, output = run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3000))
    assert code == 1 and "latest.csv" in output and "differ from the new rows'" in output
    assert (out / "latest.csv").read_text() == before


def test_a_plain_run_ends_an_episode_that_ends_at_its_first_point(tmp_path: Path) -> None:
    """The lookback reaches `for` and a step before the window: the state one step before it is known."""
    first = END_S - 3 * 3600
    ts = [(first + 60 * i) * 1000 for i in range(30)]
    (tmp_path / "d.jsonl").write_text(json.dumps({"metric": {"__name__": "t", "i": "a"}, "timestamps": ts,
                                                  "values": [95.0] * 10 + [10.0] * 20}) + "\n")
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: 'file:{tmp_path / 'd.jsonl'}'}}\n"
        "targets: {e: {type: csv, path: e.csv, shape: episodes}}\n"
        "rules: [{name: r, query: t, step: 1m, thresholds: [{above: 90, for: 5m}], route: [{when: alert, to: e}]}]\n")
    code, output = run(folder, tmp_path / "out", "--from", str(first + 600), "--to", str(first + 1500))
    assert code == 0, output
    (episode,) = read_csv(tmp_path / "out" / "e.csv")
    assert episode["end"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first + 600)))


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))
