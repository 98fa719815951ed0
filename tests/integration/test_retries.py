"""Retries, parking and redrive over HTTP (design §1): --step-retries with one
Idempotency-Key, a refused compensation parked and listed by GET /events,
POST /events/{id}/redeliver, and POST /saga/{id}/retry (sync, async,
concurrent, refused)."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, jbody, wait_until  # noqa: E402


class RetriesTest(harness.SagadCase):

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs("--quiet")
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.sagad = Sagad(cls.stubs, step_timeout_ms=5000,
                          args=("--step-retries", "2", "--retry-backoff-ms", "20"))
        cls.addClassCleanup(lambda: cls.sagad.proc.kill())

    def setUp(self):
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})

    def tearDown(self):
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})

    def test_transient_failures_retried_with_one_key(self):
        body = {"r": 1, "_stub": {"anonymizer": {"status": 503}}}
        st, _, d = self.sagad.post_saga(body)
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["steps"][0]["attempts"], 3, rec)  # 1 + --step-retries 2
        calls = self.stubs.requests(sid, path="/anonymize")
        self.assertEqual(len(calls), 3)
        keys = {r["idempotency_key"] for r in calls}
        self.assertEqual(keys, {"%s:anonymizer" % sid})

    def test_permanent_failure_not_retried(self):
        st, _, d = self.sagad.post_saga({"r": 2, "_stub": {"anonymizer": {"status": 404}}})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        self.assertEqual(len(self.stubs.requests(sid, path="/anonymize")), 1)
        self.assertEqual(self.sagad.get_saga(sid)["steps"][0]["attempts"], 1)

    def step3_running(self, sid):
        return self.sagad.get_saga(sid)["step3_status"] == "RUNNING"

    def test_refused_compensation_parked_then_redelivered(self):
        body = {"r": 3, "_stub": {"ai_model": {"status": 400, "delay_ms": 2000}}}
        st, _, b = self.sagad.http("POST", "/saga", body, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        wait_until(lambda: self.step3_running(sid), 10)
        self.stubs.config({"tokenizer": {"status": 403}})  # the compensation is refused
        rec = self.sagad.wait_status(sid, "FAILED", 10)
        wait_until(lambda: self.sagad.get_saga(sid)["compensation_status"] == "PARKED", 10)
        st, _, b = self.sagad.http("GET", "/events?status=PARKED&limit=1000")
        self.assertEqual(st, 200, b)
        parked = [e for e in jbody(b)["events"] if e["saga_id"] == sid]
        self.assertEqual(len(parked), 1, parked)
        ev = parked[0]
        self.assertEqual(ev["topic"], "tokenizer_compensation")
        self.assertIsNone(ev["url"])
        self.assertEqual(ev["status"], "PARKED")
        self.assertIn("403", ev["last_error"])
        self.assertTrue(ev["created_at"].endswith("Z") and ev["updated_at"].endswith("Z"))

        self.stubs.config({"tokenizer": None})
        st, _, b = self.sagad.http("POST", "/events/%s/redeliver" % ev["id"])
        self.assertEqual(st, 202, b)
        wait_until(lambda: self.sagad.get_saga(sid)["compensation_status"] == "COMPLETED", 10)
        comps = [r for r in self.stubs.requests(sid, path="/events")
                 if jbody(r["body"])["topic"] == "tokenizer_compensation"]
        self.assertEqual({jbody(r["body"])["id"] for r in comps}, {ev["id"]})
        st, _, b = self.sagad.http("POST", "/events/%s/redeliver" % ev["id"])
        self.assertEqual(st, 409, b)
        st, _, b = self.sagad.http("POST", "/events/%s/redeliver" % ("0" * 8 + "-0000-4000-8000-" + "0" * 12))
        self.assertEqual(st, 404, b)
        st, _, b = self.sagad.http("GET", "/events?status=LOST")
        self.assertEqual(st, 400, b)
        self.assertEqual(rec["error"][:27], "Error en Step 3 (AI Model P")

    def test_redrive(self):
        self.stubs.config({"anonymizer": {"status": 404}})
        st, _, d = self.sagad.post_saga({"r": 4})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        # Slow enough that the second retry arrives while the first runs
        # (an instant one could end before it, which answers 409).
        self.stubs.config({"anonymizer": {"delay_ms": 400}})
        # Two at once start it once; both get its answer.
        results = []

        def retry():
            results.append(self.sagad.http("POST", "/saga/%s/retry" % sid))
        threads = [threading.Thread(target=retry) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.stubs.config({"anonymizer": None})
        self.assertEqual(sorted(r[0] for r in results), [200, 200], results)
        for st, _, b in results:
            self.assertEqual(jbody(b)["id"], sid)
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["overall_status"], "COMPLETED", rec)
        self.assertIsNone(rec["error"])
        self.assertEqual(rec["steps"][0]["attempts"], 2)
        self.assertEqual(len(self.stubs.requests(sid, path="/anonymize")), 2)
        # Not FAILED any more: 409; unknown: 404.
        st, _, b = self.sagad.http("POST", "/saga/%s/retry" % sid)
        self.assertEqual(st, 409, b)
        self.assertIn("COMPLETED", jbody(b)["detail"])
        st, _, b = self.sagad.http("POST", "/saga/%s/retry" % ("1" * 8 + "-1111-4111-8111-" + "1" * 12))
        self.assertEqual(st, 404, b)

    def test_redrive_async_and_refused_after_compensation(self):
        self.stubs.config({"anonymizer": {"status": 404}})
        st, _, d = self.sagad.post_saga({"r": 5})
        sid = d["detail"]["id"]
        self.stubs.config({"anonymizer": None})
        st, h, b = self.sagad.http("POST", "/saga/%s/retry" % sid, None, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        self.assertEqual(h.get("location"), "/saga/%s" % sid)
        self.sagad.wait_status(sid, "COMPLETED", 10)
        # A failure at step 3 published a compensation: not safe to redrive.
        st, _, d = self.sagad.post_saga({"r": 6, "_stub": {"ai_model": {"status": 400}}})
        sid = d["detail"]["id"]
        wait_until(lambda: self.sagad.get_saga(sid)["compensation_status"] == "COMPLETED", 10)
        st, _, b = self.sagad.http("POST", "/saga/%s/retry" % sid)
        self.assertEqual(st, 409, b)
        self.assertIn("compensation", jbody(b)["detail"])


if __name__ == "__main__":
    harness.main()
