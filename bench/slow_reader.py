#!/usr/bin/env python3
"""Memory of streams read by slow clients: gateway vs baseline.

    bench/slow_reader.py [--streams 10] [--rate 16] [--profile len5000]
                         [--kinds anthropic,openai] [--work DIR]

Runs alone (./build.sh first; the nginx echo module must be installed, as
for bench/run).  It starts the bench's mock upstream, then for each kind of
stream (anthropic: translated; openai: re-emitted without the usage chunk
the gateway asked for) and each target (gateway, baseline) a fresh server,
and opens --streams concurrent streams whose clients read --rate KB/s each
through a 16 KB receive buffer: slower than the upstream writes (the
len5000 profile: 5000 events, 25 every 20 ms).  Once the upstream has
finished, the clients read the rest at full speed.  Both servers listen
with a small socket send buffer (--sndbuf, 32k): otherwise the kernel
holds a stream of a few MB that the client has not read, out of sight of
the worker's RSS (a 40000-event stream outgrows any kernel buffer).

Reported per target: the worker's VmRSS idle, its peak while the clients
read slowly, and the peak growth per stream.  With back-pressure the
gateway, like the baseline, stops reading the upstream while a client's
output is full, and the growth stays a few KB per stream whatever the
stream's length.
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import scenarios  # noqa: E402
import servers  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)


def slow_stream(port, path, body, header, rate, slow_until, end, out):
    """one client: reads rate bytes/s until slow_until, then all of it"""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(("127.0.0.1", port))
    head = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
            "Content-Type: application/json", "Content-Length: %d" % len(body),
            "Connection: close", header]
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    got = bytearray()
    step = 0.05
    s.settimeout(120)
    while True:
        if time.time() < slow_until:
            want = max(1, int(rate * step))
            t0 = time.time()
            data = s.recv(want)
            time.sleep(max(0.0, step - (time.time() - t0)))
        else:
            data = s.recv(65536)
        if not data:
            break
        got += data
    s.close()
    out.append({"bytes": len(got), "complete": end.encode() in got[-4096:]})


def measure(layout, target, kind, opts):
    req = scenarios.stream_requests(opts.profile)[kind]
    with open("%s/bodies/%s.json" % (layout.work, req["body"]), "rb") as f:
        body = f.read()
    srv = servers.Nginx(layout, target, layout.ports[target]).start()
    try:
        pids = srv.workers()
        time.sleep(0.2)
        idle, _ = servers.rss_kb(pids)
        peak = idle
        results = []
        slow_until = time.time() + opts.slow_seconds
        threads = [threading.Thread(target=slow_stream, args=(
            srv.port, req["paths"][target], body, scenarios.LLM,
            opts.rate * 1024, slow_until, req["end"][target], results))
            for _ in range(opts.streams)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss, _ = servers.rss_kb(pids)
            peak = max(peak, rss)
            time.sleep(0.02)
        errors = srv.errors()
    finally:
        srv.stop()
    return {"target": target, "kind": kind, "streams": opts.streams,
            "idle_rss_kb": idle, "peak_rss_kb": peak,
            "per_stream_kb": round((peak - idle) / float(opts.streams), 1),
            "complete": sum(1 for r in results if r["complete"]),
            "bytes": sum(r["bytes"] for r in results), "alerts": errors[:3]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--rate", type=int, default=16, help="KB/s each client reads")
    ap.add_argument("--slow-seconds", type=float, default=6.0,
                    help="how long the clients read slowly (6)")
    ap.add_argument("--profile", default="len5000")
    ap.add_argument("--kinds", default="anthropic,openai")
    ap.add_argument("--sndbuf", default="32k",
                    help="listen sndbuf= of gateway and baseline (32k)")
    ap.add_argument("--work", help="work folder (a new temporary one)")
    opts = ap.parse_args()

    work = opts.work or tempfile.mkdtemp(prefix="ailink-slow.")
    layout = servers.Layout(REPO, work, False, 1)
    for target in ("gateway", "baseline"):
        with open(layout.conf(target)) as f:
            conf = f.read()
        conf = conf.replace(" backlog=4096;", " backlog=4096 sndbuf=%s;" % opts.sndbuf)
        if "sndbuf=" not in conf:
            raise SystemExit("%s: no listen line to set sndbuf on" % target)
        with open(layout.conf(target), "w") as f:
            f.write(conf)
    mock = servers.Nginx(layout, "mock", layout.ports["mock"]).start()
    rows = []
    try:
        for kind in opts.kinds.split(","):
            for target in ("gateway", "baseline"):
                r = measure(layout, target, kind, opts)
                rows.append(r)
                sys.stderr.write(
                    "%-9s %-8s %3d streams at %d KB/s: idle %6d KB  peak %6d KB"
                    "  %7.1f KB/stream  complete %d/%d\n"
                    % (kind, target, opts.streams, opts.rate, r["idle_rss_kb"],
                       r["peak_rss_kb"], r["per_stream_kb"], r["complete"],
                       opts.streams))
    finally:
        mock.stop()
    print(json.dumps(rows, indent=1))
    return 0 if all(r["complete"] == opts.streams for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
