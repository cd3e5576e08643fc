"""nginx configurations and processes for bench/run.

Three nginx servers take part: the mock upstream, the gateway (the AILink
modules) and the baseline (plain nginx); scenario 12 adds two gateways of
its own (gateway-limits, gateway-multinode).  Each runs in the foreground
("daemon off") as a direct child of this process, in its own folder of the
run's work directory, and is waited for when stopped.
"""

import os
import re
import signal
import socket
import subprocess
import time

import backends
import fixtures

NGINX = os.environ.get("BENCH_NGINX", "/usr/sbin/nginx")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """is something listening on 127.0.0.1:port (read from /proc, no connect,
    so an nginx under callgrind counts no instructions for the check)"""
    want = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def fill(template, values):
    def sub(m):
        key = m.group(1)
        if key not in values:
            raise KeyError("no value for @%s@" % key)
        return str(values[key])
    return re.sub(r"@([A-Z][A-Z0-9_]*)@", sub, template)


def main_block(workers, single=False):
    lines = ["daemon off;"]
    if single:
        lines.append("master_process off;")
    else:
        lines.append("worker_processes %d;" % workers)
    if os.geteuid() == 0:
        lines.append("user root;")
    return "\n".join(lines)


def temp_paths(d):
    return "\n".join("    %s_temp_path %s/tmp/%s;" % (k, d, k)
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


# scenario 12's gateways: one template, the embedded default or the
# multi-node backends (filled in by Layout._backend_lines)
TEMPLATES = {"gateway-limits": "gateway-limits", "gateway-multinode": "gateway-limits"}
GATEWAYS = ("gateway", "gateway-limits", "gateway-multinode")


class Layout:
    """the generated configuration of one run, under work/"""

    def __init__(self, repo, work, quick, workers):
        self.repo, self.work, self.quick, self.workers = repo, work, quick, workers
        self.bench = os.path.join(repo, "bench")
        self.ports = {name: free_port() for name in
                      ("mock", "gateway", "baseline", "gateway-limits", "gateway-multinode",
                       "redis", "postgres")}
        # started by bench.py only when a scenario needs them
        self.backends = backends.Backends(work, self.ports)
        self.profiles, responses = fixtures.write_all(work, quick)
        self.values = {"REPO": repo, "BENCH": self.bench, "WORK": work,
                       "MOCK_PORT": self.ports["mock"]}
        self.values.update(fixtures.KEYS)
        self.values.update(responses)
        self.values["LLM_HASH"] = fixtures.sha256(fixtures.TOKENS["llm"])
        self.values["ACTION_HASH"] = fixtures.sha256(fixtures.TOKENS["action"])
        self.values["POLICY_HASH"] = fixtures.sha256(fixtures.TOKENS["policy"])
        self.values["GUARD_HASH"] = fixtures.sha256(fixtures.TOKENS["guard"])
        self.values["LIMITS_HASH"] = fixtures.sha256(fixtures.TOKENS["limits"])
        self.values["POLICIES"] = fixtures.policies_yaml()
        self._write("upstream.conf", self._template("upstream.conf"))
        self.mock_conf = self._server("mock", "mock", workers=max(1, workers))
        for single in (False, True):
            for name in ("gateway", "baseline", "gateway-limits", "gateway-multinode"):
                self._server(name + ("-cg" if single else ""), name, workers, single)

    def _backend_lines(self, name, d):
        """the state zone and audit lines of scenario 12's gateways"""
        if name == "gateway-limits":
            return {"STATE": "    ailink_state_zone ailink_bench 16m;",
                    "AUDIT": "        ailink_audit_log %s/audit.jsonl buffer=64k flush=1s;" % d}
        pg = self.backends.pg
        return {
            "STATE": "\n".join([
                "    # a reply within 1 s: under callgrind the gateway runs ~50 times slower",
                "    ailink_redis 127.0.0.1:%d timeout=1s;" % self.ports["redis"],
                "    ailink_state_zone ailink_bench 16m backend=redis;",
                "    ailink_audit_pg \"%s\"" % pg.conninfo(),
                "                    password_file=%s" % pg.password_file,
                "                    spool=%s/audit-spool batch=500 flush=1s;" % d]),
            "AUDIT": "        # audit records: to PostgreSQL only (ailink_audit_pg)"}

    def _template(self, name):
        with open(os.path.join(self.bench, "conf", name)) as f:
            return fill(f.read(), self.values)

    def _write(self, rel, text):
        path = os.path.join(self.work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _server(self, folder, name, workers, single=False):
        d = os.path.join(self.work, folder)
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        port = self.ports[name]
        v = dict(self.values, DIR=d, PORT=port, MAIN=main_block(workers, single),
                 TEMP_PATHS=temp_paths(d))
        if name in TEMPLATES:
            v.update(self._backend_lines(name, d))
        with open(os.path.join(self.bench, "conf", TEMPLATES.get(name, name) + ".conf")) as f:
            conf = fill(f.read(), v)
        if name in GATEWAYS:
            self._write(os.path.join(folder, "ailink.yaml"), self._yaml(name != "gateway"))
        return self._write(os.path.join(folder, "nginx.conf"), conf)

    def _yaml(self, limits=False):
        providers, routes, creds = [], [], []
        for name in self.profiles:
            for kind, path in (("anthropic", "sse/%s/v1" % name),
                               ("openai", "osse/%s/v1" % name)):
                prov = "%s_%s" % (kind, name)
                providers.append("  %s:\n    type: %s\n    base_url: http://127.0.0.1:%d/%s\n"
                                 "    nginx_upstream: mock_pool\n"
                                 % (prov, kind, self.ports["mock"], path))
                prefix = ("claude-bench-" if kind == "anthropic" else "gpt-bench-") + name
                routes.append("  - { prefix: %s, provider: %s }\n" % (prefix, prov))
                creds.append("      %s: %s\n" % (prov, kind))
        v = dict(self.values, STREAM_PROVIDERS="".join(providers).rstrip("\n"),
                 STREAM_ROUTES="".join(routes).rstrip("\n"),
                 STREAM_CREDENTIALS="".join(creds).rstrip("\n"),
                 LIMITS_TOKEN=fixtures.limits_token_yaml() if limits else "",
                 LIMITS_POLICY=fixtures.limits_policy_yaml() if limits else "")
        with open(os.path.join(self.bench, "conf", "ailink.yaml")) as f:
            return fill(f.read(), v)

    def conf(self, name):
        return os.path.join(self.work, name, "nginx.conf")


class Nginx:
    """one nginx in the foreground, a direct child of this process"""

    def __init__(self, layout, name, port, wrapper=(), env=None):
        self.name, self.port = name, port
        self.dir = os.path.join(layout.work, name)
        self.cmd = list(wrapper) + [NGINX, "-p", self.dir + "/", "-c", layout.conf(name)]
        self.env = dict(os.environ)
        self.env.update(fixtures.KEYS)
        self.env.update(env or {})
        self.proc = None

    def start(self, timeout=60):
        if listening(self.port):
            raise RuntimeError("%s: port %d is taken" % (self.name, self.port))
        out = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.time() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                               self.log_tail()))
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("%s did not listen on %d" % (self.name, self.port))
            time.sleep(0.05)
        # the master listens before its workers run: wait for them
        if "master_process off;" not in open(self.cmd[-1]).read():
            while not self.workers() and time.time() < deadline:
                time.sleep(0.02)
        return self

    def workers(self):
        """the worker pids (children of the master)"""
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def stop(self, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return
        # graceful (flushes the audit log).  Repeated: a signal that lands
        # before nginx's event loop (a server stopped as soon as it listens)
        # sets the quit flag, but leaves it asleep in epoll_wait() until
        # something else wakes it.
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.proc.wait(0.1)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n=20):
        text = ""
        for f in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, f), errors="replace") as fh:
                    text += "".join(fh.readlines()[-n:])
            except OSError:
                pass
        return text

    def errors(self):
        """[alert]/[crit]/[emerg] lines of the error log (worker crashes)"""
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return [l.rstrip() for l in f if re.search(r"\[(alert|crit|emerg)\]", l)]
        except OSError:
            return []


def rss_kb(pids):
    """(VmRSS, VmHWM) in kB summed over pids"""
    rss = hwm = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return rss, hwm
