"""The Redis store with a real redis-server (issue 10), the guarantees that
test_store_outage.py checks for SQLite files:
- Redis restarted (SIGTERM, and killed with SIGKILL) in the middle of a
  load: every saga a client was answered 202 for finishes, none is lost
  (appendfsync always), /readyz says 503 with the reason while Redis is
  down and 200 once it is back, and the store's layout stays coherent;
- a second sagad on the same Redis database runs beside the first, each
  with its own lease and its own sagas (design §7; the takeover and the
  fencing are test_multi_instance.py's, SAGAD_IT_SHARED=redis);
- a server without appendonly yes / appendfsync always is refused, naming
  the settings, unless the URL says ?durability=relaxed.

Each test starts its own redis-server (tests/integration/redisserver.py);
the module runs in both suite modes, since it chooses its store itself."""

import os
import shutil
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import invariants  # noqa: E402
import redisserver  # noqa: E402
from harness import Sagad, Stubs, jbody, wait_until  # noqa: E402

N_SAGAS = 240
THREADS = 4
NEEDS_REDIS = unittest.skipUnless(shutil.which(redisserver.REDIS_SERVER),
                                  "redis-server is not installed (scripts/deps.sh installs it)")


@NEEDS_REDIS
class RedisRestartTest(harness.SagadCase):
    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs("--quiet")
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        # Step 3 takes a while, so that many sagas are in flight when
        # Redis goes away.
        self.stubs.config({"anonymizer": None, "tokenizer": None,
                           "ai_model": {"delay_ms": 300}})
        self.srv = redisserver.RedisServer()
        self.addCleanup(self.srv.cleanup)
        # The lease outlasts the outage: a sagad that cannot renew its
        # lease for longer stops (status 3) rather than risk running
        # sagas another took over.
        self.sagad = Sagad(self.stubs, db=self.srv.url(1), step_timeout_ms=10000,
                           args=("--log-level", "warn", "--lease-ms", "15000"),
                           port=harness.free_port())
        type(self).sagad = self.sagad
        self.addCleanup(lambda: self.sagad.proc.alive() and self.sagad.kill9())

    def load_with_restart(self, sig):
        acked, refused, errors = [], [], []
        lock = threading.Lock()
        counter = iter(range(N_SAGAS))

        def post():
            c = harness.Client(self.sagad.port, timeout=60)
            try:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    try:
                        st, _, b = c.request("POST", "/saga", '{"redis_restart":%d}' % i,
                                             {"Prefer": "respond-async"}, retry=False)
                    except OSError as e:
                        errors.append(repr(e))
                        c.close()
                        c = harness.Client(self.sagad.port, timeout=60)
                        continue
                    with lock:
                        if st == 202:
                            acked.append(jbody(b)["id"])
                        else:
                            refused.append((st, b[:200]))
                    time.sleep(0.01)
            finally:
                c.close()

        ready = []
        stop = threading.Event()

        def watch_ready():
            while not stop.is_set():
                try:
                    st, _, b = self.sagad.http("GET", "/readyz", timeout=5)
                    ready.append((st, b[:300]))
                except OSError:
                    pass
                stop.wait(0.05)

        watcher = threading.Thread(target=watch_ready, daemon=True)
        watcher.start()
        ths = [threading.Thread(target=post) for _ in range(THREADS)]
        for t in ths:
            t.start()
        wait_until(lambda: len(acked) >= N_SAGAS // 4, 60, msg="a quarter of the sagas posted")
        self.srv.restart(sig, down_s=4.0)
        for t in ths:
            t.join(120)
        wait_until(lambda: self.sagad.http("GET", "/readyz")[0] == 200, 30, msg="ready again")
        stop.set()
        watcher.join(5)
        self.assertEqual(errors, [])
        self.assertGreater(len(acked), N_SAGAS // 4)
        # Redis was away: sagad said so, with the reason.
        down = [b for st, b in ready if st == 503]
        self.assertTrue(down, "no /readyz 503 while Redis was down")
        self.assertIn(b"Redis", down[-1])
        # Every saga a client was told about finishes; none was lost.
        for sid in acked:
            rec = self.sagad.wait_status(sid, "COMPLETED", 60)
            self.assertEqual(rec["step3_status"], "COMPLETED", rec)
        wait_until(lambda: self.sagad.saga_count(0) == 0, 60, msg="nothing IN_PROGRESS")
        # POSTs refused while Redis was down stored nothing half-way: the
        # store holds the acknowledged sagas (and at most the few whose
        # commit was in flight when the server died, finished too).
        self.assertGreaterEqual(self.sagad.saga_count(1), len(acked))
        self.assertEqual(self.sagad.saga_count(), self.sagad.saga_count(1))
        for st, b in refused:
            self.assertEqual(st, 503, b)
        rep = invariants.Report()
        invariants._check_store(rep, self.sagad)
        self.assertEqual(rep.violations, [], rep.text())
        doubts = [l for l in self.sagad.proc.output("err", 100000).splitlines()
                  if "unknown outcome" in l]
        sys.stderr.write("\n%d sagas acknowledged, %d refused while Redis restarted (%s); "
                         "%d batches in doubt resolved by removal\n"
                         % (len(acked), len(refused), signal.Signals(sig).name, len(doubts)))

    def test_redis_restart_mid_load_loses_no_saga(self):
        self.load_with_restart(signal.SIGTERM)

    def test_redis_crash_mid_load_loses_no_saga(self):
        self.load_with_restart(signal.SIGKILL)


@NEEDS_REDIS
class RedisSharedTest(unittest.TestCase):
    def lease(self, sagad):
        m = sagad.proc.wait_line(r"store lease (\S+)/(\d+):", timeout=15)
        return m.group(1), int(m.group(2))

    def test_second_sagad_on_the_same_database_runs_its_own_sagas(self):
        srv = redisserver.RedisServer()
        self.addCleanup(srv.cleanup)
        stubs = Stubs("--quiet")
        self.addCleanup(stubs.proc.kill)
        first = Sagad(stubs, db=srv.url(3))
        self.addCleanup(first.proc.kill)
        second = Sagad(stubs, db=srv.url(3))
        self.addCleanup(second.proc.kill)
        (o1, e1), (o2, e2) = self.lease(first), self.lease(second)
        self.assertNotEqual(o1, o2)
        self.assertGreater(e2, e1, "each lease a larger epoch")
        ids = {}
        for node, owner in ((first, o1), (second, o2)):
            st, _, b = node.post_saga({"x": owner})
            self.assertEqual(st, 200, b)
            ids[owner] = b["id"]
        c = srv.client(3)
        self.addCleanup(c.close)
        for owner, sid in ids.items():
            # Each saga belongs to the process that ran it; both see both.
            self.assertEqual(c.command("HGET", "sagad:saga:" + sid, "owner"), owner.encode())
            for node in (first, second):
                self.assertEqual(node.get_saga(sid)["overall_status"], "COMPLETED")
        leases = c.command("HGETALL", "sagad:leases")
        self.assertEqual(sorted(leases[0::2]), sorted([o1.encode(), o2.encode()]))
        # A clean stop gives the lease up: the next sagad takes it over at
        # once (and the other keeps running).
        first.stop()
        t0 = time.monotonic()
        again = Sagad(stubs, db=srv.url(3))
        self.addCleanup(again.proc.kill)
        o3, e3 = self.lease(again)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertGreater(e3, e2)
        harness.wait_until(lambda: o1.encode() not in c.command("HKEYS", "sagad:leases"), 10,
                           msg="the stopped sagad's lease removed")
        self.assertEqual(second.http("GET", "/healthz")[0], 200)
        st, _, b = second.post_saga({"x": "after"})
        self.assertEqual(st, 200, b)
        # Another database of the same server is another store.
        other = Sagad(stubs, db=srv.url(4))
        self.addCleanup(other.proc.kill)
        st, _, b = other.post_saga({"x": 1})
        self.assertEqual(st, 200, b)


@NEEDS_REDIS
class RedisSettingsTest(unittest.TestCase):
    def refused(self, extra, needle):
        srv = redisserver.RedisServer(extra=extra)
        self.addCleanup(srv.cleanup)
        argv = [harness.SAGAD, "--listen", "127.0.0.1:0", "--db", srv.url(0)]
        rc, _, err = harness.run(argv, timeout=30, env=harness.clean_env())
        self.assertNotEqual(rc, 0)
        self.assertIn("appendonly yes and appendfsync always", err)
        self.assertIn(needle, err)
        return srv

    def test_without_fsync_always_refused(self):
        srv = self.refused(("--appendfsync", "everysec"), "appendfsync everysec")
        # Unless the URL accepts it explicitly.
        stubs = Stubs("--quiet")
        self.addCleanup(stubs.proc.kill)
        sg = Sagad(stubs, db=srv.url(0) + "?durability=relaxed")
        self.addCleanup(sg.proc.kill)
        st, _, b = sg.post_saga({"relaxed": 1})
        self.assertEqual(st, 200, b)

    def test_without_aof_refused(self):
        self.refused(("--appendonly", "no"), "appendonly no")

    def test_config_disabled_said_so(self):
        self.refused(("--rename-command", "CONFIG", ""), "CONFIG is disabled")


if __name__ == "__main__":
    harness.main()
