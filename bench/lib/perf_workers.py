"""Where a worker's time goes, gateway against plain nginx: perf samples of
each server's worker under the same wrk load, per 1000 requests, by object
and by function.  Callgrind counts instructions; this counts time, kernel
included, which is where most of a proxy's goes.

Runs on the work folder a bench/run left (`bench/run --work DIR`): its
mock, gateway and baseline configurations and request bodies.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import load  # noqa: E402
import scenarios  # noqa: E402
from servers import Nginx  # noqa: E402


class Folder:
    """the part of servers.Layout that Nginx needs, over an existing folder"""

    def __init__(self, work):
        self.work = work

    def conf(self, name):
        return os.path.join(self.work, name, "nginx.conf")


def port_of(folder, name):
    with open(folder.conf(name)) as f:
        return int(re.search(r"listen 127\.0\.0\.1:(\d+)", f.read()).group(1))


def samples(data):
    """{(object, function): samples} of a perf.data"""
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio",
                          "--sort", "dso,sym", "-F", "sample,dso,sym"],
                         capture_output=True, text=True).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+\[.\]\s+(.*)", line)
        if m:
            counts[(m.group(2), m.group(3).strip())] += int(m.group(1))
    return counts


def measure(server, sc, target, work, seconds, out):
    """(requests, samples) of one wrk run with the worker recorded"""
    env = dict(os.environ, BENCH_METHOD=sc.method, BENCH_BODY_FILE=sc.body_file(work),
               BENCH_HEADERS=sc.header)
    wrk = subprocess.Popen(["wrk", "-t2", "-c32", "-d%ds" % (seconds + 2), "-s", load.LUA,
                            "http://127.0.0.1:%d%s" % (server.port, sc.paths[target])],
                           env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    subprocess.run(["perf", "record", "-q", "-F", "4999", "-o", out,
                    "-p", ",".join(str(p) for p in server.workers()),
                    "--", "sleep", str(seconds)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    text = wrk.communicate()[0]
    r = [l for l in text.splitlines() if l.startswith("BENCH ")]
    if not r:
        raise RuntimeError("wrk gave no result: " + text[-300:])
    total = int(re.search(r'"requests":(\d+)', r[0]).group(1))
    # the requests of the recorded seconds, at the run's mean rate
    return total * seconds / (seconds + 2), samples(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="a work folder bench/run left")
    ap.add_argument("--scenario", default="openai",
                    help="scenario key (openai; see bench/run --help)")
    ap.add_argument("--seconds", type=int, default=5, help="seconds recorded per server")
    ap.add_argument("--top", type=int, default=25, help="functions listed")
    o = ap.parse_args()

    sc = {s.key: s for s in scenarios.SCENARIOS}[o.scenario]
    folder = Folder(os.path.abspath(o.work))
    servers = {n: Nginx(folder, n, port_of(folder, n)) for n in ("mock", "gateway", "baseline")}
    result = {}
    try:
        for s in servers.values():
            s.start()
        for target in ("gateway", "baseline"):
            result[target] = measure(servers[target], sc, target, folder.work, o.seconds,
                                     os.path.join(folder.work, "perf-%s.data" % target))
    finally:
        for s in servers.values():
            s.stop()

    per = {t: {k: v * 1000 / reqs for k, v in counts.items()}
           for t, (reqs, counts) in result.items()}
    g, b = per["gateway"], per["baseline"]

    print("scenario %s: perf samples per 1000 requests (%d Hz), gateway / nginx"
          % (sc.key, 4999))
    print("total %.1f / %.1f" % (sum(g.values()), sum(b.values())))
    objects = collections.defaultdict(lambda: [0.0, 0.0])
    for k, v in g.items():
        objects[k[0]][0] += v
    for k, v in b.items():
        objects[k[0]][1] += v
    for name, (gv, bv) in sorted(objects.items(), key=lambda x: -x[1][0]):
        if gv + bv >= 0.1:
            print("  %-28s %7.2f / %7.2f" % (name, gv, bv))
    print("functions, most added first (added, gateway, nginx):")
    rows = sorted(((g.get(k, 0) - b.get(k, 0), g.get(k, 0), b.get(k, 0), k)
                   for k in set(g) | set(b)), reverse=True)
    for added, gv, bv, (dso, sym) in rows[:o.top]:
        print("  %6.2f %6.2f %6.2f  %s %s" % (added, gv, bv, dso, sym[:70]))


if __name__ == "__main__":
    main()
