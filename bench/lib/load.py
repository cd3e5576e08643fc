"""Scenarios 1-3 under wrk: throughput and latency, gateway vs baseline.

Each scenario is first checked with one request to each server (status 200
and the expected response); one that fails is reported as not measurable
and not loaded.  Then, for every repetition, each scenario runs on the
gateway and on the baseline back to back, the order alternating between
repetitions, so slow drifts of a shared machine hit both alike.
"""

import http.client
import json
import os
import subprocess

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(BENCH, "lua", "request.lua")


def request(port, sc, target, work, timeout=10):
    """one request; (status, body text)"""
    body = None
    f = sc.body_file(work)
    if f:
        with open(f, "rb") as fh:
            body = fh.read()
    headers = dict(line.split(": ", 1) for line in sc.header.split("\n") if line)
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(sc.method, sc.paths[target], body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except OSError as e:
        return 0, str(e)
    finally:
        conn.close()


def check(ports, sc, work):
    """None when both servers answer as expected, else why not"""
    for target in ("gateway", "baseline"):
        status, text = request(ports[sc.servers[target]], sc, target, work)
        if status != 200 or sc.markers[target] not in text:
            return "%s answers %s: %s" % (target, status, " ".join(text.split())[:200])
    return None


def wrk(port, sc, target, work, threads, connections, duration):
    env = dict(os.environ, BENCH_METHOD=sc.method, BENCH_BODY_FILE=sc.body_file(work),
               BENCH_HEADERS=sc.header)
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration,
           "--timeout", "10s", "-s", LUA,
           "http://127.0.0.1:%d%s" % (port, sc.paths[target])]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                         timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0
            r["bad"] = sum(r["errors"].values())
            return r
    raise RuntimeError("wrk gave no result: %s %s" % (out.stdout[-500:], out.stderr[-500:]))


def run(ports, scenarios, work, opts, log):
    """[{scenario, target, mode, rep, rps, latency_us, errors}] for every run"""
    runs = []
    modes = [("load", opts.threads, opts.connections, opts.duration)]
    if opts.c1_duration:
        modes.append(("c1", 1, 1, opts.c1_duration))
    for rep in range(opts.reps):
        order = ("gateway", "baseline") if rep % 2 == 0 else ("baseline", "gateway")
        for sc in scenarios:
            for mode, t, c, d in modes:
                for target in order:
                    r = wrk(ports[sc.servers[target]], sc, target, work, t, c, d)
                    r.update(scenario=sc.key, target=target, mode=mode, rep=rep)
                    runs.append(r)
                    log("  %-15s %-8s %-4s rep %d: %8.0f req/s  p50 %6.0f us  p99 %6.0f us%s"
                        % (sc.key, target, mode, rep + 1, r["rps"], r["latency_us"]["p50"],
                           r["latency_us"]["p99"],
                           "  (%d errors)" % r["bad"] if r["bad"] else ""))
    return runs
