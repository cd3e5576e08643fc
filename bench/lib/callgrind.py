"""Instructions per request (scenarios 1-3) with valgrind's callgrind.

nginx runs as one process ("master_process off; daemon off;") under
callgrind; a simple client sends N requests on one keepalive connection,
then nginx stops gracefully and callgrind writes its counts.  A run with no
request (same start, same stop) is subtracted, which leaves the cost of N
requests: (Ir(N) - Ir(0)) / N.  Counts are user-space instructions of the
proxy only (not the kernel, not the mock, not the client) and repeat to
within a fraction of a percent, unlike timings on a shared machine.

The same difference, function by function (callgrind_annotate, self cost),
gives the gateway's hot spots.
"""

import http.client
import os
import re
import subprocess
import time

import load
import servers

VALGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-jumps=no"]


def _totals(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % path)


def _drive(port, sc, target, work, n):
    body = None
    if sc.body_file(work):
        with open(sc.body_file(work), "rb") as f:
            body = f.read()
    headers = dict(line.split(": ", 1) for line in sc.header.split("\n") if line)
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(n):
            conn.request(sc.method, sc.paths[target], body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError("%s %s: status %d" % (target, sc.key, resp.status))
    finally:
        conn.close()


# scenario 12 (multi-node): after the last request, time for the audit
# sink's flush (1 s) to insert its batch rather than spool it at the stop
DRAIN = 2.5


def measure(layout, target, sc, n, tag):
    """the callgrind output file of nginx serving n requests of sc"""
    out = os.path.join(layout.work, "callgrind", "%s-%s.out" % (target, tag))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    name = sc.servers[target]
    srv = servers.Nginx(layout, name + "-cg", layout.ports[name],
                        wrapper=VALGRIND + ["--callgrind-out-file=" + out])
    backends = sc.backends and target == "gateway"
    since = time.time()
    srv.start(timeout=180)
    try:
        if backends:
            # connected (PostgreSQL's password exchange and table check
            # done) in the zero-request run as in the full one
            layout.backends.wait_connected(1, since)
        if n:
            _drive(srv.port, sc, target, layout.work, n)
        if backends:
            time.sleep(DRAIN)           # in both runs: the same timers
    finally:
        srv.stop(timeout=180)
    if srv.proc.returncode != 0:
        raise RuntimeError("nginx under callgrind exited %s:\n%s"
                           % (srv.proc.returncode, srv.log_tail()))
    return out


TREE_LINE = re.compile(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+([<*>])\s+(\S+?)"
                       r"(?:\s+\([\d,]+x\))?(?:\s+\[(.*)\])?\s*$")


def _split(name, obj):
    """ "file:function'2", "/path/obj" -> (function, display file) """
    fn = name.split(":", 1)[1] if ":" in name else name
    fn = re.sub(r"'\d+$", "", fn)                   # recursion levels
    f = name.split(":", 1)[0] if ":" in name else "???"
    where = os.path.basename(f) if f != "???" else os.path.basename(obj or "") or "?"
    return fn, where


def _profile(path):
    """self cost and callers of every function (callgrind_annotate)"""
    text = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=no", "--tree=caller",
                           "--threshold=100", path],
                          capture_output=True, text=True, check=True, cwd="/").stdout
    cost, where, obj_of, callers = {}, {}, {}, {}
    pending = []
    for line in text.splitlines():
        m = TREE_LINE.match(line)
        if not m:
            pending = []
            continue
        n, kind, name, obj = int(m.group(1).replace(",", "")), m.group(2), m.group(3), m.group(4)
        fn, w = _split(name, obj)
        if kind == "<":
            pending.append((fn, n))
        elif kind == "*":
            cost[fn] = cost.get(fn, 0) + n
            if obj:
                obj_of[fn] = os.path.basename(obj)
            if w != "?" and (fn not in where or where[fn].startswith("lib")
                             or where[fn] == "nginx"):
                where[fn] = w
            for c, k in pending:
                if c != fn:
                    callers.setdefault(fn, {})
                    callers[fn][c] = callers[fn].get(c, 0) + k
            pending = []
    return cost, where, obj_of, callers


def _label(fn, where, callers, depth=0):
    """a name for a function of a stripped library: the named function it
    runs under, e.g. "internal 0x35b0 (under cJSON_ParseWithLengthOpts)" """
    if not fn.startswith("0x"):
        return "%s:%s" % (where.get(fn, "?"), fn)
    up = sorted(callers.get(fn, {}).items(), key=lambda kv: -kv[1])
    short = "internal 0x%x" % int(fn, 16)
    for c, _ in up:
        if not c.startswith("0x"):
            return "%s:%s (under %s)" % (where.get(fn, "?"), short, c)
    if up and depth < 4:
        parent = _label(up[0][0], where, callers, depth + 1)
        m = re.search(r"\(under (.*)\)$", parent)
        if m:
            return "%s:%s (under %s)" % (where.get(fn, "?"), short, m.group(1))
    return "%s:%s" % (where.get(fn, "?"), short)


FLAT_LINE = re.compile(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(\S+?)(?:\s+\[(.*)\])?\s*$")


def _inclusive(path, obj_name):
    """inclusive cost of the functions of one object"""
    # (run from "/": below the sources' folder it leaves out the object names)
    text = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=yes",
                           "--threshold=100", path],
                          capture_output=True, text=True, check=True, cwd="/").stdout
    cost = {}
    for line in text.splitlines():
        m = FLAT_LINE.match(line)
        if m and m.group(3) and os.path.basename(m.group(3)) == obj_name:
            fn, _ = _split(m.group(2), m.group(3))
            cost[fn] = max(cost.get(fn, 0), int(m.group(1).replace(",", "")))
    return cost


def hot_spots(full, zero, n, top=15, module="ngx_ailink_module.so"):
    """per-request self cost of each function, largest first"""
    a, where, obj_of, callers = _profile(full)
    b = _profile(zero)[0]
    diff = {k: (a.get(k, 0) - b.get(k, 0)) / float(n) for k in a}
    total = sum(v for v in diff.values() if v > 0)
    by_object = {}
    for k, v in diff.items():
        if v > 0:
            o = obj_of.get(k, "?")
            by_object[o] = by_object.get(o, 0) + v
    rows = []
    for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        rows.append({"function": _label(k, where, callers), "object": obj_of.get(k, "?"),
                     "per_request": round(v),
                     "share": round(v / total, 4) if total else None})
    objects = [{"object": o, "per_request": round(v), "share": round(v / total, 4)}
               for o, v in sorted(by_object.items(), key=lambda kv: -kv[1]) if total]
    # the module's own functions, callees included: which step costs what
    ia, ib = _inclusive(full, module), _inclusive(zero, module)
    steps = sorted(((k, (v - ib.get(k, 0)) / float(n)) for k, v in ia.items()),
                   key=lambda kv: -kv[1])
    inclusive = [{"function": "%s:%s" % (where.get(k, "?"), k), "per_request": round(v),
                  "share": round(v / total, 4) if total else None}
                 for k, v in steps[:12] if v > 0]
    return {"total_per_request": round(total), "functions": rows, "objects": objects[:8],
            "module_inclusive": inclusive}


def run(layout, scs, opts, log):
    results = {}
    for target in ("gateway", "baseline"):
        zeros = {}      # by server: scenario 12's gateways start differently
        for sc in scs:
            name = sc.servers[target]
            if name not in zeros:
                tag = "zero" if name in ("gateway", "baseline") else "zero-" + name
                zero = measure(layout, target, sc, 0, tag)
                zeros[name] = (zero, _totals(zero))
                log("  %-8s zero-request run%s: %d instructions"
                    % (target, "" if tag == "zero" else " (%s)" % name, zeros[name][1]))
            zero, z = zeros[name]
            # fewer of the long bodies: their cost is per byte
            n = (max(10, opts.cg_requests // 10) if "100k" in sc.key
                 else max(5, opts.cg_requests // 40) if "1m" in sc.key
                 else opts.cg_requests)
            full = measure(layout, target, sc, n, sc.key)
            per = (_totals(full) - z) / float(n)
            r = results.setdefault(sc.key, {})
            r[target] = {"requests": n, "instructions_per_request": round(per)}
            if target == "gateway":
                r["files"] = {"full": full, "zero": zero}
            log("  %-8s %-15s %5d requests: %10.0f instructions/request"
                % (target, sc.key, n, per))
    for key, r in results.items():
        if "gateway" in r and "baseline" in r:
            r["ratio"] = round(r["gateway"]["instructions_per_request"]
                               / float(r["baseline"]["instructions_per_request"]), 2)
            r["hot_spots"] = hot_spots(r["files"]["full"], r["files"]["zero"],
                                       r["gateway"]["requests"])
    return results
