"""Durability across restarts (design §1, §3, §4): clean SIGTERM shutdown,
kill -9 mid-step, resumption, and the never-lost compensation event."""

import json
import os
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (EVENT_DELIVERED, EVENT_PENDING, OK_RESULT, Sagad, Stubs,  # noqa: E402
                     jbody, wait_until)

STEP_TIMEOUT_MS = 5000


class RestartTest(harness.SagadCase):
    """Each test gets its own sagad (and db); the stubs are shared."""

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})
        self.sagad = Sagad(self.stubs, step_timeout_ms=STEP_TIMEOUT_MS)
        type(self).sagad = self.sagad  # for the failure log
        self.addCleanup(self._kill)

    def _kill(self):
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})
        if self.sagad.proc.alive():
            self.sagad.kill9()

    def comp_envelopes(self, sid):
        return [json.loads(r["body"]) for r in self.stubs.requests(sid, path="/events")
                if json.loads(r["body"])["topic"] == "tokenizer_compensation"]

    def wait_step_running(self, sid, idx, path):
        """Waits until step idx of sid is RUNNING and the stub got its request."""
        self.sagad.wait_saga(sid, lambda r: r["steps"][idx]["status"] == "RUNNING", 10)
        wait_until(lambda: self.stubs.requests(sid, path=path), 10, msg="stub got %s" % path)

    # -----------------------------------------------------------------

    def test_clean_restart_keeps_sagas(self):
        st, _, ok = self.sagad.post_saga({"r": "ok"})
        self.assertEqual(st, 200, ok)
        st, _, bad = self.sagad.post_saga({"r": "bad", "_stub": {"ai_model": {"status": 500}}})
        self.assertEqual(st, 400, bad)
        ids = [ok["id"], bad["detail"]["id"]]
        self.sagad.wait_saga(ids[1], lambda r: r["compensation_status"] == "COMPLETED", 10)
        before = {sid: self.sagad.http("GET", "/saga/" + sid)[2] for sid in ids}
        list_before = jbody(self.sagad.http("GET", "/sagas")[2])
        rc = self.sagad.stop(signal.SIGTERM, timeout=15)
        self.assertEqual(rc, 0, self.sagad.log())
        self.sagad.start()
        for sid in ids:
            st, _, b = self.sagad.http("GET", "/saga/" + sid)
            self.assertEqual(st, 200)
            self.assertEqual(jbody(b), jbody(before[sid]))
        self.assertEqual(jbody(self.sagad.http("GET", "/sagas")[2]), list_before)
        # Nothing was re-run on restart.
        time.sleep(0.5)
        for sid in ids:
            self.assertEqual(len(self.stubs.requests(sid, path="/anonymize")), 1)
        self.assertEqual(self.sagad.stop(signal.SIGINT), 0)

    def test_sigterm_lets_in_flight_finish(self):
        body = {"r": "inflight", "_stub": {"ai_model": {"delay_ms": 1500}}}
        res = {}
        t = threading.Thread(target=lambda: res.update(r=self.sagad.post_saga(body)))
        t.start()
        wait_until(lambda: self.stubs.stats()["process"] and self._find_running(), 10,
                   msg="saga in step 3")
        sid = self._find_running()
        t0 = time.monotonic()
        self.sagad.proc.send_signal(signal.SIGTERM)
        # No new requests once stopping.
        time.sleep(0.2)
        try:
            st, _, _ = harness.http(self.sagad.port, "POST", "/saga", {"late": 1}, timeout=3)
            self.assertNotEqual(st, 200, "a new saga was accepted after SIGTERM")
        except OSError:
            pass
        rc = self.sagad.proc.wait(timeout=15)
        self.assertEqual(rc, 0, self.sagad.log())
        t.join(10)
        st, _, d = res["r"]
        self.assertEqual(st, 200, d)
        self.assertEqual(d["id"], sid)
        self.assertEqual(d["result"], OK_RESULT)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.sagad.start()
        self.assertEqual(self.sagad.get_saga(sid)["overall_status"], "COMPLETED")
        requests = self.sagad.saga_fields("request")
        self.assertEqual(sum(b"late" in bytes(r) for r in requests), 0)

    def _find_running(self):
        st, _, b = self.sagad.http("GET", "/sagas?status=IN_PROGRESS")
        sagas = jbody(b)["sagas"]
        return sagas[0]["id"] if sagas and sagas[0]["step3_status"] == "RUNNING" else None

    def test_sigterm_grace_expires_then_resume(self):
        self.sagad.argv += ["--grace-ms", "500"]
        self.sagad.restart()
        self.stubs.config({"ai_model": {"delay_ms": 20000}})
        st, h, b = self.sagad.http("POST", "/saga", {"r": "grace"}, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        self.wait_step_running(sid, 2, "/process")
        t0 = time.monotonic()
        rc = self.sagad.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, self.sagad.log())
        self.assertLess(time.monotonic() - t0, 4.0, "grace period not honoured")
        self.stubs.config({"ai_model": None})
        self.sagad.start()
        rec = self.sagad.wait_status(sid, "COMPLETED", 15)
        self.assertEqual(rec["steps"][2]["attempts"], 2, rec["steps"])
        self.assertEqual([s["attempts"] for s in rec["steps"][:2]], [1, 1])

    def test_kill9_in_step3_resumes(self):
        self.stubs.config({"ai_model": {"delay_ms": 3000}})
        st, h, b = self.sagad.http("POST", "/saga", {"r": "kill9-step3"}, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        self.wait_step_running(sid, 2, "/process")
        self.sagad.kill9()
        self.stubs.config({"ai_model": None})
        self.sagad.start()
        rec = self.sagad.wait_status(sid, "COMPLETED", 15)
        self.assertEqual(rec["steps"][2]["attempts"], 2, rec["steps"])
        self.assertEqual(rec["steps"][2]["status"], "COMPLETED")
        self.assertEqual(rec["step3_status"], "COMPLETED")
        self.assertIn("ai_result", rec["processed_data"])
        reqs = self.stubs.requests(sid)
        procs = [r for r in reqs if r["path"] == "/process"]
        self.assertEqual(len(procs), 2, reqs)
        self.assertEqual({r["idempotency_key"] for r in procs}, {sid + ":ai_model"})
        self.assertEqual(len([r for r in reqs if r["path"] == "/anonymize"]), 1)
        self.assertEqual(len([r for r in reqs if r["path"] == "/events"]), 1)
        ob = self.sagad.outbox(sid)
        self.assertEqual([(o["topic"], o["status"]) for o in ob], [("tokenizer_event", EVENT_DELIVERED)])

    def test_kill9_in_step2_same_event_id(self):
        self.stubs.config({"tokenizer": {"delay_ms": 1500}})
        st, h, b = self.sagad.http("POST", "/saga", {"r": "kill9-step2"}, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        self.wait_step_running(sid, 1, "/events")
        self.sagad.kill9()
        self.stubs.config({"tokenizer": None})
        self.sagad.start()
        rec = self.sagad.wait_saga(sid, lambda r: r["overall_status"] != "IN_PROGRESS", 15)
        evs = [json.loads(r["body"]) for r in self.stubs.requests(sid, path="/events")]
        ob = self.sagad.outbox(sid)
        self.assertEqual(len(ob), 1, ob)
        self.assertEqual({e["id"] for e in evs}, {ob[0]["id"]}, "event id changed across restart")
        # Restarted within the step timeout: the same event went out again
        # and the saga completed.
        self.assertEqual(rec["overall_status"], "COMPLETED", rec)
        self.assertEqual(ob[0]["status"], EVENT_DELIVERED)
        self.assertEqual(len(evs), 2)

    def test_kill9_in_step2_restart_republishes_in_doubt(self):
        # Design §1, in doubt means delivered: the event was being sent when
        # sagad died. However long it stays down, the next start publishes
        # it again under the same id as a new attempt (never withdraws it
        # silently); acknowledged now, the saga goes on and completes.
        self.sagad.kill9()
        self.sagad = Sagad(self.stubs, step_timeout_ms=1500)
        type(self).sagad = self.sagad
        self.stubs.config({"tokenizer": {"delay_ms": 1200}})
        st, h, b = self.sagad.http("POST", "/saga", {"r": "late-restart"}, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        self.wait_step_running(sid, 1, "/events")
        self.sagad.kill9()
        self.stubs.config({"tokenizer": None})
        time.sleep(2.0)  # past the first attempt's deadline
        self.sagad.start()
        rec = self.sagad.wait_status(sid, "COMPLETED", 10)
        self.assertEqual(rec["steps"][1]["attempts"], 2, rec)
        ob = self.sagad.outbox(sid)
        self.assertEqual([(o["topic"], o["status"]) for o in ob],
                         [("tokenizer_event", EVENT_DELIVERED)])
        evs = [json.loads(r["body"]) for r in self.stubs.requests(sid, path="/events")]
        self.assertGreaterEqual(len(evs), 1)
        self.assertEqual({e["id"] for e in evs}, {ob[0]["id"]}, "event id changed")

    def submit_many(self, n, tag):
        c = harness.Client(self.sagad.port)
        ids = []
        try:
            for i in range(n):
                st, h, b = c.request("POST", "/saga", {"tag": tag, "i": i},
                                     {"Prefer": "respond-async"}, retry=False)
                self.assertEqual(st, 202, b)
                ids.append(jbody(b)["id"])
        finally:
            c.close()
        return ids

    def check_all_completed_once(self, ids):
        def finished():
            rows = self.sagad.saga_counts()
            return rows.get(0, 0) == 0 and rows
        wait_until(finished, 60, 0.2, "no saga left IN_PROGRESS")
        for sid in ids:
            rec = self.sagad.get_saga(sid)
            self.assertEqual(rec["overall_status"], "COMPLETED", rec)
            ob = self.sagad.outbox(sid)
            self.assertEqual([(o["topic"], o["status"]) for o in ob],
                             [("tokenizer_event", EVENT_DELIVERED)], sid)
            evs = [json.loads(r["body"]) for r in self.stubs.requests(sid, path="/events")]
            self.assertGreaterEqual(len(evs), 1)
            self.assertEqual({e["id"] for e in evs}, {ob[0]["id"]}, "event id changed")
            self.assertEqual([s["attempts"] >= 1 for s in rec["steps"]], [True] * 3)

    def test_sigterm_under_load_then_resume(self):
        self.sagad.argv += ["--grace-ms", "300"]
        self.sagad.restart()
        self.stubs.clear()
        self.stubs.config({"ai_model": {"delay_ms": 1500}})
        ids = self.submit_many(200, "term")
        rc = self.sagad.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, self.sagad.log())
        self.stubs.config({"ai_model": None})
        self.sagad.start()
        self.check_all_completed_once(ids)

    def test_kill9_under_load_then_resume(self):
        # A step's deadline runs from its start, across the restart: 300
        # sagas resumed at once (under ASan, on a busy machine) can outlast
        # 5 s, and deadlines are not what this test is about.
        self.sagad.kill9()
        self.sagad = Sagad(self.stubs, step_timeout_ms=30000)
        type(self).sagad = self.sagad
        self.stubs.clear()
        self.stubs.config({"anonymizer": {"delay_ms": 200}, "tokenizer": {"delay_ms": 200},
                           "ai_model": {"delay_ms": 400}})
        ids = self.submit_many(300, "kill")
        time.sleep(0.3)
        self.sagad.kill9()
        self.stubs.config({"anonymizer": None, "tokenizer": None, "ai_model": None})
        self.sagad.start()
        self.check_all_completed_once(ids)

    def _comp_pending_saga(self):
        """A saga whose step 3 failed while the tokenizer is down: its
        compensation stays PENDING."""
        body = {"r": "comp", "n": uuid.uuid4().hex,
                "_stub": {"ai_model": {"delay_ms": 1000, "status": 500}}}
        res = {}
        t = threading.Thread(target=lambda: res.update(r=self.sagad.post_saga(body)))
        t.start()
        wait_until(self._find_running, 10, msg="saga in step 3")
        sid = self._find_running()
        self.stubs.config({"tokenizer": {"status": 503}})
        t.join(15)
        st, _, d = res["r"]
        self.assertEqual(st, 400, d)
        self.assertEqual(d["detail"]["id"], sid)
        wait_until(lambda: len(self.comp_envelopes(sid)) >= 2, 10, msg="compensation retried")
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["compensation_status"], "PENDING")
        comp = [o for o in self.sagad.outbox(sid) if o["topic"] == "tokenizer_compensation"]
        self.assertEqual(len(comp), 1)
        self.assertEqual(comp[0]["status"], EVENT_PENDING)
        return sid, comp[0]["id"], json.dumps(body).encode()

    def check_comp_delivered(self, sid, comp_id, raw, n_before):
        wait_until(lambda: len(self.comp_envelopes(sid)) > n_before, 20,
                   msg="compensation retried after restart")
        self.stubs.config({"tokenizer": None})
        rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 40)
        self.assertEqual(rec["overall_status"], "FAILED")
        envs = self.comp_envelopes(sid)
        self.assertEqual({e["id"] for e in envs}, {comp_id}, "compensation id changed")
        for e in envs:
            self.assertEqual(e["saga_id"], sid)
            self.assertEqual(e["payload"], json.loads(raw))
        comp = [o for o in self.sagad.outbox(sid) if o["topic"] == "tokenizer_compensation"]
        self.assertEqual([(c["id"], c["status"]) for c in comp], [(comp_id, EVENT_DELIVERED)])

    def test_compensation_survives_clean_restart(self):
        sid, comp_id, raw = self._comp_pending_saga()
        rc = self.sagad.stop(signal.SIGTERM, timeout=15)
        self.assertEqual(rc, 0, self.sagad.log())
        n = len(self.comp_envelopes(sid))
        self.sagad.start()
        self.assertEqual(self.sagad.get_saga(sid)["compensation_status"], "PENDING")
        self.check_comp_delivered(sid, comp_id, raw, n)

    def test_compensation_survives_kill9(self):
        sid, comp_id, raw = self._comp_pending_saga()
        self.sagad.kill9()
        n = len(self.comp_envelopes(sid))
        self.sagad.start()
        self.check_comp_delivered(sid, comp_id, raw, n)

    def test_async_202_is_durable(self):
        # kill -9 right after each 202: every accepted saga is there after
        # the restart and completes.
        self.stubs.config({"anonymizer": {"delay_ms": 2000}})
        ids = []
        for i in range(5):
            st, h, b = self.sagad.http("POST", "/saga", {"durable": i}, {"Prefer": "respond-async"})
            self.assertEqual(st, 202, b)
            ids.append(jbody(b)["id"])
        self.sagad.kill9()
        self.stubs.config({"anonymizer": None})
        self.sagad.start()
        for sid in ids:
            rec = self.sagad.wait_status(sid, "COMPLETED", 20)
            self.assertEqual(rec["request_data"]["durable"], ids.index(sid))

    def test_idempotency_key_survives_restart(self):
        k = "restart-" + uuid.uuid4().hex
        st, _, b1 = self.sagad.http("POST", "/saga", {"k": 1}, {"Idempotency-Key": k})
        self.assertEqual(st, 200, b1)
        self.assertEqual(self.sagad.stop(), 0)
        self.sagad.start()
        n = self.stubs.stats()["anonymize"]
        st, _, b2 = self.sagad.http("POST", "/saga", {"k": 1}, {"Idempotency-Key": k})
        self.assertEqual(st, 200, b2)
        self.assertEqual(jbody(b2), jbody(b1))
        st, _, b3 = self.sagad.http("POST", "/saga", {"k": 2}, {"Idempotency-Key": k})
        self.assertEqual(st, 422, b3)
        st, _, b4 = self.sagad.http("POST", "/saga", {"k": 1},
                                    {"Idempotency-Key": k, "Prefer": "respond-async"})
        self.assertEqual(st, 202, b4)
        self.assertEqual(jbody(b4)["id"], jbody(b1)["id"])
        time.sleep(0.2)
        self.assertEqual(self.stubs.stats()["anonymize"], n)


if __name__ == "__main__":
    harness.main()
