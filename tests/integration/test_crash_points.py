"""Crash points (include/sg/crash.h): for every named point and a couple of
pass counts, concurrent sagas of every kind run until sagad dies at that
point (SAGAD_CRASH_AT=<point>:<n>, exit status 77), sagad restarts on the
same store, everything settles, and the invariants of invariants.py are
checked over every saga: final states, headers, event ids, compensations,
"in doubt means delivered", withdrawn events, client answers, the store.

Needs a build with -DSG_CRASH_POINTS=ON (make test); skips otherwise.
CRASH_SEED replays the random delays of a run (it is printed); in the ASan
build each point runs with one pass count only.
"""

import os
import random
import re
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import invariants  # noqa: E402

CRASH_H = os.path.join(harness.REPO, "include", "sg", "crash.h")
SRC = os.path.join(harness.REPO, "src")
STEP_MS = 1500

# Points another change places: listed in crash.h before they exist. Such a
# point is skipped (saying so) while no source file passes through it; once
# placed, it runs like the others.
PLACED_ELSEWHERE = {
    "retry_wait": "placed by the step retries (design §1, Retries) where the retry timer is armed",
}
# Extra sagad flags a point needs to be reached.
POINT_ARGS = {
    "retry_wait": ["--step-retries", "2", "--retry-backoff-ms", "100"],
}
# Points after which sagad stays down past the step timeout before it
# restarts: an event in flight (sent, or about to be) is then past its
# deadline, the case "in doubt means delivered" is about.
LATE_RESTART = {"publish_before", "publish_after"}
# Pass counts: the first pass, and one in the middle of the load (a round
# posts 22 sagas at once: a frequent point is passed dozens of times).
N_VALUES = {"store_committed": (1, 12), "http_before": (1, 10), "http_after": (1, 10),
            "publish_before": (1, 6), "publish_after": (1, 6), "recovery": (1, 6)}
N_DEFAULT = (1, 3)

# One round's sagas: (design, asynchronous, with an Idempotency-Key).
MIX = ([("ok", False, False)] * 4 + [("ok", True, False)] * 3 + [("ok", False, True)] * 2
       + [("ok", True, True)] + [("fail1", False, False), ("fail1", True, False),
                                 ("fail1", False, True)]
       + [("fail2", False, False), ("fail2", True, True)]
       + [("late2", False, False), ("late2", True, False)]
       + [("fail3", False, False)] * 3 + [("fail3", True, False), ("fail3", False, True)])


def listed_points():
    with open(CRASH_H, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"#define SG_CRASH_POINT_LIST\(X\)(.*?)\n\n", text, re.S)
    return re.findall(r"X\((\w+)\)", m.group(1))


def placed_points():
    """{point: [files]} for every sg_crash_point("…") in src/."""
    out = {}
    for root, _, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".c"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                for p in re.findall(r'sg_crash_point\("(\w+)"\)', f.read()):
                    out.setdefault(p, []).append(os.path.relpath(path, harness.REPO))
    return out


def has_crash_points(binary):
    with open(binary, "rb") as f:
        return b"SAGAD_CRASH_AT" in f.read()


class CrashPointTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not has_crash_points(harness.SAGAD):
            raise unittest.SkipTest("%s was built without -DSG_CRASH_POINTS=ON" % harness.SAGAD)
        cls.seed = int(os.environ.get("CRASH_SEED") or random.randrange(1 << 30))
        sys.stderr.write("\ntest_crash_points: CRASH_SEED=%d\n" % cls.seed)
        cls.rng = random.Random(cls.seed)
        cls.sanitized = harness.is_sanitized(harness.SAGAD)
        cls.record = os.path.join(harness.tmpdir(), "stub-requests.jsonl")
        cls.stubs = harness.Stubs("--quiet", record=cls.record)
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.placed = placed_points()
        cls.summary = []

    @classmethod
    def tearDownClass(cls):
        if cls.summary:
            sys.stderr.write("\ncrash points covered (CRASH_SEED=%d):\n  %s\n"
                             % (cls.seed, "\n  ".join(cls.summary)))

    def test_00_list_matches_the_sources(self):
        listed = listed_points()
        self.assertGreaterEqual(len(listed), 10, listed)
        unlisted = sorted(set(self.placed) - set(listed))
        self.assertEqual(unlisted, [], "points placed in src/ but missing from %s" % CRASH_H)
        missing = sorted(p for p in listed if p not in self.placed and p not in PLACED_ELSEWHERE)
        self.assertEqual(missing, [], "points listed in %s that no file in src/ passes" % CRASH_H)

    # ------------------------------------------------------------ a round

    def run_point(self, point):
        if point not in self.placed:
            self.skipTest("crash point %s is not placed yet (%s)"
                          % (point, PLACED_ELSEWHERE.get(point, "?")))
        failures = []
        ns = N_VALUES.get(point, N_DEFAULT)
        for n in ns[:1] if self.sanitized else ns:
            with self.subTest(point=point, n=n):
                rep, note = self.round(point, n)
                self.summary.append("%s:%d  %s" % (point, n, note))
                if rep.violations:
                    failures.append("%s:%d: %s" % (point, n, rep.text()))
        if failures:
            self.fail("\n\n".join(failures))

    def round(self, point, n):
        prefix = "%s-%d-%s" % (point, n, uuid.uuid4().hex[:8])
        sagad = harness.Sagad(self.stubs, step_timeout_ms=STEP_MS, start=False,
                              args=["--grace-ms", "200"] + POINT_ARGS.get(point, []))
        self.addCleanup(lambda: sagad.proc and sagad.proc.alive() and sagad.kill9())
        crash_env = {"SAGAD_CRASH_AT": "%s:%d" % (point, n)}
        designs, keys, answers = {}, {}, {}
        lock = threading.Lock()
        items = []
        for i, (design, is_async, keyed) in enumerate(MIX):
            tag = "%s-%02d-%s" % (prefix, i, design)
            delays = {"anonymizer": self.rng.choice((0, 50, 150, 300)),
                      "tokenizer_event": self.rng.choice((0, 0, 100, 250)),
                      "ai_model": self.rng.choice((0, 50, 150, 300))}
            body = invariants.body_for(tag, design, delays, STEP_MS)
            designs[tag] = design
            answers[tag] = []
            if keyed:
                keys[tag] = "key-" + tag
            items.append((tag, body, is_async))
        self.rng.shuffle(items)

        def post(tag, body, is_async):
            h = {}
            if is_async:
                h["Prefer"] = "respond-async"
            if tag in keys:
                h["Idempotency-Key"] = keys[tag]
            try:
                st, _, b = harness.http(sagad.port, "POST", "/saga", body, h, timeout=30)
                res = (st, harness.jbody(b) if b else None)
            except OSError as e:
                res = (None, "%s: %s" % (type(e).__name__, e))
            with lock:
                answers[tag].append(res)

        if point == "recovery":
            # Recovery runs at start: crash a first sagad with sagas in
            # flight, then start the next one armed.
            sagad.start()
        else:
            sagad.start(env=crash_env)
        threads = [threading.Thread(target=post, args=it) for it in items]
        for t in threads:
            t.start()
            time.sleep(0.01)
        if point == "recovery":
            harness.wait_until(lambda: self.in_flight(sagad) >= 8 or not sagad.proc.alive(), 15,
                               msg="sagas in flight")
            sagad.kill9()
            try:
                sagad.start(env=crash_env)
            except AssertionError:
                pass  # it died while starting: that is the point
        died = self.wait_death(sagad, 20)
        for t in threads:
            t.join(40)
        if not died:
            self.fail("crash point %s:%d never reached: sagad ran the whole load without "
                      "passing it %d times; log:\n%s" % (point, n, n, sagad.log(30)))
        rc = sagad.proc.p.returncode
        out = sagad.proc.output("err", 400)
        self.assertEqual(rc, 77, "sagad exited with %s, not at a crash point:\n%s" % (rc, out))
        self.assertIn("sagad: crash point %s:%d" % (point, n), out)

        # Restart on the same store; keyed clients ask again.
        if point in LATE_RESTART:
            time.sleep(STEP_MS / 1000.0 + 0.5)
        sagad.start()
        # Keyed clients without an answer ask again (synchronously); the
        # starts sagad never accepted (connection refused while it was
        # down) are posted now, so the restarted sagad runs a full load.
        again = []
        for tag, body, is_async in items:
            got = answers[tag]
            if all(st is None and str(b).startswith("ConnectionRefusedError") for st, b in got):
                again.append((tag, body, is_async))
            elif tag in keys and not any(st is not None and st < 500 for st, _ in got):
                again.append((tag, body, False))
        threads = [threading.Thread(target=post, args=it) for it in again]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        settled = invariants.settle(sagad, 40)
        records = [r for r in self.stubs.recorded() if prefix in r["body"]]
        rep = invariants.check(sagad, records, designs, answers, keys, strict=True)
        self.assertEqual(harness.sanitizer_reports(sagad.generations), [])
        sagad.stop()
        s = rep.stats
        note = ("%d sagas (%d completed, %d failed), %d compensations, %d requests%s%s"
                % (s["sagas"], s["COMPLETED"], s["FAILED"], s["compensations"], len(records),
                   "" if settled else ", NOT SETTLED",
                   "; violated: " + ", ".join(rep.failed()) if rep.violations else ""))
        return rep, note

    @staticmethod
    def in_flight(sagad):
        try:
            return sagad.saga_count(0)
        except Exception:
            return 0

    @staticmethod
    def wait_death(sagad, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sagad.proc.p.poll() is not None:
                sagad.proc.wait()
                return True
            time.sleep(0.02)
        return False


for _p in listed_points():
    setattr(CrashPointTest, "test_%s" % _p, lambda self, p=_p: self.run_point(p))


if __name__ == "__main__":
    harness.main()
