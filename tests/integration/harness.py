"""Integration-test harness for sagad and sta-stubs (Python 3 stdlib only).

Each test module does:

    import harness
    ...
    if __name__ == "__main__":
        harness.main()

`harness.main()` strips `--sagad PATH` and `--stubs PATH` from sys.argv
(defaults: $SAGAD_BIN / $STUBS_BIN, else build-it/ or build/ of the repo)
and runs unittest. Every child process is killed when the test process
exits, even on failure or when killed itself (PR_SET_PDEATHSIG).
"""

import argparse
import atexit
import ctypes
import http.client as httpclient
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SAGAD = None
STUBS = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --------------------------------------------------------------- arguments


def _default_bin(name, env):
    if os.environ.get(env):
        return os.environ[env]
    for d in ("build-it", "build", "build-asan"):
        p = os.path.join(REPO, d, name)
        if os.access(p, os.X_OK):
            return p
    return os.path.join(REPO, "build", name)


def parse_args():
    global SAGAD, STUBS
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--sagad")
    ap.add_argument("--stubs")
    ns, rest = ap.parse_known_args(sys.argv[1:])
    SAGAD = os.path.abspath(ns.sagad or _default_bin("sagad", "SAGAD_BIN"))
    STUBS = os.path.abspath(ns.stubs or _default_bin("sta-stubs", "STUBS_BIN"))
    sys.argv = [sys.argv[0]] + rest


def main():
    parse_args()
    if file_mode():
        sys.stderr.write("file mode (SAGAD_IT_DEFINITIONS=1): sagad runs the STA saga "
                         "from a definitions file\n")
    if store_mode() != "sqlite":
        sys.stderr.write("store mode (SAGAD_IT_STORE=%s): each Sagad gets a fresh database\n"
                         % store_mode())
    prog = unittest.main(verbosity=2, exit=False)
    ok = prog.result.wasSuccessful()
    reports = sanitizer_reports()
    if reports:
        sys.stderr.write("\nSANITIZER REPORTS in child processes:\n%s\n" % "\n".join(reports[:80]))
        ok = False
    _kill_all()
    sys.exit(0 if ok else 1)


SANITIZER_RX = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                          r"WARNING: ThreadSanitizer|AddressSanitizer:DEADLYSIGNAL)")
_all_procs = []


def sanitizer_reports(procs=None):
    """Sanitizer report lines (with some context) printed by child processes."""
    out = []
    for p in (procs if procs is not None else list(_all_procs)):
        with p.cond:
            lines = list(p.lines["err"]) + list(p.lines["out"])
        for i, l in enumerate(lines):
            if SANITIZER_RX.search(l):
                out.append("[%s pid %d] %s" % (p.name, p.pid, "\n    ".join(lines[i:i + 12])))
    return out


def is_sanitized(path):
    """True if the binary was built with ASan (much larger RSS, slower)."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# ------------------------------------------------------- child processes

_children = []
_children_lock = threading.Lock()
_tmpdirs = []


def _pdeathsig():
    # Child dies with us even if we are SIGKILLed (e.g. by a ctest timeout).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _kill_all():
    with _children_lock:
        procs = list(_children)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in procs:
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    if _pg is not None:
        _pg.cleanup()
    if not os.environ.get("SAGAD_IT_KEEP"):
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_kill_all)


def _on_term(signum, frame):
    _kill_all()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


def tmpdir(prefix="sagad-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


class Proc:
    """A child process whose stdout and stderr are drained into memory by
    threads, so it never blocks on a full pipe."""

    MAX_LINES = 200000

    def __init__(self, argv, env=None, cwd=None, name=None):
        self.name = name or os.path.basename(argv[0])
        self.argv = list(argv)
        self.lines = {"out": [], "err": []}
        self.cond = threading.Condition()
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            preexec_fn=_pdeathsig,
        )
        with _children_lock:
            _children.append(self.p)
            _all_procs.append(self)
        self.pid = self.p.pid
        self._threads = [
            threading.Thread(target=self._drain, args=(self.p.stdout, "out"), daemon=True),
            threading.Thread(target=self._drain, args=(self.p.stderr, "err"), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, f, which):
        buf = self.lines[which]
        for raw in iter(f.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                if len(buf) >= self.MAX_LINES:
                    del buf[: self.MAX_LINES // 2]
                buf.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def output(self, which="err", last=60):
        with self.cond:
            return "\n".join(self.lines[which][-last:])

    def wait_line(self, regex, which="err", timeout=15.0, start=0):
        """First line (index >= start) of the stream matching regex; raises if
        the process exits or the timeout passes first."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                buf = self.lines[which]
                while i < len(buf):
                    m = rx.search(buf[i])
                    if m:
                        return m
                    i += 1
                if self.p.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise AssertionError(
                        "%s exited with status %s before printing /%s/; stderr:\n%s\nstdout:\n%s"
                        % (self.name, self.p.returncode, regex, self.output("err"), self.output("out"))
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "%s did not print /%s/ within %.1fs; stderr:\n%s"
                        % (self.name, regex, timeout, self.output("err"))
                    )
                self.cond.wait(min(left, 0.1))

    def count_lines(self, which="err"):
        with self.cond:
            return len(self.lines[which])

    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, timeout=None):
        rc = self.p.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends sig and waits; returns the exit status. SIGKILLs (and
        raises) if it does not exit within timeout."""
        if self.p.poll() is not None:
            return self.wait()
        self.p.send_signal(sig)
        try:
            return self.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.wait()
            raise AssertionError("%s did not exit within %.1fs of signal %d; stderr:\n%s"
                                 % (self.name, timeout, sig, self.output("err")))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        return self.wait()


def run(argv, env=None, timeout=20, cwd=None):
    """Runs a command to completion: (status, stdout text, stderr text)."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                       timeout=timeout, cwd=cwd, preexec_fn=_pdeathsig)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def clean_env(extra=None):
    """os.environ without SAGAD_* variables, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAD_")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    if extra:
        env.update(extra)
    return env


# ------------------------------------------------------------------ HTTP


def _encode(body):
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def _do(conn, method, path, body, headers):
    h = {}
    if body is not None:
        h["Content-Type"] = "application/json"
    if headers:
        h.update(headers)
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    return r.status, hdrs, data


def http(port, method, path, body=None, headers=None, timeout=30.0, host="127.0.0.1"):
    """One request on a fresh connection: (status, {lower-case header: value}, body bytes).
    body: bytes/str sent as is, anything else json.dumps'ed."""
    conn = httpclient.HTTPConnection(host, port, timeout=timeout)
    try:
        return _do(conn, method, path, _encode(body), headers)
    finally:
        conn.close()


class Client:
    """A keep-alive HTTP client (one connection, reopened when the server
    closed it). Not thread-safe: one per thread."""

    def __init__(self, port, host="127.0.0.1", timeout=30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None, retry=True):
        data = _encode(body)
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = httpclient.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                st, h, b = _do(self.conn, method, path, data, headers)
                if h.get("connection", "").lower() == "close":
                    self.close()
                return st, h, b
            except (httpclient.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    httpclient.CannotSendRequest, httpclient.BadStatusLine):
                self.close()
                # A stale keep-alive connection: retry once on a new one.
                if fresh or not retry or attempt == 1:
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def jbody(b):
    try:
        return json.loads(b)
    except ValueError:
        raise AssertionError("not JSON: %r" % (b[:300],))


def wait_until(fn, timeout=10.0, interval=0.05, msg="condition"):
    """Polls fn() until it returns a truthy value, which it returns."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %.1fs (last: %r)" % (msg, timeout, last))
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------- stubs


class Stubs:
    """A running sta-stubs on a free port (or `port`). With record=PATH every
    request it gets is also appended to PATH (--record), which recorded()
    reads back; restart() brings it back on the same port and file."""

    def __init__(self, *args, env=None, port=0, record=None):
        self.args = list(args)
        self.env = env
        self.record = record
        self.port = port
        self.start()

    def start(self):
        argv = [STUBS, "--listen", "127.0.0.1:%d" % self.port] + self.args
        if self.record:
            argv += ["--record", self.record]
        self.proc = Proc(argv, env=clean_env(self.env), name="sta-stubs")
        m = self.proc.wait_line(r"sta-stubs listening on ([0-9.]+):(\d+)", which="out", timeout=15)
        self.port = int(m.group(2))
        wait_until(self._healthy, 10, msg="sta-stubs /healthz")

    def restart(self):
        """Stops (SIGTERM: delayed answers go out at once) and starts again
        on the same port; the runtime config is back to the flags'."""
        if self.proc.alive():
            self.stop()
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start()
            except AssertionError:
                # The port may linger for a moment after the last close.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def recorded(self):
        """Every request recorded in the --record file so far (complete
        lines only), oldest first."""
        out = []
        with open(self.record, "rb") as f:
            for line in f.read().split(b"\n"):
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass  # a line being written right now
        return out

    def _healthy(self):
        try:
            return http(self.port, "GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    @property
    def anonymizer_url(self):
        return self.url("/anonymize")

    @property
    def ai_model_url(self):
        return self.url("/process")

    @property
    def events_url(self):
        return self.url("/events")

    def requests(self, saga_id=None, path=None):
        q = "/_requests" + ("?saga_id=%s" % saga_id if saga_id else "")
        st, _, b = http(self.port, "GET", q)
        assert st == 200, "GET /_requests -> %d %r" % (st, b[:200])
        reqs = jbody(b)["requests"]
        if path:
            reqs = [r for r in reqs if r["path"] == path]
        return reqs

    def clear(self):
        st, _, b = http(self.port, "DELETE", "/_requests")
        assert st in (200, 204), "DELETE /_requests -> %d %r" % (st, b[:200])

    def stats(self):
        st, _, b = http(self.port, "GET", "/_stats")
        assert st == 200, "GET /_stats -> %d %r" % (st, b[:200])
        return jbody(b)

    def config(self, obj):
        st, _, b = http(self.port, "POST", "/_config", body=json.dumps(obj))
        assert st in (200, 204), "POST /_config %r -> %d %r" % (obj, st, b[:200])

    def stop(self):
        return self.proc.stop()


# ----------------------------------------------------------------- sagad

# The STA saga of design §6 as a definitions file, without timeout_ms and
# retry: --step-timeout-ms, --step-retries and --retry-backoff-ms stay the
# defaults of its steps, as they are for the built-in saga.
STA_DEFINITIONS = {"default": "sta", "sagas": {"sta": {"version": 1, "steps": [
    {"name": "anonymizer", "http": {"url": "${SAGAD_ANONYMIZER_URL}"}, "output": "anonymized",
     "label": "Anonymizer"},
    {"name": "tokenizer", "publish": {"topic": "tokenizer_event"}, "output": "tokenizer_event",
     "label": "Tokenizer", "compensate": {"publish": {"topic": "tokenizer_compensation"}}},
    {"name": "ai_model", "http": {"url": "${SAGAD_AI_MODEL_URL}"}, "output": "ai_result",
     "label": "AI Model Process"}]}}}


def file_mode():
    """True when SAGAD_IT_DEFINITIONS=1: every Sagad runs the STA saga from
    a definitions file (STA_DEFINITIONS) instead of the built-in one."""
    return os.environ.get("SAGAD_IT_DEFINITIONS") == "1"


def store_mode():
    """The store every Sagad without an explicit db gets (SAGAD_IT_STORE):
    "sqlite" (default: a file in its workdir); "postgres": a fresh database
    on one PostgreSQL server started for this test process (pgserver.py);
    "redis": a fresh database of one redis-server per test process
    (redisserver.py)."""
    return os.environ.get("SAGAD_IT_STORE") or "sqlite"


def default_db(workdir):
    if store_mode() == "redis":
        import redisserver
        return redisserver.new_url()
    return fresh_store() or os.path.join(workdir, "saga.db")


_pg = None
_pg_dbs = 0


def pg_server():
    """The test process's PostgreSQL server (pgserver.PgServer), started
    on first use and stopped at exit."""
    global _pg
    if _pg is None:
        import pgserver
        _pg = pgserver.PgServer().start()
    return _pg


def fresh_store():
    """A --db value for a new, empty store in the current store mode, or
    None for SQLite (the Sagad's own file)."""
    global _pg_dbs
    if store_mode() != "postgres":
        return None
    _pg_dbs += 1
    return pg_server().create_db("it_%d_%d" % (os.getpid(), _pg_dbs))


# Columns that are BLOBs in SQLite (bytes in Python); the other BYTEA
# columns of PostgreSQL are TEXT in SQLite (str in Python).
_BLOB_COLS = {"request", "payload", "response"}


def _pg_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool) or isinstance(v, int):
        return str(int(v))
    return "'" + str(v).replace("'", "''") + "'"


# The outbox columns outbox() and outboxes() hand back, in order.
OUTBOX_KEYS = ("id", "topic", "payload", "compensation", "step_index", "status", "attempts",
               "target")


def pg_query(url, sql, args=()):
    """db_query for a PostgreSQL store: sql in SQLite's dialect as the tests
    write it ('?' parameters), rows as tuples with SQLite's Python types."""
    for a in args:
        sql = sql.replace("?", _pg_literal(a), 1)
    sql = sql.replace("CAST(request AS TEXT)", "convert_from(request, 'UTF8')")
    db = url.rsplit("/", 1)[1]
    out = pg_server().query(db, sql, header=True)
    if not out:
        return []
    names, rows = out[0], out[1:]
    res = []
    for r in rows:
        vals = []
        for name, v in zip(names, r):
            if v is not None and v.startswith("\\x"):
                v = bytes.fromhex(v[2:])
                if name not in _BLOB_COLS:
                    v = v.decode("utf-8", "replace")
            elif v is not None and re.fullmatch(r"-?\d+", v):
                v = int(v)
            vals.append(v)
        res.append(tuple(vals))
    return res


def write_json_atomic(path, obj):
    """Writes obj (json.dumps'ed; str or bytes as is) to path through a
    rename, so that a reader never sees half a file."""
    data = obj if isinstance(obj, (str, bytes)) else json.dumps(obj, indent=1)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Sagad:
    """A running sagad on a free port with its own SQLite file (or its own
    database in store mode, see store_mode())."""

    LISTEN_RX = r"sagad listening on (\S+):(\d+)"

    def __init__(self, stubs=None, db=None, step_timeout_ms=3000, args=(), env=None,
                 bus=None, start=True, workdir=None, port=None, definitions=None):
        """port: listen on this fixed port and poll /healthz instead of
        reading the port from the log (for --log-level warn|error).
        definitions: a definitions file for --definitions, as a path or as
        a dict (or text) written to <workdir>/definitions.json; None = the
        STA saga from a file in file mode (SAGAD_IT_DEFINITIONS=1), else
        the built-in one; False = the built-in one. With a file and stubs,
        sagad's environment has SAGAD_ANONYMIZER_URL, SAGAD_AI_MODEL_URL
        and STUBS_URL (http://127.0.0.1:<port>) pointing at them (a
        variable in env wins), and no --anonymizer-url/--ai-model-url."""
        self.workdir = workdir or tmpdir()
        self.db = db or default_db(self.workdir)
        self.stubs = stubs
        self.fixed_port = port
        if definitions is None and file_mode():
            definitions = STA_DEFINITIONS
        self.definitions = None  # the file's path
        if definitions is not None and definitions is not False:
            if isinstance(definitions, str) and not definitions.lstrip().startswith("{"):
                self.definitions = definitions
            else:
                self.definitions = os.path.join(self.workdir, "definitions.json")
                write_json_atomic(self.definitions, definitions)
        argv = [SAGAD, "--listen", "127.0.0.1:%d" % (port or 0), "--db", self.db,
                "--step-timeout-ms", str(step_timeout_ms)]
        if self.definitions:
            argv += ["--definitions", self.definitions]
        if self.db.startswith(("postgres", "redis")) and "--lease-ms" not in args:
            # A sagad killed by a test resumes on its restart once its lease
            # expires: 2 s rather than the default 10 keeps the suite quick.
            argv += ["--lease-ms", "2000"]
        if stubs is not None:
            if not self.definitions:
                argv += ["--anonymizer-url", stubs.anonymizer_url,
                         "--ai-model-url", stubs.ai_model_url]
            argv += ["--bus", bus or stubs.events_url]
        elif bus:
            argv += ["--bus", bus]
        self.argv = argv + list(args)
        self.env = clean_env(env)
        if stubs is not None and self.definitions:
            # The file's ${...} URLs (also the twins of the flags not given).
            urls = {"SAGAD_ANONYMIZER_URL": stubs.anonymizer_url,
                    "SAGAD_AI_MODEL_URL": stubs.ai_model_url, "STUBS_URL": stubs.url("")}
            for k, v in urls.items():
                if not (env and k in env):  # a test's own value wins
                    self.env[k] = v
        self.step_timeout_ms = step_timeout_ms
        self.proc = None
        self.port = None
        self.generations = []
        if start:
            self.start()

    def start(self, timeout=20, env=None):
        """env: extra variables for this start only (e.g. SAGAD_CRASH_AT)."""
        penv = dict(self.env, **env) if env else self.env
        self.proc = Proc(self.argv, env=penv, cwd=self.workdir, name="sagad")
        self.generations.append(self.proc)
        if self.fixed_port:
            self.port = self.fixed_port
            wait_until(lambda: self._healthy() or not self.proc.alive(), timeout, msg="sagad /healthz")
            if not self.proc.alive():
                self.proc.wait()
                raise AssertionError("sagad exited with %s; stderr:\n%s"
                                     % (self.proc.p.returncode, self.proc.output()))
            return self
        m = self.proc.wait_line(self.LISTEN_RX, which="err", timeout=timeout)
        self.port = int(m.group(2))
        wait_until(self._healthy, 10, msg="sagad /healthz")
        return self

    def _healthy(self):
        try:
            return http(self.port, "GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=20):
        return self.proc.stop(sig, timeout)

    def kill9(self):
        return self.proc.kill()

    def write_definitions(self, obj):
        """Replaces the definitions file (a dict, or text as is); then
        reload() makes sagad read it."""
        assert self.definitions, "this sagad has no --definitions file"
        write_json_atomic(self.definitions, obj)

    def reload(self):
        """SIGHUP: sagad reads its definitions file again."""
        self.proc.send_signal(signal.SIGHUP)

    def restart(self):
        if self.proc and self.proc.alive():
            self.stop()
        return self.start()

    def log(self, last=80):
        return "\n".join("--- generation %d ---\n%s" % (i, p.output("err", last))
                         for i, p in enumerate(self.generations))

    # HTTP
    def http(self, method, path, body=None, headers=None, timeout=60.0):
        return http(self.port, method, path, body, headers, timeout)

    def post_saga(self, body, headers=None, timeout=60.0):
        """(status, headers, parsed JSON body)."""
        st, h, b = self.http("POST", "/saga", body, headers, timeout)
        return st, h, jbody(b)

    def post_type(self, saga_type, body, headers=None, timeout=60.0):
        """POST /sagas/{type}: (status, headers, parsed JSON body)."""
        st, h, b = self.http("POST", "/sagas/" + saga_type, body, headers, timeout)
        return st, h, jbody(b)

    def get_saga(self, sid):
        st, _, b = self.http("GET", "/saga/" + sid)
        assert st == 200, "GET /saga/%s -> %d %r" % (sid, st, b[:300])
        return jbody(b)

    def wait_saga(self, sid, pred, timeout=20.0, msg=None):
        box = {}

        def check():
            rec = self.get_saga(sid)
            box["last"] = rec
            return rec if pred(rec) else None

        try:
            return wait_until(check, timeout, 0.05, msg or "saga %s condition" % sid)
        except AssertionError as e:
            raise AssertionError("%s; last record: %s" % (e, json.dumps(box.get("last"))[:2000]))

    def wait_status(self, sid, status, timeout=20.0):
        return self.wait_saga(sid, lambda r: r["overall_status"] == status, timeout,
                              "saga %s overall_status == %s" % (sid, status))

    # store
    def db_query(self, sql, args=()):
        if self.db.startswith("postgres"):
            return pg_query(self.db, sql, args)
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def outbox(self, saga_id):
        keys = OUTBOX_KEYS
        if self.db.startswith("redis://"):
            out = []
            with self._redis() as c:
                for m in c.command("ZRANGE", "sagad:sev:" + saga_id, 0, -1):
                    h = c.command("HGETALL", b"sagad:event:" + m[21:])
                    h = dict(zip(h[0::2], h[1::2]))
                    row = {}
                    for k in keys:
                        v = h.get(k.encode())
                        if k in ("compensation", "step_index", "status", "attempts"):
                            v = int(v)
                        elif v is not None and k != "payload":
                            v = v.decode()
                        row[k] = v
                    out.append(row)
            return out
        rows = self.db_query(
            "SELECT id, topic, payload, compensation, step_index, status, attempts, target "
            "FROM outbox WHERE saga_id = ? ORDER BY created_us", (saga_id,))
        return [dict(zip(keys, r)) for r in rows]

    def outboxes(self, saga_ids):
        """{saga id: outbox(saga id)} for many sagas: one query on a SQL store
        (on PostgreSQL every query is a psql process)."""
        if self.db.startswith("redis://"):
            return {sid: self.outbox(sid) for sid in saga_ids}
        keys = OUTBOX_KEYS
        out = {sid: [] for sid in saga_ids}
        rows = self.db_query(
            "SELECT saga_id, id, topic, payload, compensation, step_index, status, attempts, target "
            "FROM outbox ORDER BY created_us")
        for r in rows:
            if r[0] in out:
                out[r[0]].append(dict(zip(keys, r[1:])))
        return out

    # Store-neutral looks under the store (SQLite file or Redis database).
    def _redis(self):
        import contextlib
        import redisserver
        port, db = redisserver.parse_url(self.db)
        return contextlib.closing(redisserver.Client(port, db))

    def saga_counts(self):
        """{status (0 IN_PROGRESS, 1 COMPLETED, 2 FAILED): number of sagas}."""
        if self.db.startswith("redis://"):
            with self._redis() as c:
                return {st: n for st in (0, 1, 2)
                        for n in [c.command("ZCARD", "sagad:sagas:st:%d" % st)] if n}
        return dict(self.db_query("SELECT status, count(*) FROM sagas GROUP BY 1"))

    def unsettled_count(self):
        """Sagas IN_PROGRESS or with a compensation PENDING."""
        if self.db.startswith("redis://"):
            with self._redis() as c:
                ids = set(c.command("ZRANGE", "sagad:sagas:st:0", 0, -1))
                for m in c.command("ZRANGE", "sagad:sagas", 0, -1):
                    if c.command("HGET", b"sagad:saga:" + m[21:], "comp_status") == b"1":
                        ids.add(m)
                return len(ids)
        return self.db_query("SELECT count(*) FROM sagas WHERE status = 0 OR comp_status = 1")[0][0]

    def all_outbox(self):
        """Every outbox entry: dicts of id, saga_id, topic, compensation,
        step_index, status, attempts."""
        keys = ("id", "saga_id", "topic", "compensation", "step_index", "status", "attempts")
        if self.db.startswith("redis://"):
            out = []
            with self._redis() as c:
                for m in c.command("ZRANGE", "sagad:events", 0, -1):
                    h = c.command("HGETALL", b"sagad:event:" + m[21:])
                    h = dict(zip(h[0::2], h[1::2]))
                    row = {}
                    for k in keys:
                        v = h.get(k.encode())
                        row[k] = int(v) if k in keys[3:] else (v.decode() if v is not None
                                                               else None)
                    out.append(row)
            return out
        return [dict(zip(keys, r)) for r in self.db_query(
            "SELECT id, saga_id, topic, compensation, step_index, status, attempts FROM outbox")]

    def saga_count(self, status=None):
        counts = self.saga_counts()
        return sum(counts.values()) if status is None else counts.get(status, 0)

    def has_saga(self, sid):
        if self.db.startswith("redis://"):
            with self._redis() as c:
                return c.command("EXISTS", "sagad:saga:" + sid) == 1
        return len(self.db_query("SELECT id FROM sagas WHERE id = ?", (sid,))) == 1

    def saga_fields(self, field, status=None):
        """The field (request, error, ...) of every saga (of a status)."""
        if self.db.startswith("redis://"):
            key = "sagad:sagas" if status is None else "sagad:sagas:st:%d" % status
            with self._redis() as c:
                return [c.command("HGET", b"sagad:saga:" + m[21:], field)
                        for m in c.command("ZRANGE", key, 0, -1)]
        where = "" if status is None else " WHERE status = %d" % int(status)
        return [r[0] for r in self.db_query("SELECT %s FROM sagas%s" % (field, where))]

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


# ------------------------------------------------------------ test bases


OK_RESULT = "Saga completada exitosamente"
ISO_RX = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
UUID_RX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EVENT_PENDING, EVENT_DELIVERED, EVENT_WITHDRAWN = 0, 1, 2


class SagadCase(unittest.TestCase):
    """Base: one sta-stubs and one sagad shared by the tests of a class.
    Subclasses may override STUB_ARGS / SAGAD_ARGS / STEP_TIMEOUT_MS."""

    STUB_ARGS = ()
    SAGAD_ARGS = ()
    STEP_TIMEOUT_MS = 3000

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs(*cls.STUB_ARGS)
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.sagad = Sagad(cls.stubs, step_timeout_ms=cls.STEP_TIMEOUT_MS, args=cls.SAGAD_ARGS)
        cls.addClassCleanup(lambda: cls.sagad.proc.kill())

    def run(self, result=None):
        # Print sagad's last log lines next to a failure.
        n_before = len(result.failures) + len(result.errors) if result is not None else 0
        out = super().run(result)
        r = result if result is not None else out
        if r is not None and len(r.failures) + len(r.errors) > n_before:
            sg = getattr(type(self), "sagad", None)
            if sg is not None and sg.proc is not None:
                sys.stderr.write("\n----- sagad stderr (last lines) -----\n%s\n" % sg.log(40))
        return out

    def tearDown(self):
        sg = getattr(self, "sagad", None)
        if sg is not None and getattr(sg, "generations", None):
            reports = sanitizer_reports(sg.generations)
            self.assertEqual(reports, [], "sanitizer reports from sagad")

    def assertIso(self, v, what="timestamp"):
        self.assertIsInstance(v, str, what)
        self.assertRegex(v, ISO_RX, what)

    def assertUuid(self, v, what="id"):
        self.assertIsInstance(v, str, what)
        self.assertRegex(v, UUID_RX, what)
