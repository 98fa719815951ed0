"""Load: 200 concurrent synchronous sagas; 10,000 asynchronous sagas in
flight at once behind a slow AI model, with bounded memory (design §5: no
thread per saga, one loop drives thousands concurrently)."""

import collections
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, jbody, wait_until  # noqa: E402

N_SYNC = 200
N_ASYNC = int(os.environ.get("SAGAD_IT_LOAD_N", "10000"))
# The AI model answers after AI_DELAY_MS: longer than submitting all
# N_ASYNC takes (~12 s here), so that all of them are in flight at once.
AI_DELAY_MS = 20000
STEP_TIMEOUT_MS = 60000
SUBMIT_THREADS = 8


def rss_bound_kb():
    # ASan's shadow memory and quarantine inflate RSS several times over.
    return (1500 if harness.is_sanitized(harness.SAGAD) else 300) * 1024


class SyncLoadTest(harness.SagadCase):

    def test_200_concurrent_sync(self):
        body = json.dumps({"load": "sync", "_stub": {"anonymizer": {"delay_ms": 300}}})
        results = [None] * N_SYNC
        barrier = threading.Barrier(N_SYNC)

        def go(i):
            try:
                barrier.wait(30)
                results[i] = self.sagad.http("POST", "/saga", body, timeout=60)
            except Exception as e:  # noqa: BLE001
                results[i] = (None, {}, repr(e).encode())

        ths = [threading.Thread(target=go, args=(i,)) for i in range(N_SYNC)]
        t0 = time.monotonic()
        for t in ths:
            t.start()
        for t in ths:
            t.join(90)
        elapsed = time.monotonic() - t0
        bad = [(i, r[0], r[2][:200]) for i, r in enumerate(results) if r is None or r[0] != 200]
        self.assertEqual(bad, [], "%d of %d failed" % (len(bad), N_SYNC))
        ids = [jbody(r[2])["id"] for r in results]
        self.assertEqual(len(set(ids)), N_SYNC)
        for r in results:
            self.assertEqual(jbody(r[2])["result"], harness.OK_RESULT)
        # Concurrent, not one after the other (that would take 200 x 0.3 s).
        self.assertLess(elapsed, 15.0)
        self.assertEqual(self.sagad.saga_count(1), N_SYNC)


class AsyncLoadTest(harness.unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs("--quiet", "--threads", "2", "--ai-model", "delay=%d" % AI_DELAY_MS)
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.sagad = Sagad(cls.stubs, step_timeout_ms=STEP_TIMEOUT_MS,
                          args=("--log-level", "warn"), port=harness.free_port())
        cls.addClassCleanup(cls.sagad.proc.kill)

    def count(self, status):
        return self.sagad.saga_count(status)

    def test_10000_async_in_flight(self):
        ids = [None] * N_ASYNC
        errors = []
        per = N_ASYNC // SUBMIT_THREADS

        def submit(k):
            c = harness.Client(self.sagad.port, timeout=60)
            try:
                for i in range(k * per, N_ASYNC if k == SUBMIT_THREADS - 1 else (k + 1) * per):
                    st, h, b = c.request("POST", "/saga", '{"load":"async","i":%d}' % i,
                                         {"Prefer": "respond-async"}, retry=False)
                    if st != 202:
                        errors.append((i, st, b[:200]))
                        continue
                    ids[i] = jbody(b)["id"]
            except Exception as e:  # noqa: BLE001
                errors.append(("thread", k, repr(e)))
            finally:
                c.close()

        stop = threading.Event()
        samples = {"rss": [], "inflight": []}

        def monitor():
            while not stop.is_set():
                try:
                    samples["rss"].append(self.sagad.rss_kb())
                except OSError:
                    pass
                stop.wait(0.2)

        mon = threading.Thread(target=monitor, daemon=True)
        mon.start()
        t0 = time.monotonic()
        ths = [threading.Thread(target=submit, args=(k,)) for k in range(SUBMIT_THREADS)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(180)
        submit_s = time.monotonic() - t0
        self.assertEqual(errors[:20], [], "%d submissions failed" % len(errors))
        self.assertEqual(len(set(ids)), N_ASYNC)
        # How many were in flight together: IN_PROGRESS right after the
        # last 202 (every saga waits AI_DELAY_MS in step 3).
        inflight = self.count(0)
        sys.stderr.write("\nsubmitted %d in %.1fs; %d in flight right after; RSS so far max %d kB\n"
                         % (N_ASYNC, submit_s, inflight, max(samples["rss"] or [0])))
        if submit_s < AI_DELAY_MS / 1000.0 * 0.8:
            self.assertGreaterEqual(inflight, N_ASYNC * 0.95)
        # For the record: how many AI model calls were open together just
        # before the first ones are answered (sagad may cap its outgoing
        # connections, see --max-connections, and queue the rest).
        left = AI_DELAY_MS / 1000.0 - (time.monotonic() - t0) - 1.0
        if left > 0:
            time.sleep(left)
        sys.stderr.write("AI model calls received after %.1fs: %r\n"
                         % (time.monotonic() - t0, self.stubs.stats()))

        def progress():
            done = self.count(1) + self.count(2)
            return done >= N_ASYNC
        try:
            wait_until(progress, 200, 1.0, "all %d sagas finished" % N_ASYNC)
        finally:
            stop.set()
            mon.join(5)
        total_s = time.monotonic() - t0
        max_rss = max(samples["rss"] or [0])
        sys.stderr.write("all finished after %.1fs; max RSS %d kB\n" % (total_s, max_rss))
        self.assertLess(max_rss, rss_bound_kb(), "RSS while %d sagas in flight" % N_ASYNC)
        errors = self.sagad.saga_fields("error", 2)
        failed = collections.Counter(e[:40] for e in errors)
        example = errors[:1]
        self.assertEqual(self.count(2), 0, "failed sagas by error: %r; e.g. %r" % (failed, example))
        self.assertEqual(self.count(1), N_ASYNC)
        # The API agrees: walk /sagas?status=COMPLETED.
        seen, after = [], None
        while True:
            q = "/sagas?status=COMPLETED&limit=1000" + ("&after=" + after if after else "")
            st, _, b = self.sagad.http("GET", q)
            self.assertEqual(st, 200, b[:200])
            d = jbody(b)
            seen += [r["id"] for r in d["sagas"]]
            after = d["next"]
            if after is None:
                break
        self.assertEqual(len(seen), N_ASYNC)
        self.assertEqual(set(seen), set(ids))
        st = self.stubs.stats()
        self.assertEqual(st["process"], N_ASYNC, st)
        self.assertEqual(st["anonymize"], N_ASYNC, st)
        self.assertEqual(st["events"], N_ASYNC, st)
        self.assertTrue(self.sagad.proc.alive())


if __name__ == "__main__":
    harness.main()
