"""Step failures (design §1): what each failing step answers, which later
steps never run, outbox withdrawal, and the compensation event."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (EVENT_DELIVERED, EVENT_WITHDRAWN, SagadCase, jbody,  # noqa: E402
                     wait_until)

STEP1 = "Error en Step 1 (Anonymizer): "
STEP2 = "Error en Step 2 (Tokenizer): "
STEP3 = "Error en Step 3 (AI Model Process): "


def envelope_events(stubs, sid):
    """The envelopes POSTed to the stub's /events for saga sid, parsed."""
    return [(r, json.loads(r["body"])) for r in stubs.requests(sid, path="/events")]


class FailureTest(SagadCase):
    STEP_TIMEOUT_MS = 1000

    def post_fail(self, body, prefix, max_s):
        raw = json.dumps(body).encode()
        t0 = time.monotonic()
        st, h, d = self.sagad.post_saga(raw)
        elapsed = time.monotonic() - t0
        self.assertEqual(st, 400, d)
        self.assertEqual(set(d), {"detail"}, d)
        self.assertEqual(set(d["detail"]), {"id", "error"}, d)
        self.assertUuid(d["detail"]["id"])
        err = d["detail"]["error"]
        self.assertTrue(err.startswith(prefix), err)
        self.assertGreater(len(err), len(prefix), "empty reason: %r" % err)
        self.assertLess(elapsed, max_s, "failure answer took %.2fs" % elapsed)
        return d["detail"]["id"], err, raw

    # ---- step 1

    def check_step1_failed(self, body, max_s=3.0):
        sid, err, _ = self.post_fail(body, STEP1, max_s)
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["overall_status"], "FAILED")
        self.assertEqual([rec["step1_status"], rec["step2_status"], rec["step3_status"]],
                         ["FAILED", "PENDING", "PENDING"], rec)
        self.assertEqual(rec["error"], err)
        self.assertEqual(rec["compensation_status"], "NONE")
        self.assertEqual(rec["processed_data"], {})
        self.assertEqual(rec["steps"][0]["status"], "FAILED")
        self.assertTrue(rec["steps"][0]["error"], rec)
        for s in rec["steps"][1:]:
            self.assertEqual((s["status"], s["attempts"], s["started_at"]), ("PENDING", 0, None), s)
        # Later steps never ran: nothing reached the tokenizer or the AI model
        # for this saga, and no event was ever written.
        time.sleep(0.3)
        paths = {r["path"] for r in self.stubs.requests(sid)}
        self.assertEqual(paths, {"/anonymize"}, paths)
        self.assertEqual(self.sagad.outbox(sid), [])
        return sid, err

    def test_step1_http_500(self):
        _, err = self.check_step1_failed({"k": 1, "_stub": {"anonymizer": {"status": 500}}})
        self.assertIn("500", err)

    def test_step1_http_404_and_302(self):
        for status in (404, 302, 300):
            self.check_step1_failed({"k": status, "_stub": {"anonymizer": {"status": status}}})

    def test_step1_non_json(self):
        self.check_step1_failed({"k": 2, "_stub": {"anonymizer": {"mode": "nonjson"}}})

    def test_step1_dropped_connection(self):
        self.check_step1_failed({"k": 3, "_stub": {"anonymizer": {"mode": "drop"}}})

    def test_step1_timeout(self):
        t0 = time.monotonic()
        self.check_step1_failed({"k": 4, "_stub": {"anonymizer": {"delay_ms": 4000}}}, max_s=2.5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)

    def test_step1_hang(self):
        self.check_step1_failed({"k": 5, "_stub": {"anonymizer": {"mode": "hang"}}}, max_s=2.5)

    def test_step1_big_answer(self):
        self.check_step1_failed({"k": 6, "_stub": {"anonymizer": {"mode": "big"}}}, max_s=3.0)

    def test_step1_2xx_json_is_success(self):
        st, _, d = self.sagad.post_saga({"k": 7, "_stub": {"anonymizer": {"status": 201}}})
        self.assertEqual(st, 200, d)

    # ---- step 2

    def test_step2_webhook_500(self):
        body = {"k": 10, "_stub": {"tokenizer": {"status": 500}}}
        sid, err, raw = self.post_fail(body, STEP2, 3.0)
        rec = self.sagad.get_saga(sid)
        self.assertEqual([rec["step1_status"], rec["step2_status"], rec["step3_status"]],
                         ["COMPLETED", "FAILED", "PENDING"], rec)
        self.assertEqual(rec["overall_status"], "FAILED")
        self.assertEqual(rec["compensation_status"], "NONE")
        self.assertEqual(set(rec["processed_data"]), {"anonymized"})
        time.sleep(0.3)
        paths = sorted(r["path"] for r in self.stubs.requests(sid))
        self.assertNotIn("/process", paths)
        self.assertEqual(paths, ["/anonymize", "/events"])
        ob = self.sagad.outbox(sid)
        self.assertEqual(len(ob), 1, ob)
        self.assertEqual(ob[0]["topic"], "tokenizer_event")
        self.assertEqual(ob[0]["status"], EVENT_WITHDRAWN, ob)
        self.assertEqual(ob[0]["compensation"], 0)

    def test_step2_timeout_in_doubt_is_compensated(self):
        # Design §1, in doubt means delivered: the webhook got the event but
        # answered too late. The step fails, its event is withdrawn (never
        # offered again), and because the consumer may have acted on it the
        # tokenizer_compensation goes out.
        body = {"k": 11}
        self.stubs.config({"tokenizer": {"delay_ms": 4000}})
        t0 = time.monotonic()
        try:
            sid, err, raw = self.post_fail(body, STEP2, 2.5)
        finally:
            self.stubs.config({"tokenizer": None})  # the compensation gets through
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        rec = self.sagad.get_saga(sid)
        self.assertEqual([rec["step1_status"], rec["step2_status"], rec["step3_status"]],
                         ["COMPLETED", "FAILED", "PENDING"], rec)
        ob = {o["topic"]: o for o in self.sagad.outbox(sid)}
        self.assertEqual(set(ob), {"tokenizer_event", "tokenizer_compensation"}, ob)
        ev_id = ob["tokenizer_event"]["id"]
        self.assertEqual(ob["tokenizer_event"]["status"], EVENT_WITHDRAWN, ob)
        wait_until(lambda: self.sagad.get_saga(sid)["compensation_status"] == "COMPLETED", 10)
        # A few step timeouts later: the event was never offered again and
        # nothing else ran.
        time.sleep(3 * self.STEP_TIMEOUT_MS / 1000.0 + 0.5)
        evs = envelope_events(self.stubs, sid)
        steps = [e for _, e in evs if e["topic"] == "tokenizer_event"]
        comps = [e for _, e in evs if e["topic"] == "tokenizer_compensation"]
        self.assertEqual([e["id"] for e in steps], [ev_id], steps)
        self.assertGreaterEqual(len(comps), 1)
        self.assertEqual({e["id"] for e in comps}, {ob["tokenizer_compensation"]["id"]})
        self.assertNotIn("/process", {r["path"] for r in self.stubs.requests(sid)})
        self.assertEqual(ob["tokenizer_event"]["status"], EVENT_WITHDRAWN)
        self.assertEqual(self.sagad.get_saga(sid)["overall_status"], "FAILED")

    def test_step2_dropped(self):
        sid, _, _ = self.post_fail({"k": 12, "_stub": {"tokenizer": {"mode": "drop"}}}, STEP2, 3.0)
        self.assertEqual(self.sagad.outbox(sid)[0]["status"], EVENT_WITHDRAWN)
        self.assertNotIn("/process", {r["path"] for r in self.stubs.requests(sid)})

    # ---- step 3

    def check_step3_failed(self, body, max_s=3.0):
        sid, err, raw = self.post_fail(body, STEP3, max_s)
        rec = self.sagad.get_saga(sid)
        self.assertEqual([rec["step1_status"], rec["step2_status"], rec["step3_status"]],
                         ["COMPLETED", "COMPLETED", "FAILED"], rec)
        self.assertEqual(rec["overall_status"], "FAILED")
        self.assertEqual(rec["error"], err)
        rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 10)
        ob = self.sagad.outbox(sid)
        self.assertEqual([(o["topic"], o["status"], o["compensation"]) for o in ob],
                         [("tokenizer_event", EVENT_DELIVERED, 0),
                          ("tokenizer_compensation", EVENT_DELIVERED, 1)], ob)
        comp = ob[1]
        self.assertEqual(comp["payload"] if isinstance(comp["payload"], bytes)
                         else comp["payload"].encode(), raw)
        evs = envelope_events(self.stubs, sid)
        comp_envs = [(r, e) for r, e in evs if e["topic"] == "tokenizer_compensation"]
        self.assertGreaterEqual(len(comp_envs), 1, evs)
        for r, e in comp_envs:
            self.assertEqual(e["id"], comp["id"])
            self.assertEqual(e["saga_id"], sid)
            self.assertEqual(e["payload"], json.loads(raw))
            self.assertIn(b'"payload":' + raw, r["body"].encode(), "payload not verbatim")
        self.assertNotEqual(comp["id"], ob[0]["id"])
        return sid

    def test_step3_http_500(self):
        self.check_step3_failed({"k": 20, "_stub": {"ai_model": {"status": 500}}})

    def test_step3_non_json(self):
        self.check_step3_failed({"k": 21, "_stub": {"ai_model": {"mode": "nonjson"}}})

    def test_step3_timeout(self):
        self.check_step3_failed({"k": 22, "_stub": {"ai_model": {"delay_ms": 4000}}}, max_s=2.5)

    def test_step3_dropped(self):
        self.check_step3_failed({"k": 23, "_stub": {"ai_model": {"mode": "drop"}}})


class CompensationNotDelayingTest(SagadCase):
    """The failed synchronous answer does not wait for the compensation."""
    STEP_TIMEOUT_MS = 4000

    def test_answer_not_delayed_by_compensation(self):
        # The tokenizer answers after 1.5 s: step 2 takes 1.5 s, and so does
        # delivering the compensation. With it the answer would take >= 3 s.
        body = {"k": 30, "_stub": {"tokenizer": {"delay_ms": 1500}, "ai_model": {"status": 503}}}
        t0 = time.monotonic()
        st, _, d = self.sagad.post_saga(body)
        elapsed = time.monotonic() - t0
        self.assertEqual(st, 400, d)
        self.assertTrue(d["detail"]["error"].startswith(STEP3), d)
        self.assertGreaterEqual(elapsed, 1.4)
        self.assertLess(elapsed, 2.8, "the answer waited for the compensation")
        sid = d["detail"]["id"]
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["compensation_status"], "PENDING", rec)
        ob = self.sagad.outbox(sid)
        comp = [o for o in ob if o["topic"] == "tokenizer_compensation"]
        self.assertEqual(len(comp), 1, ob)
        self.assertEqual(comp[0]["status"], 0)
        rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 10)
        self.assertEqual(rec["overall_status"], "FAILED")
        comp = [o for o in self.sagad.outbox(sid) if o["topic"] == "tokenizer_compensation"]
        self.assertEqual(comp[0]["status"], EVENT_DELIVERED)

    def test_compensation_retried_with_same_id(self):
        # Tokenizer down for compensations only after step 2 has passed:
        # break it via /_config once step 3 is running (slow AI model).
        body = {"k": 31, "_stub": {"ai_model": {"delay_ms": 800, "status": 500}}}
        res = {}

        def post():
            res["r"] = self.sagad.post_saga(body)

        import threading
        t = threading.Thread(target=post)
        self.stubs.config({"tokenizer": None})
        t.start()
        try:
            sid = wait_until(lambda: self._running_step3(), 5, msg="a saga in step 3")
            self.stubs.config({"tokenizer": {"status": 500}})
            t.join(10)
            st, _, d = res["r"]
            self.assertEqual(st, 400, d)
            self.assertEqual(d["detail"]["id"], sid)
            time.sleep(1.0)
            self.assertEqual(self.sagad.get_saga(sid)["compensation_status"], "PENDING")
            comp = [e for _, e in envelope_events(self.stubs, sid)
                    if e["topic"] == "tokenizer_compensation"]
            self.assertGreaterEqual(len(comp), 2, "compensation not retried")
        finally:
            self.stubs.config({"tokenizer": None})
        self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 40)
        comp = [e for _, e in envelope_events(self.stubs, sid) if e["topic"] == "tokenizer_compensation"]
        self.assertEqual(len({e["id"] for e in comp}), 1, "compensation id changed across retries")
        ob = [o for o in self.sagad.outbox(sid) if o["topic"] == "tokenizer_compensation"]
        self.assertEqual(ob[0]["id"], comp[0]["id"])
        self.assertEqual(ob[0]["status"], EVENT_DELIVERED)
        self.assertGreaterEqual(ob[0]["attempts"], 2)

    def _running_step3(self):
        st, _, b = self.sagad.http("GET", "/sagas?status=IN_PROGRESS")
        for r in jbody(b)["sagas"]:
            if r["request_data"].get("k") == 31 and r["step3_status"] == "RUNNING":
                return r["id"]
        return None


if __name__ == "__main__":
    harness.main()
