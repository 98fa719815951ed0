"""A store that refuses writes for a while (another process holds SQLite's
write lock past the busy timeout): sagas wait and then finish, nothing is
stranded, the compensation still goes out, /readyz tells the truth, and a
second sagad on the same database is refused."""

import os
import sqlite3
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, wait_until  # noqa: E402


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
        (longer than sagad's 5 s busy timeout)."""
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
        argv = [harness.SAGAD, "--listen", "127.0.0.1:0", "--db", self.sagad.db]
        rc, _, err = harness.run(argv, timeout=20, env=harness.clean_env())
        self.assertNotEqual(rc, 0)
        self.assertIn("in use by another sagad", err)
        st, _, _ = self.sagad.http("GET", "/healthz")
        self.assertEqual(st, 200)


if __name__ == "__main__":
    harness.main()
