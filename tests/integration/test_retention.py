"""Retention (--retention S): settled sagas (COMPLETED; FAILED with no
compensation or a completed one) are deleted S seconds after their last
change, with their events; a saga in flight and a parked compensation
(design §1: never lost) stay, the parked one can still be redelivered
(and goes once settled); sagad_sagas_purged_total counts the deleted
sagas, a log line tells each round that deleted some; a purged saga's
Idempotency-Key starts a new saga. Without --retention nothing goes.
Runs on every store (@redis, @postgres)."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import jbody, wait_until  # noqa: E402

RETENTION_S = 2


def purged_total(sagad):
    st, _, b = sagad.http("GET", "/metrics")
    assert st == 200, st
    m = re.search(rb"^sagad_sagas_purged_total (\d+)$", b, re.M)
    assert m, b[-2000:]
    return int(m.group(1))


def status_of(sagad, sid):
    return sagad.http("GET", "/saga/" + sid)[0]


class RetentionTest(harness.SagadCase):

    STUB_ARGS = ("--quiet",)
    SAGAD_ARGS = ("--retention", str(RETENTION_S))
    # The slow saga below must stay in flight for the whole test, however
    # slowly a loaded CI machine runs it.
    STEP_TIMEOUT_MS = 180000

    def tearDown(self):
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})
        super().tearDown()

    def post_async(self, body):
        st, _, b = self.sagad.http("POST", "/saga", body, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        return jbody(b)["id"]

    def test_settled_go_parked_and_in_flight_stay(self):
        s = self.sagad
        # In flight for longer than the retention: its first step is slow.
        slow = self.post_async({"slow": 1, "_stub": {"anonymizer": {"delay_ms": 120000}}})
        # A compensation refused (4xx): parked.
        parked = self.post_async({"p": 1, "_stub": {"ai_model": {"status": 400, "delay_ms": 1500}}})
        wait_until(lambda: s.get_saga(parked)["step3_status"] == "RUNNING", 10)
        self.stubs.config({"tokenizer": {"status": 403}})
        s.wait_saga(parked, lambda r: r["compensation_status"] == "PARKED", 15)
        self.stubs.config({"tokenizer": None})
        st, _, b = s.http("GET", "/events?status=PARKED&limit=1000")
        evs = [e for e in jbody(b)["events"] if e["saga_id"] == parked]
        self.assertEqual(len(evs), 1, evs)
        parked_ev = evs[0]["id"]
        # Settled: completed (with an Idempotency-Key), failed in step 1
        # (no compensation).
        st, _, d = s.post_saga({"ok": 1}, {"Idempotency-Key": "ret-key-1"})
        self.assertEqual(st, 200, d)
        done = d["id"]
        st, _, d = s.post_saga({"bad": 1, "_stub": {"anonymizer": {"status": 404}}})
        self.assertEqual(st, 400, d)
        failed = d["detail"]["id"]
        self.assertEqual(s.get_saga(failed)["compensation_status"], "NONE")
        events_of_done = [e["id"] for e in self._events() if e["saga_id"] == done]
        self.assertEqual(len(events_of_done), 1)

        wait_until(lambda: status_of(s, done) == 404 and status_of(s, failed) == 404,
                   RETENTION_S + 10, msg="settled sagas purged")
        st, _, b = s.http("GET", "/saga/" + done)
        self.assertEqual(jbody(b), {"detail": "Saga no encontrada"})
        self.assertNotIn(events_of_done[0], [e["id"] for e in self._events()])
        # What must stay did.
        rec = s.get_saga(slow)
        self.assertEqual(rec["overall_status"], "IN_PROGRESS", rec)
        rec = s.get_saga(parked)
        self.assertEqual((rec["overall_status"], rec["compensation_status"]), ("FAILED", "PARKED"))
        st, _, b = s.http("GET", "/events?status=PARKED&limit=1000")
        self.assertIn(parked_ev, [e["id"] for e in jbody(b)["events"]])
        self.assertEqual(purged_total(s), 2)
        s.proc.wait_line(r"retention: deleted [12] settled saga", timeout=5)
        # The key is free again: a new saga.
        st, _, d = s.post_saga({"ok": 1}, {"Idempotency-Key": "ret-key-1"})
        self.assertEqual(st, 200, d)
        self.assertNotEqual(d["id"], done)
        again = d["id"]

        # The parked compensation is redelivered; once settled it goes too.
        st, _, b = s.http("POST", "/events/%s/redeliver" % parked_ev)
        self.assertEqual(st, 202, b)
        s.wait_saga(parked, lambda r: r["compensation_status"] == "COMPLETED", 10)
        comps = [r for r in self.stubs.requests(parked, path="/events")
                 if jbody(r["body"])["topic"] == "tokenizer_compensation"]
        self.assertEqual({jbody(r["body"])["id"] for r in comps}, {parked_ev})
        wait_until(lambda: status_of(s, parked) == 404 and status_of(s, again) == 404,
                   RETENTION_S + 10, msg="the redelivered saga purged")
        self.assertEqual(status_of(s, slow), 200)
        self.assertEqual(purged_total(s), 4)

    def _events(self):
        st, _, b = self.sagad.http("GET", "/events?limit=1000")
        self.assertEqual(st, 200, b)
        return jbody(b)["events"]


class NoRetentionTest(harness.SagadCase):
    STUB_ARGS = ("--quiet",)

    def test_nothing_deleted_without_the_flag(self):
        s = self.sagad
        st, _, d = s.post_saga({"keep": 1})
        self.assertEqual(st, 200, d)
        st, _, f = s.post_saga({"keep": 2, "_stub": {"anonymizer": {"status": 404}}})
        self.assertEqual(st, 400, f)
        # Absence cannot be waited for: longer than the retention above
        # needed to delete them.
        time.sleep(RETENTION_S + 2)
        self.assertEqual(status_of(s, d["id"]), 200)
        self.assertEqual(status_of(s, f["detail"]["id"]), 200)
        self.assertEqual(purged_total(s), 0)
        self.assertNotIn("retention", s.log())


if __name__ == "__main__":
    harness.main()
