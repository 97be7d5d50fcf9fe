"""Write the bundled example data: node-exporter style series in VictoriaMetrics export format.

40 hosts, 24 hours at 5-minute resolution, ending 2026-11-01T00:00:00Z:
CPU and memory utilisation (node-mixin recording rules, 0..1), free disk bytes
on two filesystems, and `up`. Deterministic, so the file in git only changes
when this script does.

usage: python examples/data/generate.py > examples/data/node.jsonl
"""

from __future__ import annotations

import json
import math
import random
import sys

END_MS = 1_793_491_200_000          # 2026-11-01T00:00:00Z
STEP_MS = 300_000
POINTS = 288
HOSTS = 40
GIB = 1024 ** 3


def series(metric: str, labels: dict[str, str], values: list[float]) -> str:
    ts = [END_MS - (POINTS - 1 - i) * STEP_MS for i in range(POINTS)]
    return json.dumps({"metric": {"__name__": metric, **labels}, "values": values, "timestamps": ts},
                      separators=(",", ":"))


def main() -> None:
    rnd = random.Random(7)
    out = sys.stdout
    for h in range(HOSTS):
        env = "prod" if h % 4 else "staging"
        base = {"instance": f"node-{h:02d}:9100", "job": "node", "env": env}
        load = rnd.uniform(0.15, 0.7)
        cpu = [min(1.0, max(0.0, load + 0.25 * math.sin(i / 20 + h) + rnd.gauss(0, 0.05))) for i in range(POINTS)]
        if h % 9 == 3:                                   # a sustained CPU spike
            for i in range(240, 265):
                cpu[i] = min(1.0, 0.93 + rnd.random() * 0.06)
        out.write(series("instance:node_cpu_utilisation:rate5m", base, [round(v, 4) for v in cpu]) + "\n")
        used = rnd.uniform(0.4, 0.8)
        mem = [min(1.0, used + i * 0.0004 * (h % 5) + rnd.gauss(0, 0.01)) for i in range(POINTS)]
        out.write(series("instance:node_memory_utilisation:ratio", base, [round(v, 4) for v in mem]) + "\n")
        for mount, size in (("/", 50), ("/var/lib", 500)):
            free = rnd.uniform(0.05, 0.6) * size
            drain = rnd.uniform(0, 0.002) * size
            vals = [max(0.0, free - drain * i) * GIB for i in range(POINTS)]
            device = "/dev/vda1" if mount == "/" else "/dev/vdb"
            labels = {**base, "mountpoint": mount, "fstype": "ext4", "device": device}
            out.write(series("node_filesystem_avail_bytes", labels, [round(v) for v in vals]) + "\n")
        up = [1.0] * POINTS
        if h == 17:                                      # one host goes down for an hour
            for i in range(250, 262):
                up[i] = 0.0
        out.write(series("up", base, up) + "\n")


if __name__ == "__main__":
    main()
