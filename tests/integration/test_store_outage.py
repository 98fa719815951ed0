"""A store that refuses writes for a while: another process holds SQLite's
write lock past the busy timeout, the disk is full (a small tmpfs), the
database turns read-only (immutable files), or the database file is
replaced under sagad (moved away, another file put in its place). In each:
sagas in flight wait and then finish, a new POST /saga answers 503 with the
store's reason, /readyz is 503 with it, nothing is half-written, and sagad
recovers by itself once the store does. A second sagad on the same
database is refused.

With SAGAD_IT_STORE=postgres (integration/test_store_outage@postgres) the
lock is a PostgreSQL table lock held past sagad's lock_timeout, the cases
about SQLite files skip, and the database server is restarted (crashed)
under load instead: no saga that was answered is lost.

The disk-full and read-only cases need root (mount, chattr) and an ext2/3/4
temp directory for chattr; they skip, saying why, where those are missing."""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import invariants  # noqa: E402
from harness import Sagad, Stubs, wait_until  # noqa: E402


SQLITE_ONLY = ("about SQLite files (write lock, full disk, read-only or replaced file) and "
               "their PostgreSQL equivalents; the Redis ones are in test_redis_store.py")


@unittest.skipIf(harness.store_mode() == "redis", SQLITE_ONLY)
class StoreOutageTest(harness.SagadCase):
    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})
        self.sagad = Sagad(self.stubs, step_timeout_ms=10000)
        type(self).sagad = self.sagad
        self.addCleanup(lambda: self.sagad.proc.alive() and self.sagad.kill9())

    def hold_write_lock(self, seconds):
        """Holds SQLite's write lock from another connection for `seconds`
        (longer than sagad's 5 s busy timeout); on PostgreSQL, a lock on
        the tables past sagad's lock_timeout (5 s)."""
        if self.sagad.db.startswith("postgres"):
            lock = PgTableLock(self.sagad.db)
            lock.take()
            t = threading.Timer(seconds, lock.release)
            t.start()
            return t
        db = sqlite3.connect(self.sagad.db, timeout=10, isolation_level=None,
                             check_same_thread=False)
        db.execute("BEGIN IMMEDIATE")
        t = threading.Timer(seconds, lambda: (db.execute("COMMIT"), db.close()))
        t.start()
        return t

    def test_sagas_wait_for_the_store_and_finish(self):
        # Step 3 fails slowly, so its FAILED + compensation write lands while
        # the store is locked.
        self.stubs.config({"ai_model": {"status": 500, "delay_ms": 500}})
        results = {}

        def post(i):
            results[i] = self.sagad.post_saga({"outage": i})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        wait_until(lambda: self.stubs.stats()["process"] >= 5, 10, msg="step 3 reached")
        timer = self.hold_write_lock(10.0)
        # Once a transaction has waited out the 5 s busy timeout and failed,
        # the store reports itself unhealthy while it retries.
        wait_until(lambda: self.sagad.http("GET", "/readyz")[0] == 503, 9.5,
                   msg="/readyz 503 while the store is locked")
        self.assertEqual(len(results), 0)  # nobody answered from an uncommitted state
        for t in threads:
            t.join(30)
        timer.join()
        self.assertEqual(len(results), 5)
        for i, (st, _, b) in results.items():
            self.assertEqual(st, 400, b)
            self.assertTrue(b["detail"]["error"].startswith("Error en Step 3 (AI Model Process): "))
            sid = b["detail"]["id"]
            rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 20)
            self.assertEqual(rec["overall_status"], "FAILED")
            self.assertEqual(rec["step3_status"], "FAILED")
        wait_until(lambda: self.sagad.http("GET", "/readyz")[0] == 200, 10, msg="ready again")
        st, _, b = self.sagad.http("GET", "/sagas?status=IN_PROGRESS")
        self.assertEqual(harness.jbody(b)["sagas"], [])

    def test_second_sagad_on_the_same_store_is_refused(self):
        if self.sagad.db.startswith("postgres"):
            self.skipTest("several sagad share a PostgreSQL database through leases: "
                          "test_multi_instance")
        argv = [harness.SAGAD, "--listen", "127.0.0.1:0", "--db", self.sagad.db]
        rc, _, err = harness.run(argv, timeout=20, env=harness.clean_env())
        self.assertNotEqual(rc, 0)
        self.assertIn("in use by another sagad", err)
        st, _, _ = self.sagad.http("GET", "/healthz")
        self.assertEqual(st, 200)


class PgTableLock:
    """Another session holding an EXCLUSIVE lock on sagad's tables: its
    writes wait, then fail after lock_timeout, as SQLite's do after the
    busy timeout. Reads still run."""

    def __init__(self, url):
        pg = harness.pg_server()
        self.p = subprocess.Popen(
            ["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-X", "-q", "-At",
             "-v", "ON_ERROR_STOP=1", "-d", url.rsplit("/", 1)[1]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def take(self):
        self.p.stdin.write("BEGIN; LOCK TABLE sagas, steps, outbox IN EXCLUSIVE MODE;\n"
                           "SELECT 'locked';\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert "locked" in line, line

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("COMMIT;\n")
            self.p.stdin.close()
            self.p.wait(10)
            self.p.stdout.close()


def skip_on_postgres(test):
    if harness.store_mode() == "postgres":
        test.skipTest("about SQLite files (SAGAD_IT_STORE=postgres: "
                      "see test_postgres_restart_mid_load)")


@unittest.skipIf(harness.store_mode() == "redis", SQLITE_ONLY)
class StoreFailureTest(unittest.TestCase):
    """Each test: a sagad on its own database, sagas in flight (sync ones in
    step 3, async ones in step 1), then the store breaks; new starts are
    refused with 503 and the reason, /readyz says it, the store heals, and
    everything finishes as designed with the invariants holding."""

    INFLIGHT = 3  # of each kind
    SLOW_MS = 1500  # how long the in-flight sagas' steps take

    @classmethod
    def setUpClass(cls):
        cls.record = os.path.join(harness.tmpdir(), "stub-requests.jsonl")
        cls.stubs = Stubs("--quiet", record=cls.record)
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.run_id = uuid.uuid4().hex[:8]
        self.designs, self.answers, self.lock = {}, {}, threading.Lock()
        self.sagad = None

    def tearDown(self):
        if self.sagad is not None:
            self.assertEqual(harness.sanitizer_reports(self.sagad.generations), [])

    def start_sagad(self, db, step_timeout_ms=10000):
        self.sagad = Sagad(self.stubs, db=db, step_timeout_ms=step_timeout_ms,
                           args=["--grace-ms", "300"])
        self.addCleanup(lambda: self.sagad.proc.alive() and self.sagad.kill9())
        return self.sagad

    # ---- helpers

    def post(self, tag, body, headers=None, timeout=30):
        try:
            st, _, b = self.sagad.http("POST", "/saga", body, headers, timeout=timeout)
            res = (st, harness.jbody(b) if b else None)
        except OSError as e:
            res = (None, str(e))
        with self.lock:
            self.answers.setdefault(tag, []).append(res)
        return res

    def new_tag(self, design):
        tag = "store-%s-%03d-%s" % (self.run_id, len(self.designs), design)
        self.designs[tag] = design
        self.answers.setdefault(tag, [])
        return tag

    def start_in_flight(self):
        """Sync sagas that will be in step 3 and async ones in step 1 when
        the store breaks; returns the client threads."""
        threads = []
        for i in range(self.INFLIGHT):
            design = "ok" if i % 2 == 0 else "fail3"
            tag = self.new_tag(design)
            body = invariants.body_for(tag, design, {"ai_model": self.SLOW_MS})
            threads.append(threading.Thread(target=self.post, args=(tag, body)))
            tag = self.new_tag("ok")
            body = invariants.body_for(tag, "ok", {"anonymizer": self.SLOW_MS})
            threads.append(threading.Thread(target=self.post,
                                            args=(tag, body, {"Prefer": "respond-async"})))
        for t in threads:
            t.start()
        wait_until(lambda: len([r for r in self.stubs.recorded() if self.run_id in r["body"]
                                and r["path"] in ("/anonymize", "/process")
                                and r["delay_ms"] == self.SLOW_MS]) >= 2 * self.INFLIGHT,
                   10, msg="sagas in flight")
        return threads

    def ready(self):
        st, _, b = self.sagad.http("GET", "/readyz")
        return st, (harness.jbody(b).get("detail") if st != 200 else None)

    def outage(self, break_store, heal_store, reason_rx, reads_work=True, refuse_s=5.0):
        """The common scenario; reason_rx must match what the 503s say, which
        come within refuse_s (the writer's backoff is at most 1 s, plus
        the failing transaction)."""
        tag = self.new_tag("ok")
        st, b = self.post(tag, invariants.body_for(tag, "ok"))
        self.assertEqual(st, 200, b)
        first = b["id"]
        threads = self.start_in_flight()
        n_before = self.sagad.db_query("SELECT count(*) FROM sagas")[0][0]
        break_store()
        try:
            # The in-flight sagas' next writes fail: /readyz says so.
            wait_until(lambda: self.ready()[0] == 503, 3 + self.SLOW_MS / 1000.0 + 6,
                       msg="/readyz 503 while the store is broken")
            st, why = self.ready()
            self.assertRegex(why, reason_rx)
            # New sagas are refused at once with the reason, sync and async.
            refused = []
            for headers in ({}, {"Prefer": "respond-async"}):
                tag = self.new_tag("ok")
                t0 = time.monotonic()
                st, b = self.post(tag, invariants.body_for(tag, "ok"), headers, timeout=20)
                elapsed = time.monotonic() - t0
                self.assertEqual(st, 503, "POST %s while the store is broken: %s %s"
                                 % (headers, st, b))
                self.assertRegex(b["detail"], reason_rx)
                sys.stderr.write("\n  POST %s -> 503 in %.1f s: %s; /readyz: %s\n"
                                 % (headers, elapsed, b["detail"], why))
                self.assertLess(elapsed, refuse_s, "the 503 took %.1f s" % elapsed)
                refused.append(tag)
            if reads_work:
                st, _, b = self.sagad.http("GET", "/saga/" + first)
                self.assertEqual(st, 200, b)
            # Nothing new was stored meanwhile.
            self.assertEqual(self.sagad.db_query("SELECT count(*) FROM sagas")[0][0], n_before)
        finally:
            heal_store()
        wait_until(lambda: self.ready()[0] == 200, 10, msg="/readyz 200 once the store is back")
        for t in threads:
            t.join(30)
        tag = self.new_tag("ok")
        st, b = self.post(tag, invariants.body_for(tag, "ok"))
        self.assertEqual(st, 200, b)
        self.assertTrue(invariants.settle(self.sagad, 30))
        for t in refused:
            self.assertEqual(self.sagad.db_query(
                "SELECT count(*) FROM sagas WHERE CAST(request AS TEXT) LIKE ?",
                ("%" + t + "%",))[0][0], 0, "a refused start was stored")
        records = [r for r in self.stubs.recorded() if self.run_id in r["body"]]
        rep = invariants.check(self.sagad, records, self.designs, self.answers, strict=True)
        self.assertEqual(rep.violations, [], rep.text())
        # And after a restart nothing is lost or redone.
        self.assertEqual(self.sagad.stop(), 0)
        self.sagad.start()
        self.assertEqual(self.sagad.get_saga(first)["overall_status"], "COMPLETED")
        rep = invariants.check(self.sagad, [r for r in self.stubs.recorded()
                                            if self.run_id in r["body"]],
                               self.designs, self.answers, strict=True)
        self.assertEqual(rep.violations, [], rep.text())

    # ---- the cases

    def test_disk_full(self):
        skip_on_postgres(self)
        mnt = os.path.join(harness.tmpdir(), "small")
        os.mkdir(mnt)
        rc, _, err = harness.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt])
        if rc != 0:
            self.skipTest("cannot mount a small tmpfs (needs root): %s" % err.strip())
        self.addCleanup(lambda: harness.run(["umount", "-l", mnt]))
        self.start_sagad(os.path.join(mnt, "saga.db"))
        filler = os.path.join(mnt, "filler")

        def fill():
            # Unbuffered: a buffered file keeps the tail of the write the
            # full disk refused and raises ENOSPC again from close(), out
            # of the try below (whenever the free space is 60 KiB modulo
            # 64 KiB, which depends only on the size of the WAL then).
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass

        self.outage(fill, lambda: os.unlink(filler), r"full")

    def test_read_only_database(self):
        skip_on_postgres(self)
        d = harness.tmpdir()
        db = os.path.join(d, "saga.db")
        probe = os.path.join(d, "probe")
        open(probe, "w").close()
        rc, _, err = harness.run(["chattr", "+i", probe])
        harness.run(["chattr", "-i", probe])
        if rc != 0:
            self.skipTest("cannot make a file immutable here (needs root and ext2/3/4): %s"
                          % err.strip())
        self.start_sagad(db)
        files = [db, db + "-wal"]

        def lock_files():
            for f in files:
                rc, _, err = harness.run(["chattr", "+i", f])
                self.assertEqual(rc, 0, err)

        def unlock_files():
            for f in files:
                harness.run(["chattr", "-i", f])

        self.addCleanup(unlock_files)
        self.outage(lock_files, unlock_files, r"(?i)(read-only|readonly|disk I/O|permit)")

    def test_database_file_replaced(self):
        skip_on_postgres(self)
        d = harness.tmpdir()
        db = os.path.join(d, "saga.db")
        self.start_sagad(db)
        other = os.path.join(harness.tmpdir(), "other.db")
        con = sqlite3.connect(other)
        con.execute("CREATE TABLE mine(x)")
        con.execute("INSERT INTO mine VALUES (42)")
        con.commit()
        con.close()
        with open(other, "rb") as f:
            other_bytes = f.read()

        def replace():
            os.rename(db, db + ".moved")
            shutil.copy(other, db + ".new")
            os.rename(db + ".new", db)

        def put_back():
            # The replacement was never written to.
            with open(db, "rb") as f:
                self.assertEqual(f.read(), other_bytes, "sagad wrote into the replacement")
            os.rename(db + ".moved", db)

        self.outage(replace, put_back, r"replaced|moved|removed", reads_work=False)

    def test_new_saga_refused_while_locked(self):
        # This outage lasts about 20 s. A publish step's deadline runs from
        # when the step begins, before its write is durable (the engine
        # stores it with the event), so with a shorter step timeout the
        # sagas waiting in step 1 -> 2 would fail at step 2 for the wait.
        self.start_sagad(None, step_timeout_ms=30000)
        if self.sagad.db.startswith("postgres"):
            pg_lock = PgTableLock(self.sagad.db)
            self.addCleanup(pg_lock.release)
            # PostgreSQL: "canceling statement due to lock timeout".
            self.outage(pg_lock.take, pg_lock.release, r"lock timeout", refuse_s=13.0)
            return
        db = sqlite3.connect(self.sagad.db, timeout=10, isolation_level=None,
                             check_same_thread=False)
        self.addCleanup(db.close)

        def lock():
            db.execute("BEGIN IMMEDIATE")

        def unlock():
            if db.in_transaction:
                db.execute("COMMIT")

        # Each attempt waits out the 5 s busy timeout: a start may wait for
        # the attempt under way, a backoff, and its own attempt.
        self.outage(lock, unlock, r"locked", refuse_s=13.0)

    def test_postgres_restart_mid_load(self):
        """The database server crashes (immediate shutdown) and comes back
        after 2 s while sagas run and new ones keep coming: sagad reconnects
        by itself, every saga it answered for is there and finishes as
        designed, and the invariants hold (also after a restart)."""
        if harness.store_mode() != "postgres":
            self.skipTest("PostgreSQL only (SAGAD_IT_STORE=postgres)")
        self.start_sagad(None, step_timeout_ms=30000)
        tag = self.new_tag("ok")
        st, b = self.post(tag, invariants.body_for(tag, "ok"))
        self.assertEqual(st, 200, b)
        threads = self.start_in_flight()
        stop = threading.Event()
        tags = threading.Lock()

        def stream(k):
            while not stop.is_set():
                with tags:
                    tag = self.new_tag("ok" if k % 2 == 0 else "fail3")
                headers = {"Prefer": "respond-async"} if k % 2 else {}
                self.post(tag, invariants.body_for(tag, self.designs[tag]), headers,
                          timeout=60)
                time.sleep(0.05)

        streams = [threading.Thread(target=stream, args=(k,)) for k in range(4)]
        for t in streams:
            t.start()
        time.sleep(1.0)
        harness.pg_server().restart(down_s=2.0, crash=True)
        time.sleep(1.5)
        stop.set()
        for t in streams + threads:
            t.join(60)
        wait_until(lambda: self.ready()[0] == 200, 15, msg="/readyz 200 after the restart")
        if not invariants.settle(self.sagad, 60):
            left = self.sagad.db_query("SELECT id, status, comp_status, error FROM sagas "
                                       "WHERE status = 0 OR comp_status = 1")
            self.fail("not settled: %d sagas, e.g. %r\n%s" % (len(left), left[:5],
                                                              self.sagad.log(150)))
        answered = [b for a in self.answers.values() for st, b in a
                    if st in (200, 202, 400) and isinstance(b, dict)]
        self.assertGreater(len(answered), 10)
        refused = sum(1 for a in self.answers.values() for st, _ in a if st == 503)
        sys.stderr.write("\n  %d sagas answered, %d starts refused (503) around the restart\n"
                         % (len(answered), refused))
        for b in answered:
            sid = b.get("id") or (b.get("detail") or {}).get("id")
            self.assertTrue(sid, b)
            st, _, body = self.sagad.http("GET", "/saga/" + sid)
            self.assertEqual(st, 200, "answered saga %s lost: %r" % (sid, body[:200]))
        records = [r for r in self.stubs.recorded() if self.run_id in r["body"]]
        rep = invariants.check(self.sagad, records, self.designs, self.answers, strict=True)
        self.assertEqual(rep.violations, [], rep.text())
        self.assertEqual(self.sagad.stop(), 0)
        self.sagad.start()
        rep = invariants.check(self.sagad, [r for r in self.stubs.recorded()
                                            if self.run_id in r["body"]],
                               self.designs, self.answers, strict=True)
        self.assertEqual(rep.violations, [], rep.text())


if __name__ == "__main__":
    harness.main()
