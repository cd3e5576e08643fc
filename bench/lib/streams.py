"""Scenario 4: many concurrent long streams, gateway vs baseline.

Every run gets a freshly started gateway or baseline (so VmHWM belongs to
that run alone) while the mock upstream stays up; bench/stream_client.py
drives the streams and samples the worker's memory.  Two series:

  concurrency  10, 100, 1000 streams of the "lat" profile: time to first
               byte, per-event delay, worker memory per open stream;
  length       the same number of streams of 100 and of 5000 events, all
               started at once and written alike (25 events every 20 ms):
               memory per stream must not grow with length, neither from
               100 to 5000 events nor from early to late in the long ones.
"""

import json
import os
import subprocess
import sys

import scenarios
import servers

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(BENCH, "stream_client.py")


def one(layout, target, kind, profile, streams, ramp, tag, interval=0.05):
    req = scenarios.stream_requests(profile)[kind]
    events = layout.profiles[profile]["events"]
    srv = servers.Nginx(layout, target, layout.ports[target]).start()
    out = os.path.join(layout.work, "streams", "%s-%s.json" % (tag, target))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
        pids = srv.workers()
        cmd = [sys.executable, CLIENT, "--port", str(srv.port),
               "--path", req["paths"][target],
               "--body", "%s/bodies/%s.json" % (layout.work, req["body"]),
               "--header", scenarios.LLM, "--streams", str(streams),
               "--events", str(events), "--ramp", str(ramp), "--timeout", "120",
               "--pids", ",".join(map(str, pids)), "--end", req["end"][target],
               "--sample-interval", str(interval),
               "--out", out]
        subprocess.run(cmd, timeout=600)
        with open(out) as f:
            r = json.load(f)
        crashes = srv.errors()
    finally:
        srv.stop()
    m = r["memory"]
    m["per_stream_kb"] = round((m["peak_rss_kb"] - m["idle_rss_kb"]) / float(streams), 2)
    r.update(target=target, kind=kind, profile=profile, workers=len(pids),
             alerts=crashes[:3])
    return r


def run(layout, opts, log):
    results = {"concurrency": [], "length": []}
    n = 0
    for streams in opts.stream_levels:
        for kind in ("anthropic", "openai"):
            order = ("gateway", "baseline") if n % 2 == 0 else ("baseline", "gateway")
            n += 1
            for target in order:
                r = one(layout, target, kind, "lat", streams, opts.ramp,
                        "c%d-%s" % (streams, kind))
                results["concurrency"].append(r)
                log("  %-9s %4d streams %-8s: ok %4d/%d  ttfb p50 %6.2f ms  event p50 %6.2f"
                    " p99 %6.2f ms  %6.1f KB/stream"
                    % (kind, streams, target, r["ok"], streams, r["ttfb_ms"]["p50"] or -1,
                       r["event_delay_ms"]["p50"] or -1, r["event_delay_ms"]["p99"] or -1,
                       r["memory"]["per_stream_kb"]))
    for profile in ("len100", "len5000"):
        for target in ("gateway", "baseline"):
            r = one(layout, target, "anthropic", profile, opts.length_streams, 0.0,
                    "%s-anthropic" % profile, interval=0.01)
            results["length"].append(r)
            m = r["memory"]
            log("  anthropic %4d streams x %4d events %-8s: ok %4d  peak RSS %6d KB"
                "  %6.1f KB/stream  early/late RSS %s/%s KB"
                % (opts.length_streams, layout.profiles[profile]["events"], target, r["ok"],
                   m["peak_rss_kb"], m["per_stream_kb"], m["early_rss_kb"],
                   m["late_rss_kb"]))
    return results
