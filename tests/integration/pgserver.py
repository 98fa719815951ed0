#!/usr/bin/env python3
"""A throwaway PostgreSQL server for the tests: initdb into a temporary
directory, postgres on 127.0.0.1 at a free port (and a unix socket inside
the directory), fsync on, stopped afterwards.

initdb and postgres refuse to run as root (and CI runs as root): then both
run as the unprivileged user `nobody`, which owns the data directory.

As a module: PgServer().start(), .create_db(), .url(db), .query(db, sql),
.restart(), .stop(). As a command, for the C unit tests:

    pgserver.py run -- PROGRAM ARGS...

starts a server, runs PROGRAM with SG_TEST_STORE_URL=postgres://...:PORT
(no database: each test creates its own), stops the server whatever
happens, and exits with PROGRAM's status."""

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PG_BIN = os.environ.get("SAGAD_PG_BIN", "/usr/lib/postgresql/15/bin")
PSQL = shutil.which("psql") or os.path.join(PG_BIN, "psql")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _pdeathsig():
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class PgServer:
    def __init__(self, user="nobody"):
        self.root = os.geteuid() == 0
        self.pw = pwd.getpwnam(user) if self.root else None
        self.dir = None
        self.port = None
        self.proc = None
        self.log = None

    def _preexec(self):
        os.setsid()
        if self.pw:
            os.setgroups([])
            os.setgid(self.pw.pw_gid)
            os.setuid(self.pw.pw_uid)
        # After the uid change: a credential change clears it.
        _pdeathsig()

    def _chown(self, path):
        if self.pw:
            os.chown(path, self.pw.pw_uid, self.pw.pw_gid)

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def sock(self):
        return os.path.join(self.dir, "sock")

    def start(self, timeout=60):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="sagad-pg-")
            os.chmod(self.dir, 0o755)
            self._chown(self.dir)
            os.mkdir(self.sock)
            self._chown(self.sock)
            out = subprocess.run(
                [os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
                cwd=self.dir, preexec_fn=self._preexec, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError("initdb failed:\n%s%s" % (out.stdout, out.stderr))
            self.port = _free_port()
        self.log = open(os.path.join(self.dir, "postgres.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(PG_BIN, "postgres"), "-D", self.data, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + self.sock,
             "-c", "fsync=on", "-c", "max_connections=300", "-c", "shared_buffers=64MB",
             "-c", "log_min_messages=warning"],
            cwd=self.dir, preexec_fn=self._preexec, stdout=self.log, stderr=self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited with %s:\n%s" % (self.proc.returncode,
                                                                     self.logtail()))
            r = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                "-d", "postgres", "-Atc", "SELECT 1"], capture_output=True)
            if r.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("postgres did not come up:\n" + self.logtail())

    def logtail(self, n=40):
        try:
            with open(os.path.join(self.dir, "postgres.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout=30):
        """Fast shutdown (SIGINT); SIGKILL past the timeout."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def kill(self):
        """SIGKILL, as a crash (the next start recovers from the WAL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def crash(self, timeout=30):
        """Immediate shutdown (SIGQUIT): every session ends at once, nothing
        is flushed beyond what was committed, and the next start recovers
        from the WAL, as after a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def restart(self, down_s=0.0, crash=False):
        """Stops (fast shutdown, or a crash) and starts on the same port."""
        if crash:
            self.crash()
        else:
            self.stop()
        if down_s:
            time.sleep(down_s)
        return self.start()

    def cleanup(self):
        self.stop()
        if self.dir and not os.environ.get("SAGAD_IT_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def base_url(self):
        return "postgres://postgres@127.0.0.1:%d" % self.port

    def url(self, db):
        return "%s/%s" % (self.base_url(), db)

    def psql(self, db, sql):
        r = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-AtX", "-F", "\x1f", "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("psql %s: %s" % (db, r.stderr.strip()))
        return r.stdout

    def create_db(self, name):
        self.psql("postgres", 'CREATE DATABASE "%s"' % name)
        return self.url(name)

    def drop_db(self, name):
        self.psql("postgres", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def query(self, db, sql, header=False):
        """Rows of sql as lists of strings (None for NULL), after a row of
        the column names if header; sql must not return values holding
        newlines or the field separator."""
        r = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-AX" + ("" if header else "t"),
                            "-F", "\x1f", "-P", "null=\x01", "-P", "footer=off"],
                           input=sql, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("psql %s: %s" % (db, r.stderr.strip()))
        rows = []
        for line in r.stdout.splitlines():
            rows.append([None if v == "\x01" else v for v in line.split("\x1f")])
        return rows


def main(argv):
    if len(argv) < 3 or argv[1] != "run" or "--" not in argv:
        sys.stderr.write(__doc__)
        return 2
    cmd = argv[argv.index("--") + 1:]
    pg = PgServer()

    def on_term(signum, frame):
        pg.cleanup()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        pg.start()
        env = dict(os.environ, SG_TEST_STORE_URL=pg.base_url())
        return subprocess.run(cmd, env=env).returncode
    finally:
        pg.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
