"""Summarises the runs of bench/run: medians, ratios, targets; writes the
markdown table and the JSON, and the README's Performance section."""

import json
import os
import re
import statistics

# the targets of issue 4
TARGET_P99_ADDED_US = 1000          # added p99 latency under 1 ms
TARGET_LENGTH_GROWTH_KB = 16        # memory per stream, 5000 vs 100 events


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize_load(scenarios, checks, runs, cg):
    out = []
    for sc in scenarios:
        row = {"key": sc.key, "number": sc.number, "title": sc.title,
               "min_ratio": sc.min_ratio}
        if checks.get(sc.key):
            row.update(status="not measurable", reason=checks[sc.key])
            out.append(row)
            continue
        row["status"] = "ok"
        for mode in ("load", "c1"):
            m = {}
            for target in ("gateway", "baseline"):
                rs = [r for r in runs if r["scenario"] == sc.key and r["target"] == target
                      and r["mode"] == mode]
                if not rs:
                    continue
                m[target] = {
                    "rps": round(median([r["rps"] for r in rs]), 1),
                    "rps_runs": [round(r["rps"], 1) for r in rs],
                    "p50_us": median([r["latency_us"]["p50"] for r in rs]),
                    "p99_us": median([r["latency_us"]["p99"] for r in rs]),
                    "errors": sum(r["bad"] for r in rs),
                }
            if len(m) == 2:
                g, b = m["gateway"], m["baseline"]
                # each gateway run against the baseline run next to it
                pairs = {}
                for r in runs:
                    if r["scenario"] == sc.key and r["mode"] == mode:
                        pairs.setdefault(r["rep"], {})[r["target"]] = r["rps"]
                ratios = [p["gateway"] / p["baseline"] for p in pairs.values()
                          if p.get("baseline") and "gateway" in p]
                m["ratio_runs"] = [round(x, 3) for x in ratios]
                m["ratio"] = round(median(ratios), 3) if ratios else None
                m["added_p50_us"] = g["p50_us"] - b["p50_us"]
                m["added_p99_us"] = g["p99_us"] - b["p99_us"]
                row[mode] = m
        if sc.key in cg:
            c = cg[sc.key]
            row["instructions"] = {
                "gateway": c.get("gateway", {}).get("instructions_per_request"),
                "baseline": c.get("baseline", {}).get("instructions_per_request"),
                "ratio": c.get("ratio")}
        load = row.get("load")
        targets = {}
        if load:
            errors = load["gateway"]["errors"] + load["baseline"]["errors"]
            if errors:
                row["status"] = "errors"
                row["reason"] = "%d failed requests under load" % errors
            if sc.min_ratio is not None:
                targets["throughput"] = {"target": ">= %d%% of nginx" % (sc.min_ratio * 100),
                                         "pass": load["ratio"] >= sc.min_ratio}
            targets["added_p99"] = {"target": "< 1 ms under load",
                                    "pass": load["added_p99_us"] < TARGET_P99_ADDED_US}
            c1 = row.get("c1")
            if c1:
                targets["added_p99_c1"] = {"target": "< 1 ms at 1 connection",
                                           "pass": c1["added_p99_us"] < TARGET_P99_ADDED_US}
        row["targets"] = targets
        out.append(row)
    return out


def summarize_streams(results):
    if not results:
        return None
    conc = []
    keys = sorted({(r["kind"], r["streams"]) for r in results["concurrency"]},
                  key=lambda k: (k[0] != "anthropic", k[1]))
    for kind, n in keys:
        pair = {r["target"]: r for r in results["concurrency"]
                if r["kind"] == kind and r["streams"] == n}
        row = {"kind": kind, "streams": n}
        for target, r in pair.items():
            row[target] = {
                "ok": r["ok"], "ttfb_p50_ms": r["ttfb_ms"]["p50"],
                "first_event_p50_ms": r["first_event_ms"]["p50"],
                "event_p50_ms": r["event_delay_ms"]["p50"],
                "event_p99_ms": r["event_delay_ms"]["p99"],
                "event_mean_ms": r["event_delay_ms"]["mean"],
                "idle_rss_kb": r["memory"]["idle_rss_kb"],
                "peak_rss_kb": r["memory"]["peak_rss_kb"],
                "hwm_kb": r["memory"]["hwm_kb"],
                "per_stream_kb": r["memory"]["per_stream_kb"],
                "alerts": r.get("alerts", []),
            }
        g, b = row.get("gateway"), row.get("baseline")
        if g and b:
            measurable = g["ok"] == n and b["ok"] == n
            row["status"] = "ok" if measurable else "not measurable"
            if not measurable:
                bad = pair["gateway"] if g["ok"] != n else pair["baseline"]
                row["reason"] = "%s: %d/%d streams complete, statuses %s %s" % (
                    bad["target"], bad["ok"], n, bad["statuses"], " ".join(bad["errors"][:2]))
            row["added_ttfb_ms"] = _sub(g["ttfb_p50_ms"], b["ttfb_p50_ms"])
            row["added_event_p50_ms"] = _sub(g["event_p50_ms"], b["event_p50_ms"])
            row["added_event_mean_ms"] = _sub(g["event_mean_ms"], b["event_mean_ms"])
            row["added_event_p99_ms"] = _sub(g["event_p99_ms"], b["event_p99_ms"])
        conc.append(row)

    # memory per added stream between two concurrency levels: the slope,
    # free of what the first connections cost (pools, buffers, arenas)
    for kind in {r["kind"] for r in conc}:
        rows = sorted((r for r in conc if r["kind"] == kind), key=lambda r: r["streams"])
        for prev, cur in zip(rows, rows[1:]):
            for target in ("gateway", "baseline"):
                if target in prev and target in cur:
                    cur[target]["marginal_kb"] = round(
                        (cur[target]["peak_rss_kb"] - prev[target]["peak_rss_kb"])
                        / float(cur["streams"] - prev["streams"]), 2)

    length = {}
    for r in results["length"]:
        length.setdefault(r["target"], {})[r["profile"]] = {
            "streams": r["streams"], "events": r["events_expected"], "ok": r["ok"],
            "peak_rss_kb": r["memory"]["peak_rss_kb"], "hwm_kb": r["memory"]["hwm_kb"],
            "per_stream_kb": r["memory"]["per_stream_kb"],
            "early_rss_kb": r["memory"].get("early_rss_kb"),
            "late_rss_kb": r["memory"].get("late_rss_kb")}
    lrow = {"by_target": length}
    for target, t in length.items():
        long_ = t.get("len5000", {})
        if long_.get("early_rss_kb") and long_.get("late_rss_kb"):
            long_["late_growth_kb_per_stream"] = round(
                (long_["late_rss_kb"] - long_["early_rss_kb"]) / float(long_["streams"]), 2)
    g = length.get("gateway", {})
    if "len100" in g and "len5000" in g:
        ok = all(v["ok"] == v["streams"] for v in g.values())
        growth = g["len5000"]["per_stream_kb"] - g["len100"]["per_stream_kb"]
        late = g["len5000"].get("late_growth_kb_per_stream")
        lrow["growth_kb_per_stream"] = round(growth, 2)
        lrow["late_growth_kb_per_stream"] = late
        if ok:
            lrow["status"] = "ok"
            lrow["targets"] = {"bounded": {
                "target": "< %d KB more per stream at 5000 events than at 100, and late "
                          "in the 5000-event streams than early" % TARGET_LENGTH_GROWTH_KB,
                "pass": growth < TARGET_LENGTH_GROWTH_KB
                        and (late is None or late < TARGET_LENGTH_GROWTH_KB)}}
        else:
            lrow["status"] = "not measurable"
            lrow["reason"] = "streams did not complete: %s" % (
                {k: "%d/%d" % (v["ok"], v["streams"]) for k, v in g.items()})
    return {"concurrency": conc, "length": lrow}


def _sub(a, b):
    return None if a is None or b is None else round(a - b, 3)


# ---------------------------------------------------------------- markdown

def _ratio(load):
    """the median ratio, and the lowest and highest of the runs: on a shared
    2-CPU machine one pair of runs can differ from the next by several points"""
    runs = load.get("ratio_runs") or []
    text = "%.0f %%" % (load["ratio"] * 100)
    if len(runs) > 1:
        text += " (%.0f–%.0f)" % (min(runs) * 100, max(runs) * 100)
    return text


def _mark(t):
    if not t:
        return "—"
    return "**pass**" if t["pass"] else "**FAIL**"


def _ms(us):
    return "—" if us is None else "%.2f" % (us / 1000.0)


def _i(v):
    return "—" if v is None else "{:,}".format(int(round(v)))


def markdown(summary):
    s = summary["settings"]
    m = summary["machine"]
    lines = []
    add = lines.append
    add("Measured %s on %s CPU(s), %s, Linux %s, nginx %s, load average %.2f at the "
        "start; `%s`%s."
        % (summary["date"], m["nproc"], m["cpu"], m["kernel"], m["nginx"], m["loadavg"][0],
           summary["command"], " (git %s%s)" % (summary["git"]["commit"],
                                                ", uncommitted changes"
                                                if summary["git"]["dirty"] else "")))
    add("")
    add("Load: `wrk -t%d -c%d`, %d s per run, %d run(s) per server alternating gateway "
        "and nginx, medians (the ratio: median of each gateway run over the nginx run next "
        "to it); then %d s at one connection (`-t1 -c1`) for the latency a "
        "request gets without queueing. Baseline: nginx %s with the same proxy settings (same "
        "keepalive upstream pool, `proxy_buffering off`, the upstream key set with "
        "`proxy_set_header`, a buffered access log where the gateway writes its audit "
        "log). Upstream: a plain nginx with canned responses. %d nginx worker(s) each; "
        "all processes share the machine's %s CPU(s), so a ratio is end-to-end "
        "throughput, not the proxy's alone."
        % (s["threads"], s["connections"], s["duration"], s["reps"], s["c1_duration"],
           m["nginx"],
           s["workers"], m["nproc"]))
    add("")
    add("| # | scenario | gateway req/s | nginx req/s | ratio (runs' range) | "
        "throughput target | "
        "p50 gw / nginx (ms) | p99 gw / nginx (ms) | added p99 (ms) | "
        "added p50 / p99 at 1 conn. (ms) | p99 target: load / 1 conn. | "
        "instructions/req gw / nginx |")
    add("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|")
    for r in summary["scenarios"]:
        if r["status"] == "not measurable":
            add("| %s | %s | — | — | — | not measurable: %s | | | | | | |"
                % (r["number"], r["title"], r["reason"][:120].replace("|", "\\|")))
            continue
        ins = r.get("instructions", {})
        c1 = r.get("c1", {})
        t = r["targets"]
        tp = t.get("throughput")
        l = r.get("load")
        if not l:
            add("| %s | %s | — | — | — | not run | | | | | | %s |" % (
                r["number"], r["title"],
                ("%s / %s" % (_i(ins.get("gateway")), _i(ins.get("baseline")))) if ins else "—"))
            continue
        add("| %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s |" % (
            r["number"], r["title"] + (" (%s)" % r["reason"] if r["status"] == "errors" else ""),
            _i(l["gateway"]["rps"]), _i(l["baseline"]["rps"]),
            _ratio(l),
            ("%s %s" % (tp["target"], _mark(tp))) if tp else "none (report only)",
            _ms(l["gateway"]["p50_us"]), _ms(l["baseline"]["p50_us"]),
            _ms(l["gateway"]["p99_us"]), _ms(l["baseline"]["p99_us"]),
            _ms(l["added_p99_us"]),
            ("%s / %s" % (_ms(c1["added_p50_us"]), _ms(c1["added_p99_us"]))) if c1 else "—",
            "%s / %s" % (_mark(t.get("added_p99")), _mark(t.get("added_p99_c1"))),
            ("%s / %s" % (_i(ins.get("gateway")), _i(ins.get("baseline")))) if ins else "—"))
    st = summary.get("streams")
    if st:
        add("")
        add("Streams (scenario 4): each stream %d content events, one every %d ms, "
            "streams starting over %.1f s; one fresh server per run. Delays are from the "
            "upstream's write (nginx `$msec`, 1 ms resolution) to the client's read; "
            "memory is the worker's VmRSS (peak while streams are open minus idle) per "
            "stream. The baseline proxies the provider's own stream untranslated."
            % (s["stream_events"], s["stream_delay_ms"], s["ramp"]))
        add("")
        add("| stream | concurrent | complete gw / nginx | TTFB p50 gw / nginx (ms) | "
            "added TTFB (ms) | event delay p50 gw / nginx (ms) | event p99 gw / nginx (ms) "
            "| added event p50 / p99 (ms) | KB per stream gw / nginx | "
            "KB per added stream gw / nginx | worker VmHWM gw / nginx (MB) |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in st["concurrency"]:
            g, b = r.get("gateway"), r.get("baseline")
            if not (g and b):
                continue
            title = {"anthropic": "Anthropic → OpenAI (translated)",
                     "openai": "OpenAI (passthrough)"}[r["kind"]]
            if r["status"] != "ok":
                title += " — not measurable: " + r["reason"].replace("|", "\\|")
            add("| %s | %d | %d / %d | %.2f / %.2f | %+.2f | %.2f / %.2f | %.2f / %.2f | "
                "%+.2f / %+.2f | %.1f / %.1f | %s | %.1f / %.1f |" % (
                    title, r["streams"], g["ok"], b["ok"],
                    g["ttfb_p50_ms"] or 0, b["ttfb_p50_ms"] or 0, r["added_ttfb_ms"] or 0,
                    g["event_p50_ms"] or 0, b["event_p50_ms"] or 0,
                    g["event_p99_ms"] or 0, b["event_p99_ms"] or 0,
                    r["added_event_p50_ms"] or 0, r["added_event_p99_ms"] or 0,
                    g["per_stream_kb"], b["per_stream_kb"],
                    ("%.1f / %.1f" % (g["marginal_kb"], b["marginal_kb"]))
                    if "marginal_kb" in g and "marginal_kb" in b else "—",
                    g["hwm_kb"] / 1024.0, b["hwm_kb"] / 1024.0))
        ln = st["length"]
        bt = ln.get("by_target", {})
        if bt.get("gateway"):
            add("")
            add("Stream length (Anthropic → OpenAI): %d concurrent streams, all started "
                "at once, of 100 and of 5000 events, written alike (25 events every 20 ms); "
                "worker RSS sampled every 10 ms, early (10–30 %% of the events received) and "
                "late (70–95 %%) in the streams."
                % s["length_streams"])
            add("")
            add("| events per stream | complete gw / nginx | peak worker RSS gw / nginx (MB) "
                "| KB per stream gw / nginx | RSS late − early, KB per stream gw / nginx |")
            add("|---:|---:|---:|---:|---:|")
            for prof in ("len100", "len5000"):
                g = bt.get("gateway", {}).get(prof)
                b = bt.get("baseline", {}).get(prof)
                if g and b:
                    lg, lb = (g.get("late_growth_kb_per_stream"),
                              b.get("late_growth_kb_per_stream"))
                    add("| %d | %d / %d | %.1f / %.1f | %.1f / %.1f | %s |" % (
                        g["events"], g["ok"], b["ok"], g["peak_rss_kb"] / 1024.0,
                        b["peak_rss_kb"] / 1024.0, g["per_stream_kb"], b["per_stream_kb"],
                        "%+.1f / %+.1f" % (lg, lb) if lg is not None and lb is not None
                        else "—"))
            if ln.get("status") == "ok":
                add("")
                add("Memory per stream bounded (%s): %+.1f KB and %s KB per stream — %s."
                    % (ln["targets"]["bounded"]["target"], ln["growth_kb_per_stream"],
                       "%+.1f" % ln["late_growth_kb_per_stream"]
                       if ln.get("late_growth_kb_per_stream") is not None else "—",
                       _mark(ln["targets"]["bounded"])))
            elif ln.get("reason"):
                add("")
                add("Memory per stream with length: not measurable (%s)." % ln["reason"])
    hs = summary.get("hot_spots")
    if hs:
        add("")
        add("Where the gateway's instructions go (callgrind, per request, zero-request run "
            "subtracted; shares of the gateway's total), for the scenarios short of a target:")
        add("")
        add("| scenario | instructions/req | by object | module steps (inclusive) | "
            "hottest functions (self) |")
        add("|---|---:|---|---|---|")
        for key, h in hs.items():
            add("| `%s` | %s | %s | %s | %s |" % (
                key, _i(h["total_per_request"]),
                ", ".join("%s %.0f %%" % (o["object"], o["share"] * 100)
                          for o in h["objects"][:4]),
                ", ".join("`%s` %.0f %%" % (f["function"].split(":", 1)[1], f["share"] * 100)
                          for f in h.get("module_inclusive", [])[:5]),
                ", ".join("`%s` %.1f %%" % (f["function"], f["share"] * 100)
                          for f in h["functions"][:6])))
    return "\n".join(lines) + "\n"


def write(summary, results_dir, name):
    os.makedirs(results_dir, exist_ok=True)
    md = markdown(summary)
    with open(os.path.join(results_dir, name + ".md"), "w") as f:
        f.write("# AILink benchmark: gateway vs plain nginx\n\n" + md)
    with open(os.path.join(results_dir, name + ".json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    return md


def update_readme(readme, md):
    """replace (or append) the README's last section, "## Performance" """
    with open(readme) as f:
        text = f.read()
    section = ("## Performance\n\n"
               "```sh\nbench/run            # ~17 min: builds, measures, writes "
               "bench/results/latest.{md,json} and this section\n"
               "bench/run --quick    # ~2 min smoke run (bench/results/quick.*; "
               "leaves this section alone)\n"
               "bench/slow_reader.py # ~1 min: memory of streams read by slow "
               "clients, gateway vs plain nginx\n```\n\n"
               "It starts a mock upstream (plain nginx with canned OpenAI, Anthropic, "
               "Gemini and REST responses and SSE streams), the gateway, and plain nginx "
               "doing the same proxying, and measures them side by side in one run "
               "(`bench/run --help` lists the knobs). Latest results:\n\n" + md)
    m = re.search(r"^## Performance\s*$", text, re.M)
    if m:
        rest = text[m.end():]
        n = re.search(r"^## ", rest, re.M)
        text = text[:m.start()] + section + ("\n" + rest[n.start():] if n else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(readme, "w") as f:
        f.write(text)
