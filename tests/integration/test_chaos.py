"""Chaos: client threads post sagas of every kind (synchronous and
asynchronous, some with an Idempotency-Key they retry with) while sagad is
SIGKILLed at random moments and restarted on the same store, the stubs
fail and stall at random (POST /_config), and the webhook goes down and
comes back (sta-stubs stopped and restarted on the same port). At the end
everything is healed, sagad restarts once more, every saga must be final
and the invariants of invariants.py must hold.

CHAOS_SECONDS sets how long the chaos lasts (default 100 s, 40 s in the
ASan build); CHAOS_SEED replays a run's decisions (it is printed; thread
timing still varies).
"""

import os
import random
import signal
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import invariants  # noqa: E402

STEP_MS = 1500
CLIENTS = 4
DESIGN_WEIGHTS = [("ok", 8), ("fail1", 1), ("fail2", 1), ("late2", 1), ("fail3", 2)]
# What /_config may make of a service for a while.
BREAKAGES = [{"status": 503}, {"status": 500}, {"delay_ms": STEP_MS + 600},
             {"mode": "drop"}, {"fail_every": 3}, {"delay_ms": 400}, {"mode": "hang"}]


def weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.uniform(0, total)
    for v, w in pairs:
        x -= w
        if x <= 0:
            return v
    return pairs[-1][0]


class ChaosTest(unittest.TestCase):

    def setUp(self):
        self.seconds = float(os.environ.get("CHAOS_SECONDS")
                             or (40 if harness.is_sanitized(harness.SAGAD) else 100))
        self.seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30))
        sys.stderr.write("\ntest_chaos: CHAOS_SEED=%d CHAOS_SECONDS=%g\n" % (self.seed, self.seconds))
        self.rng = random.Random(self.seed)
        work = harness.tmpdir()
        self.stubs = harness.Stubs("--quiet", port=harness.free_port(),
                                   record=os.path.join(work, "stub-requests.jsonl"))
        self.addCleanup(lambda: self.stubs.proc.kill())
        self.sagad = harness.Sagad(self.stubs, step_timeout_ms=STEP_MS, port=harness.free_port(),
                                   workdir=work, args=["--grace-ms", "200"])
        self.addCleanup(lambda: self.sagad.proc.alive() and self.sagad.kill9())
        self.lock = threading.Lock()
        self.designs, self.keys, self.answers = {}, {}, {}
        self.counts = {"kills": 0, "stub restarts": 0, "stub breakages": 0, "posts": 0}
        self.stop = threading.Event()
        self.run_id = uuid.uuid4().hex[:8]

    # ------------------------------------------------------------ clients

    def post(self, tag, body, headers):
        try:
            st, _, b = harness.http(self.sagad.port, "POST", "/saga", body, headers, timeout=30)
            res = (st, harness.jbody(b) if b else None)
        except OSError as e:
            res = (None, "%s: %s" % (type(e).__name__, e))
        with self.lock:
            self.answers[tag].append(res)
            self.counts["posts"] += 1
        return res

    def client(self, k, seed):
        rng = random.Random(seed)
        i = 0
        while not self.stop.is_set():
            i += 1
            design = weighted(rng, DESIGN_WEIGHTS)
            tag = "chaos-%s-c%d-%05d-%s" % (self.run_id, k, i, design)
            delays = {"anonymizer": rng.choice((0, 0, 50, 200)),
                      "tokenizer_event": rng.choice((0, 0, 50, 200)),
                      "ai_model": rng.choice((0, 0, 50, 200))}
            body = invariants.body_for(tag, design, delays, STEP_MS)
            headers = {}
            if rng.random() < 0.4:
                headers["Prefer"] = "respond-async"
            keyed = rng.random() < 0.35
            with self.lock:
                self.designs[tag] = design
                self.answers[tag] = []
                if keyed:
                    self.keys[tag] = headers["Idempotency-Key"] = "key-" + tag
            st, _ = self.post(tag, body, headers)
            # A client with a key asks again until it gets an answer.
            tries = 0
            while keyed and (st is None or st >= 500) and tries < 20 and not self.stop.is_set():
                tries += 1
                time.sleep(rng.uniform(0.1, 0.5))
                st, _ = self.post(tag, body, headers)
            # Pace: while a service is down every saga fails at once, and
            # a client that only spun would crowd out everything else.
            time.sleep(rng.uniform(0, 0.05) if st in (200, 202) else rng.uniform(0.05, 0.3))

    # -------------------------------------------------------------- chaos

    def kill_sagad(self, rng):
        self.sagad.kill9()
        self.counts["kills"] += 1
        time.sleep(rng.uniform(0, 1.0))
        self.sagad.start()

    def configure(self, cfg):
        try:
            self.stubs.config(cfg)
            return True
        except (OSError, AssertionError):
            return False  # the stubs are down right now

    def break_stubs(self, rng):
        """Breaks one service for a while (a timer heals it)."""
        svc = rng.choice(("anonymizer", "tokenizer", "ai_model"))
        if self.configure({svc: rng.choice(BREAKAGES)}):
            self.counts["stub breakages"] += 1
            t = threading.Timer(rng.uniform(0.5, 4.0), self.configure, ({svc: None},))
            t.daemon = True
            t.start()

    def webhook_down(self, rng):
        self.stubs.stop()
        self.counts["stub restarts"] += 1
        time.sleep(rng.uniform(0.3, 2.5))
        self.stubs.restart()

    def chaos(self, rng, deadline):
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 3.0))
            action = weighted(rng, [("kill", 4), ("break", 3), ("heal", 1), ("webhook", 1)])
            if action == "kill":
                self.kill_sagad(rng)
            elif action == "break":
                self.break_stubs(rng)
            elif action == "heal":
                self.configure({"anonymizer": None, "tokenizer": None, "ai_model": None})
            else:
                self.webhook_down(rng)

    # --------------------------------------------------------------- test

    def test_chaos(self):
        t0 = time.monotonic()
        clients = [threading.Thread(target=self.client, args=(k, self.rng.randrange(1 << 30)))
                   for k in range(CLIENTS)]
        for t in clients:
            t.start()
        try:
            self.chaos(self.rng, t0 + self.seconds)
        finally:
            self.stop.set()
            for t in clients:
                t.join(60)
        chaos_s = time.monotonic() - t0

        # Heal, restart (which also restarts every compensation's backoff),
        # settle, and restart once more: nothing may move after that.
        if not self.stubs.proc.alive():
            self.stubs.restart()
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})
        self.sagad.kill9()
        self.sagad.start()
        settled = invariants.settle(self.sagad, 90)
        self.assertEqual(self.sagad.stop(signal.SIGTERM), 0, self.sagad.log(20))
        self.sagad.start()
        time.sleep(1.0)
        records = self.stubs.recorded()
        rep = invariants.check(self.sagad, records, self.designs, self.answers, self.keys,
                               strict=False)
        s = rep.stats
        sys.stderr.write(
            "test_chaos: %.0f s of chaos (CHAOS_SEED=%d): %d kills of sagad, %d webhook "
            "outages, %d stub breakages, %d POSTs, %d sagas (%d completed, %d failed), "
            "%d compensations delivered, %d requests to the stubs%s\n"
            % (chaos_s, self.seed, self.counts["kills"], self.counts["stub restarts"],
               self.counts["stub breakages"], self.counts["posts"], s["sagas"], s["COMPLETED"],
               s["FAILED"], s["compensations"], len(records), "" if settled else "; NOT SETTLED"))
        self.assertEqual(harness.sanitizer_reports(self.sagad.generations), [])
        if rep.violations:
            self.fail("CHAOS_SEED=%d: %s" % (self.seed, rep.text()))
        self.assertTrue(settled)
        self.assertGreater(self.counts["kills"], 0)


if __name__ == "__main__":
    harness.main()
