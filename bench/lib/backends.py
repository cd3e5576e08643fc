"""The multi-node backends of scenario 12: a real redis-server (rate limits
and spend caps, `ailink_state_zone ... backend=redis`) and a real
PostgreSQL 15 cluster (`ailink_audit_pg`), both in the run's work folder,
on free local ports, started only when a scenario needs them and stopped
at the end.

PostgreSQL is made the way t/lib/AILink/Pg.pm makes it: initdb in a folder
of its own, a user and a database "ailink", run as the "postgres" user
when bench/run runs as root (initdb refuses root).
"""

import os
import shutil
import subprocess
import time

import servers

PG_BIN = os.environ.get("AILINK_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_USER = "ailink"
PG_PASSWORD = "ailink-bench"


def missing():
    """None when both backends can be started here, else what is missing"""
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        return "no redis-server (apt-get install redis-server)"
    for prog in ("initdb", "pg_ctl", "psql"):
        if not os.access(os.path.join(PG_BIN, prog), os.X_OK):
            return "no PostgreSQL 15 in %s (apt-get install postgresql)" % PG_BIN
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres user to run PostgreSQL as (initdb refuses root)"
    return None


def _wait_port(port, what, proc=None, timeout=30):
    deadline = time.time() + timeout
    while not servers.listening(port):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        if time.time() > deadline:
            raise RuntimeError("%s did not listen on %d" % (what, port))
        time.sleep(0.05)


class Redis:
    """redis-server in the foreground, a child of this process, no persistence"""

    def __init__(self, work, port):
        self.port, self.dir = port, os.path.join(work, "redis")
        self.proc = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        out = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", self.dir],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        _wait_port(self.port, "redis-server", self.proc)
        return self

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                              capture_output=True, text=True, timeout=10).stdout.strip()

    def clients(self):
        """connections other than this redis-cli's"""
        n = sum(1 for line in self.cli("CLIENT", "LIST").splitlines() if line)
        return max(0, n - 1)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Postgres:
    """a throwaway PostgreSQL 15 cluster under work/postgres"""

    def __init__(self, work, port):
        self.port, self.dir = port, os.path.join(work, "postgres")
        self.data = os.path.join(self.dir, "data")
        self.password_file = os.path.join(self.dir, "ailink.pass")
        self.running = False

    def _as_owner(self, cmd):
        return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd

    def _run(self, cmd):
        with open(os.path.join(self.dir, "cmd.log"), "ab") as log:
            rc = subprocess.run(self._as_owner(cmd), stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, timeout=120).returncode
        if rc != 0:
            raise RuntimeError("%s failed:\n%s" % (os.path.basename(cmd[0]), self.log_tail()))

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            # the work folder is mkdtemp's 0700: "postgres" may pass through
            # it to its own folder (and list nothing else)
            work = os.path.dirname(self.dir)
            os.chmod(work, os.stat(work).st_mode | 0o111)
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        su = os.path.join(self.dir, "su.pass")
        with open(su, "w") as f:
            f.write("postgres\n")
        os.chmod(su, 0o644)
        self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
                   "--pwfile", su, "-A", "scram-sha-256", "--auth-local", "trust",
                   "-E", "UTF8", "--no-sync"])
        self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data,
                   "-l", os.path.join(self.dir, "postgres.log"), "-w", "-t", "30",
                   "-o", "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off"
                   % (self.port, self.dir), "start"])
        self.running = True
        _wait_port(self.port, "PostgreSQL")
        self.psql("CREATE USER %s PASSWORD '%s'" % (PG_USER, PG_PASSWORD), "postgres")
        self.psql("CREATE DATABASE ailink OWNER %s" % PG_USER, "postgres")
        # the gateway's password_file: read by nginx's master (root or not)
        with open(self.password_file, "w") as f:
            f.write(PG_PASSWORD + "\n")
        return self

    def psql(self, sql, db="ailink"):
        """psql's answer to one statement (unaligned, tuples only), as the superuser"""
        out = subprocess.run(
            self._as_owner([os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t",
                            "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql]),
            capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("psql %r: %s" % (sql, out.stderr.strip()))
        return out.stdout.strip()

    def sessions(self, since):
        """the gateway's idle sessions opened since `since` (epoch seconds):
        connected, authenticated and past the first query (the table)"""
        return int(self.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = '%s'"
                             " AND state = 'idle' AND backend_start >= to_timestamp(%f)"
                             % (PG_USER, since), "postgres"))

    def audit_records(self):
        if self.psql("SELECT to_regclass('ailink_audit') IS NOT NULL") != "t":
            return 0
        return int(self.psql("SELECT count(*) FROM ailink_audit"))

    def conninfo(self):
        return "host=127.0.0.1 port=%d dbname=ailink user=%s" % (self.port, PG_USER)

    def log_tail(self, n=20):
        text = ""
        for f in ("cmd.log", "postgres.log"):
            try:
                with open(os.path.join(self.dir, f), errors="replace") as fh:
                    text += "".join(fh.readlines()[-n:])
            except OSError:
                pass
        return text

    def stop(self):
        if not self.running:
            return
        self.running = False
        try:
            self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "fast",
                       "-w", "stop"])
        except (RuntimeError, subprocess.TimeoutExpired):
            self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "immediate",
                       "-w", "stop"])


class Backends:
    """Redis and PostgreSQL together, as the multinode gateway uses them"""

    def __init__(self, work, ports):
        self.redis = Redis(work, ports["redis"])
        self.pg = Postgres(work, ports["postgres"])

    def start(self):
        try:
            self.redis.start()
            self.pg.start()
        except Exception:
            self.stop()
            raise
        return self

    def wait_connected(self, workers, since, timeout=120):
        """until every worker of a gateway started at `since` holds its
        Redis and its PostgreSQL connection (no request is sent: a gateway
        under callgrind counts none of this wait)"""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.redis.clients() >= workers and self.pg.sessions(since) >= workers:
                return
            time.sleep(0.2)
        raise RuntimeError("the gateway did not connect to Redis and PostgreSQL in %d s"
                           % timeout)

    def stop(self):
        for b in (self.pg, self.redis):
            try:
                b.stop()
            except Exception:
                pass
