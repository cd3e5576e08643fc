"""bench/run's driver: set up, measure, report.  See bench/run --help."""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import backends
import callgrind
import load
import report
import scenarios
import servers
import streams

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH)
T0 = time.time()


def log(msg):
    sys.stderr.write("[%5.0fs] %s\n" % (time.time() - T0, msg))
    sys.stderr.flush()


def options(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="Measures the AILink gateway against plain nginx doing the same "
                    "proxying: throughput, latency, streams, memory and instructions "
                    "per request.")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: short runs, one repetition (about 2 minutes)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (10; quick 2)")
    ap.add_argument("--reps", type=int, help="wrk runs per scenario and server (5; quick 1)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    ap.add_argument("--c1-duration", type=int,
                    help="seconds of the one-connection latency run (3; quick 1; 0: none)")
    ap.add_argument("--workers", type=int, default=1, help="nginx workers per server (1)")
    ap.add_argument("--streams", help="concurrent stream levels (10,100,1000; quick 10,100)")
    ap.add_argument("--length-streams", type=int,
                    help="concurrent streams of the length test (100; quick 20)")
    ap.add_argument("--cg-requests", type=int,
                    help="requests per callgrind run (200; quick 40)")
    ap.add_argument("--only", default="load,streams,callgrind",
                    help="phases to run (load,streams,callgrind)")
    ap.add_argument("--scenarios", help="scenario keys to run (all): "
                    + ",".join(s.key for s in scenarios.SCENARIOS))
    ap.add_argument("--out", help="result name under bench/results/ (latest; quick: quick)")
    ap.add_argument("--no-readme", action="store_true",
                    help="leave README.md's Performance section alone")
    ap.add_argument("--work", help="work folder (a new temporary one)")
    ap.add_argument("--command", default="bench/run", help=argparse.SUPPRESS)
    o = ap.parse_args(argv)
    q = o.quick
    o.duration = o.duration or (2 if q else 10)
    o.reps = o.reps or (1 if q else 5)
    if o.c1_duration is None:
        o.c1_duration = 1 if q else 3
    o.stream_levels = [int(x) for x in (o.streams or ("10,100" if q else "10,100,1000")).split(",")]
    o.length_streams = o.length_streams or (20 if q else 100)
    o.cg_requests = o.cg_requests or (40 if q else 200)
    o.ramp = 1.0
    o.phases = set(o.only.split(","))
    o.out = o.out or ("quick" if q else "latest")
    return o


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nginx = subprocess.run([servers.NGINX, "-v"], capture_output=True, text=True).stderr
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "nginx": nginx.strip().split("/")[-1], "loadavg": os.getloadavg()}


def git():
    def g(*args):
        return subprocess.run(["git", "-C", REPO] + list(args), capture_output=True,
                              text=True).stdout.strip()
    # what was built: the README's own Performance section does not count
    dirty = [l[3:] for l in g("status", "--porcelain", "--untracked-files=no", "--",
                              ".", ":!README.md", ":!bench").splitlines()]
    return {"commit": g("rev-parse", "--short", "HEAD"), "dirty": dirty,
            "log": g("log", "--oneline", "-3").splitlines()}


def main(argv):
    o = options(argv)
    source = git()                      # the tree ./build.sh just built
    work = o.work or tempfile.mkdtemp(prefix="ailink-bench.")
    os.makedirs(work, exist_ok=True)
    log("work folder %s" % work)
    layout = servers.Layout(REPO, work, o.quick, o.workers)
    scs = [s for s in scenarios.SCENARIOS
           if not o.scenarios or s.key in o.scenarios.split(",")]

    started = []

    def start(name):
        since = time.time()
        srv = servers.Nginx(layout, name, layout.ports[name]).start()
        started.append(srv)
        if name == "gateway-multinode":
            layout.backends.wait_connected(o.workers, since)
        return srv

    checks, runs, stream_results, cg = {}, [], None, {}
    audit_lines, audit_sample, audit_pg = 0, None, None
    # scenario 12 (multi-node): Redis and PostgreSQL, only when selected
    need_backends = ("load" in o.phases or "callgrind" in o.phases) and \
        any(sc.backends for sc in scs)
    backends_up = False
    try:
        if need_backends:
            why = backends.missing()
            if not why:
                try:
                    layout.backends.start()
                    backends_up = True
                    log("multi-node backends: redis-server on %d, PostgreSQL 15 on %d"
                        % (layout.ports["redis"], layout.ports["postgres"]))
                except Exception as e:
                    why = "Redis or PostgreSQL did not start: %s" % e
            if why:
                for sc in scs:
                    if sc.backends:
                        checks[sc.key] = "skipped: %s" % why
                        log("scenario %s skipped: %s" % (sc.key, why))
        start("mock")
        if "load" in o.phases or "callgrind" in o.phases:
            # scenario 12's gateways only for its scenarios
            names = {"gateway"} | {sc.servers["gateway"] for sc in scs if not checks.get(sc.key)}
            gateways = [start(name) for name in servers.GATEWAYS if name in names]
            base = start("baseline")
            for sc in scs:
                if not checks.get(sc.key):
                    checks[sc.key] = load.check(layout.ports, sc, work)
                    if checks[sc.key]:
                        log("scenario %s not measurable: %s" % (sc.key, checks[sc.key]))
            measurable = [sc for sc in scs if not checks[sc.key]]
            if "load" in o.phases:
                log("load: %d scenarios x %d runs x %d s (+ %d s at 1 connection)"
                    % (len(measurable), o.reps, o.duration, o.c1_duration))
                runs = load.run(layout.ports, measurable, work, o, log)
            if backends_up:
                time.sleep(callgrind.DRAIN)     # the last audit batch: inserted, not spooled
            for srv in gateways + [base]:
                srv.stop()
                started.remove(srv)
                for line in srv.errors():
                    log("%s error log: %s" % (srv.name, line))
            if backends_up:
                # every request sent to the multinode gateway: its check and
                # wrk's count (which leaves out the requests in flight at its end)
                sent = sum(1 + sum(r["requests"] for r in runs
                                   if r["scenario"] == sc.key and r["target"] == "gateway")
                           for sc in measurable if sc.backends)
                audit_pg = {"records": layout.backends.pg.audit_records(),
                            "requests": sent}
                log("PostgreSQL audit records after the load phase: %d (requests sent: %d)"
                    % (audit_pg["records"], sent))
            # the logs of millions of requests: count, keep one record, drop
            try:
                with open(os.path.join(work, "gateway", "audit.jsonl")) as f:
                    for line in f:
                        audit_lines += 1
                        audit_sample = line
            except OSError:
                pass
            for log_file in ("gateway/audit.jsonl", "gateway-limits/audit.jsonl",
                             "baseline/access.log"):
                try:
                    os.unlink(os.path.join(work, log_file))
                except OSError:
                    pass
        if "streams" in o.phases:
            log("streams: %s concurrent, then %d streams of 100 and 5000 events"
                % (",".join(map(str, o.stream_levels)), o.length_streams))
            stream_results = streams.run(layout, o, log)
        if "callgrind" in o.phases:
            measurable = [sc for sc in scs if not checks.get(sc.key)]
            if measurable:
                log("callgrind: %d requests per run" % o.cg_requests)
                cg = callgrind.run(layout, measurable, o, log)
                if backends_up:
                    audit_pg = dict(audit_pg or {}, records_after_callgrind=
                                    layout.backends.pg.audit_records())
                    log("PostgreSQL audit records after callgrind: %d"
                        % audit_pg["records_after_callgrind"])
    finally:
        for srv in reversed(started):
            srv.stop()
        if backends_up:
            layout.backends.stop()

    prof = layout.profiles["lat"]
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": o.command,
        "machine": machine(),
        "git": source,
        "settings": {"threads": o.threads, "connections": o.connections,
                     "duration": o.duration, "reps": o.reps, "c1_duration": o.c1_duration,
                     "workers": o.workers, "stream_levels": o.stream_levels,
                     "stream_events": prof["events"], "stream_delay_ms": int(prof["delay"] * 1000),
                     "ramp": o.ramp, "length_streams": o.length_streams,
                     "cg_requests": o.cg_requests, "quick": o.quick},
        "audit_records": audit_lines,
        "audit_sample": json.loads(audit_sample) if audit_sample else None,
        "audit_pg": audit_pg,
        "scenarios": report.summarize_load(scs, checks, runs, cg),
        "streams": report.summarize_streams(stream_results),
    }
    # hot spots of the scenarios short of a target (all of them when none is)
    short = [r["key"] for r in summary["scenarios"]
             if any(not t["pass"] for t in r.get("targets", {}).values())]
    summary["hot_spots"] = {k: cg[k]["hot_spots"] for k in (short or list(cg))
                            if k in cg and "hot_spots" in cg[k]}
    summary["raw"] = {"load": runs, "streams": stream_results,
                      "callgrind": {k: {t: v for t, v in c.items() if t != "files"}
                                    for k, c in cg.items()}}
    md = report.write(summary, os.path.join(BENCH, "results"), o.out)
    sys.stdout.write(md)
    if not o.quick and not o.no_readme and o.phases == {"load", "streams", "callgrind"}:
        report.update_readme(os.path.join(REPO, "README.md"), md)
        log("README.md Performance section updated")
    log("results: bench/results/%s.md and .json (work folder %s)" % (o.out, work))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
