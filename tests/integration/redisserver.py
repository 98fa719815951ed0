"""A real redis-server for the integration tests (Redis store, issue 10):
started on a free port in a temporary directory with the settings sagad
requires (appendonly yes, appendfsync always, no RDB snapshots), stopped
afterwards, also when the test process dies (PR_SET_PDEATHSIG); and a
minimal RESP client for looking under the store (the tests have no redis
module).

One server per test process (shared()); each Sagad gets a database number
of its own (new_url())."""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
DATABASES = 2000


class RedisError(Exception):
    pass


class Client:
    """RESP2 over one TCP connection: command(*args) -> bytes | int | list
    | None, or RedisError for an error reply."""

    def __init__(self, port, db=0, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")
        if db:
            self.command("SELECT", db)

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("bad reply %r" % line[:40])


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _pdeathsig():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


class RedisServer:
    """redis-server on a free port, its AOF in its own directory.
    extra: more redis-server arguments (e.g. ("--appendfsync", "everysec"))."""

    def __init__(self, extra=(), start=True):
        self.dir = tempfile.mkdtemp(prefix="sagad-redis-")
        self.port = _free_port()
        self.extra = list(extra)
        self.proc = None
        self.restarts = 0
        atexit.register(self.cleanup)
        if start:
            self.start()

    @property
    def log_path(self):
        return os.path.join(self.dir, "redis.log")

    def start(self, timeout=15.0):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--databases", str(DATABASES), "--logfile", self.log_path
                ] + self.extra
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_pdeathsig)
        deadline = time.monotonic() + timeout
        while True:
            try:
                c = Client(self.port, timeout=2)
                try:
                    if c.command("PING") == b"PONG":
                        return self
                finally:
                    c.close()
            except (OSError, RedisError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("redis-server did not start (exit %s); log:\n%s"
                                     % (self.proc.poll(), self.log()))
            time.sleep(0.05)

    def log(self, last=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-last:])
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, sig=signal.SIGTERM, down_s=0.0):
        """Stops the server (SIGTERM, or SIGKILL: a crash) and starts it
        again on the same port and AOF, down_s seconds later."""
        self.stop(sig)
        time.sleep(down_s)
        self.restarts += 1
        return self.start()

    def cleanup(self):
        self.stop(signal.SIGKILL)
        if not os.environ.get("SAGAD_IT_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, db=0):
        return Client(self.port, db)

    def url(self, db):
        return "redis://127.0.0.1:%d/%d" % (self.port, db)


_shared = None
_next_db = 0


def shared():
    """The test process's server (started on first use)."""
    global _shared
    if _shared is None:
        _shared = RedisServer()
    return _shared


def new_url():
    """A database of the shared server nobody used yet, emptied."""
    global _next_db
    srv = shared()
    _next_db += 1
    if _next_db >= DATABASES:
        raise AssertionError("out of Redis databases")
    c = srv.client(_next_db)
    try:
        c.command("FLUSHDB")
    finally:
        c.close()
    return srv.url(_next_db)


def parse_url(url):
    """(port, db) of a redis://127.0.0.1:port/db URL."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    hostport, db = rest.split("/", 1)
    return int(hostport.rsplit(":", 1)[1]), int(db)
