"""HTTP API contract (design §2): POST /saga sync and async, GET /saga/{id},
GET /sagas pagination and filters, health, 404/405."""

import json
import signal
import sys
import os
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import OK_RESULT, SagadCase, jbody  # noqa: E402

SEED_BODY = {"image_id": "img_123", "data": "datos de prueba"}
RECORD_KEYS = {"id", "request_data", "step1_status", "step2_status", "step3_status",
               "overall_status", "processed_data", "created_at", "updated_at", "error",
               "compensation_status", "type", "version", "trace_id", "steps"}
STEP_KEYS = {"name", "status", "attempts", "started_at", "finished_at", "error"}
STEP_NAMES = ["anonymizer", "tokenizer", "ai_model"]


class ApiTest(SagadCase):

    def stub_answer(self, path, body):
        """What the stub service answers for this body when called directly."""
        st, _, b = harness.http(self.stubs.port, "POST", path, body,
                                headers={"X-Saga-Id": "direct-" + uuid.uuid4().hex})
        self.assertEqual(st, 200, b[:200])
        return jbody(b)

    def test_sync_success_body(self):
        st, h, body = self.sagad.post_saga(SEED_BODY)
        self.assertEqual(st, 200, body)
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        self.assertEqual(set(body), {"id", "result", "data"}, body)
        self.assertUuid(body["id"])
        self.assertEqual(body["result"], OK_RESULT)
        self.assertEqual(set(body["data"]), {"anonymized", "tokenizer_event", "ai_result"}, body)
        self.assertEqual(body["data"]["tokenizer_event"], "event_published")
        self.assertEqual(body["data"]["anonymized"], self.stub_answer("/anonymize", SEED_BODY))
        self.assertEqual(body["data"]["ai_result"], self.stub_answer("/process", SEED_BODY))
        # Exactly one call to each downstream service for this saga.
        paths = sorted(r["path"] for r in self.stubs.requests(body["id"]))
        self.assertEqual(paths, ["/anonymize", "/events", "/process"])

    def test_get_record_has_every_field(self):
        st, _, post = self.sagad.post_saga(SEED_BODY)
        self.assertEqual(st, 200, post)
        sid = post["id"]
        st, h, b = self.sagad.http("GET", "/saga/" + sid)
        self.assertEqual(st, 200, b)
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        rec = jbody(b)
        self.assertEqual(set(rec), RECORD_KEYS, rec)
        self.assertEqual(rec["id"], sid)
        self.assertEqual((rec["type"], rec["version"]), ("sta", 1))
        self.assertRegex(rec["trace_id"], r"^[0-9a-f]{32}$")  # design §7: a trace was started
        self.assertEqual(rec["request_data"], SEED_BODY)
        for k in ("step1_status", "step2_status", "step3_status", "overall_status"):
            self.assertEqual(rec[k], "COMPLETED", k)
        self.assertEqual(rec["processed_data"], post["data"])
        self.assertIsNone(rec["error"])
        self.assertEqual(rec["compensation_status"], "NONE")
        self.assertIso(rec["created_at"], "created_at")
        self.assertIso(rec["updated_at"], "updated_at")
        self.assertLessEqual(rec["created_at"], rec["updated_at"])
        self.assertEqual([s["name"] for s in rec["steps"]], STEP_NAMES)
        prev_end = rec["created_at"]
        for s in rec["steps"]:
            self.assertEqual(set(s), STEP_KEYS, s)
            self.assertEqual(s["status"], "COMPLETED", s)
            self.assertEqual(s["attempts"], 1, s)
            self.assertIsNone(s["error"], s)
            self.assertIso(s["started_at"], "started_at")
            self.assertIso(s["finished_at"], "finished_at")
            self.assertLessEqual(s["started_at"], s["finished_at"], s)
            self.assertLessEqual(prev_end, s["started_at"], rec["steps"])
            prev_end = s["finished_at"]
        self.assertLessEqual(prev_end, rec["updated_at"])

    def test_get_failed_record(self):
        body = {"image_id": "fail3", "_stub": {"ai_model": {"status": 500}}}
        st, _, post = self.sagad.post_saga(body)
        self.assertEqual(st, 400, post)
        sid = post["detail"]["id"]
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["overall_status"], "FAILED")
        self.assertEqual([rec["step1_status"], rec["step2_status"], rec["step3_status"]],
                         ["COMPLETED", "COMPLETED", "FAILED"])
        self.assertEqual(rec["error"], post["detail"]["error"])
        self.assertTrue(rec["error"].startswith("Error en Step 3 (AI Model Process): "), rec)
        self.assertEqual(set(rec["processed_data"]), {"anonymized", "tokenizer_event"})
        self.assertEqual(rec["processed_data"]["tokenizer_event"], "event_published")
        self.assertIn(rec["compensation_status"], ("PENDING", "COMPLETED"))
        s3 = rec["steps"][2]
        self.assertEqual(s3["status"], "FAILED")
        self.assertIsInstance(s3["error"], str)
        self.assertTrue(s3["error"])
        self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 15)

    def test_saga_types(self):
        # The built-in STA saga is type "sta": POST /sagas/sta starts it like
        # POST /saga; /sagas?type= filters; /definitions describes it.
        st, h, body = self.sagad.http("POST", "/sagas/sta", SEED_BODY)
        self.assertEqual(st, 200, body)
        sid = jbody(body)["id"]
        st, _, b = self.sagad.http("GET", "/sagas?type=sta&limit=1000")
        self.assertEqual(st, 200, b)
        self.assertIn(sid, [r["id"] for r in jbody(b)["sagas"]])
        st, _, b = self.sagad.http("GET", "/sagas?type=order")
        self.assertEqual((st, jbody(b)["sagas"]), (200, []))
        st, _, b = self.sagad.http("POST", "/sagas/order", SEED_BODY)
        self.assertEqual(st, 404, b)
        self.assertIn("known: sta", jbody(b)["detail"])
        st, _, b = self.sagad.http("GET", "/definitions")
        self.assertEqual(st, 200, b)
        defs = jbody(b)["definitions"]
        self.assertEqual([(d["name"], d["version"], d["default"]) for d in defs], [("sta", 1, True)])
        self.assertEqual([s["name"] for s in defs[0]["steps"]], ["anonymizer", "tokenizer", "ai_model"])

    def test_get_unknown(self):
        for sid in (str(uuid.uuid4()), "nope", "x" * 300, "%00", "..%2F..%2Fetc"):
            st, h, b = self.sagad.http("GET", "/saga/" + sid)
            self.assertEqual(st, 404, (sid, b))
            self.assertEqual(jbody(b), {"detail": "Saga no encontrada"}, sid)
            self.assertTrue(h.get("content-type", "").startswith("application/json"), h)

    def test_nul_in_path_404(self):
        # MHD decodes %00 in the path to a NUL: "/saga/<id>%00junk" must not
        # read as "/saga/<id>".
        st, _, post = self.sagad.post_saga(SEED_BODY)
        self.assertEqual(st, 200, post)
        sid = post["id"]
        for path in ("/saga/%s%%00" % sid, "/saga/%s%%00junk" % sid, "/saga/%s%%00?a=1" % sid):
            st, h, b = self.sagad.http("GET", path)
            self.assertEqual(st, 404, (path, b[:200]))
            self.assertEqual(jbody(b), {"detail": "Saga no encontrada"}, path)
            self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        for method, path in (("GET", "/healthz%00"), ("GET", "/sagas%00"), ("POST", "/saga%00")):
            st, _, b = self.sagad.http(method, path, b"{}" if method == "POST" else None)
            self.assertEqual(st, 404, (method, path, b[:200]))
            self.assertEqual(set(jbody(b)), {"detail"})
        # The saga itself is still there, and %2500 is no NUL.
        self.assertEqual(self.sagad.http("GET", "/saga/" + sid)[0], 200)
        self.assertEqual(self.sagad.http("GET", "/saga/%s%%2500" % sid)[0], 404)

    def test_health(self):
        st, h, b = self.sagad.http("GET", "/healthz")
        self.assertEqual(st, 200)
        self.assertEqual(jbody(b), {"status": "ok"})
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        st, h, b = self.sagad.http("GET", "/readyz")
        self.assertEqual(st, 200, b)
        jbody(b)

    def test_unknown_path_404(self):
        for method, path in (("GET", "/"), ("GET", "/nope"), ("POST", "/sagaX"),
                             ("GET", "/saga"), ("GET", "/sagas/x/y"), ("POST", "/saga/abc/def")):
            st, h, b = self.sagad.http(method, path)
            if (method, path) == ("GET", "/saga"):
                # A known path (POST /saga): 405 is the right answer.
                self.assertEqual(st, 405, (method, path, b))
            else:
                self.assertIn(st, (404, 405) if path == "/saga/abc/def" else (404,), (method, path, b))
            d = jbody(b)
            self.assertEqual(set(d), {"detail"}, (method, path, d))
            self.assertTrue(h.get("content-type", "").startswith("application/json"), h)

    def test_wrong_method_405(self):
        for method, path in (("GET", "/saga"), ("PUT", "/saga"), ("DELETE", "/saga"),
                             ("POST", "/saga/" + str(uuid.uuid4())), ("DELETE", "/saga/x"),
                             ("POST", "/sagas"), ("POST", "/healthz"), ("PUT", "/readyz"),
                             ("PATCH", "/sagas")):
            st, h, b = self.sagad.http(method, path, body=b"{}" if method != "GET" else None)
            self.assertEqual(st, 405, (method, path, b))
            d = jbody(b)
            self.assertEqual(set(d), {"detail"}, d)
            self.assertIn("allow", h, (method, path, h))

    def test_async_202(self):
        body = {"image_id": "async-1", "_stub": {"ai_model": {"delay_ms": 800}}}
        t0 = time.monotonic()
        st, h, b = self.sagad.http("POST", "/saga", body, {"Prefer": "respond-async"})
        elapsed = time.monotonic() - t0
        self.assertEqual(st, 202, b)
        self.assertLess(elapsed, 0.7, "202 should not wait for the saga")
        d = jbody(b)
        self.assertEqual(set(d), {"id", "overall_status"}, d)
        self.assertEqual(d["overall_status"], "IN_PROGRESS")
        self.assertUuid(d["id"])
        self.assertEqual(h.get("location"), "/saga/" + d["id"])
        # Durable before the 202 was sent.
        self.assertTrue(self.sagad.has_saga(d["id"]))
        rec = self.sagad.get_saga(d["id"])
        self.assertEqual(rec["overall_status"], "IN_PROGRESS")
        self.assertEqual(rec["step3_status"] in ("PENDING", "RUNNING"), True, rec)
        rec = self.sagad.wait_status(d["id"], "COMPLETED", 15)
        self.assertEqual(rec["request_data"], body)
        self.assertEqual(rec["processed_data"]["tokenizer_event"], "event_published")
        self.assertEqual(set(rec["processed_data"]), {"anonymized", "tokenizer_event", "ai_result"})

    def test_async_prefer_variants(self):
        for prefer in ("respond-async, wait=10", "RESPOND-ASYNC", "handling=lenient; x=1, respond-async"):
            st, h, b = self.sagad.http("POST", "/saga", {"p": prefer}, {"Prefer": prefer})
            self.assertEqual(st, 202, (prefer, b))
            sid = jbody(b)["id"]
            self.sagad.wait_status(sid, "COMPLETED", 15)
        # Not respond-async: synchronous.
        st, h, b = self.sagad.http("POST", "/saga", {"p": 1}, {"Prefer": "return=minimal"})
        self.assertEqual(st, 200, b)

    def test_keep_alive(self):
        c = harness.Client(self.sagad.port)
        try:
            ids = []
            for i in range(20):
                st, _, b = c.request("POST", "/saga", {"i": i}, retry=False)
                self.assertEqual(st, 200, b)
                ids.append(jbody(b)["id"])
                st, _, b = c.request("GET", "/saga/" + ids[-1], retry=False)
                self.assertEqual(st, 200)
            self.assertEqual(len(set(ids)), 20)
            self.assertEqual(c.reconnects, 0)
        finally:
            c.close()


class ListTest(SagadCase):
    """GET /sagas on a sagad of its own, so the set of sagas is known."""

    N_OK = 57
    N_FAIL = 4

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.created = []  # (id, status) in creation order
        fail_at = {5, 20, 33, 50}
        for i in range(cls.N_OK + cls.N_FAIL):
            body = {"n": i}
            if i in fail_at:
                body["_stub"] = {"ai_model": {"status": 500}}
            st, _, b = cls.sagad.http("POST", "/saga", body)
            assert st in (200, 400), b
            d = jbody(b)
            sid = d["id"] if st == 200 else d["detail"]["id"]
            cls.created.append((sid, "COMPLETED" if st == 200 else "FAILED"))
            time.sleep(0.002)  # distinct created_at timestamps
        assert len(fail_at) == cls.N_FAIL

    def list(self, query):
        st, _, b = self.sagad.http("GET", "/sagas" + query)
        self.assertEqual(st, 200, (query, b))
        d = jbody(b)
        self.assertEqual(set(d), {"sagas", "next"}, d.keys())
        return d

    def walk(self, query_base, limit):
        seen, after, pages = [], None, 0
        while True:
            q = "?limit=%d%s%s" % (limit, query_base, "&after=" + after if after else "")
            d = self.list(q)
            self.assertLessEqual(len(d["sagas"]), limit)
            seen += d["sagas"]
            pages += 1
            self.assertLess(pages, 200, "pagination does not end")
            if d["next"] is None:
                break
            self.assertIsInstance(d["next"], str)
            after = d["next"]
        return seen

    def test_default_limit_and_order(self):
        d = self.list("")
        self.assertEqual(len(d["sagas"]), 50)
        self.assertIsNotNone(d["next"])
        newest_first = [sid for sid, _ in reversed(self.created)]
        self.assertEqual([r["id"] for r in d["sagas"]], newest_first[:50])
        for r in d["sagas"]:
            self.assertEqual(set(r), RECORD_KEYS, r)
        created = [r["created_at"] for r in d["sagas"]]
        self.assertEqual(created, sorted(created, reverse=True))

    def test_pagination_covers_all(self):
        expected = [sid for sid, _ in reversed(self.created)]
        for limit in (1, 7, 50, 61, 1000):
            got = [r["id"] for r in self.walk("", limit)]
            self.assertEqual(got, expected, "limit=%d" % limit)

    def test_status_filter(self):
        for status in ("COMPLETED", "FAILED"):
            expected = [sid for sid, s in reversed(self.created) if s == status]
            got = self.walk("&status=" + status, 10)
            self.assertEqual([r["id"] for r in got], expected, status)
            for r in got:
                self.assertEqual(r["overall_status"], status)
        d = self.list("?status=IN_PROGRESS")
        self.assertEqual(d, {"sagas": [], "next": None})

    def test_bad_queries_400(self):
        for q in ("?limit=0", "?limit=-1", "?limit=1001", "?limit=abc", "?limit=10x", "?limit=",
                  "?status=BOGUS", "?after=not-a-cursor",
                  "?after=%01%02", "?after=%00%01", "?status=%00", "?after=abc.def", "?after=12345", "?limit=99999999999999999999"):
            st, _, b = self.sagad.http("GET", "/sagas" + q)
            if q == "?limit=":
                # empty = absent is acceptable
                self.assertIn(st, (200, 400), (q, b))
                continue
            self.assertEqual(st, 400, (q, b[:300]))
            self.assertIn("detail", jbody(b), q)

    def test_limit_max(self):
        d = self.list("?limit=1000")
        self.assertEqual(len(d["sagas"]), self.N_OK + self.N_FAIL)
        self.assertIsNone(d["next"])


class BigListTest(SagadCase):
    """GET /sagas with records too big for one page: a page stops at its
    byte budget (32 MiB) and its next cursor continues right after its last
    record; nothing is lost, repeated or answered 500."""

    SAGAD_ARGS = ("--max-body", str(2 << 20))
    N = 20
    PAGE_BUDGET = 32 << 20

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.created = []
        for i in range(cls.N):
            # Just under 2 MiB (what the stubs take): about 16 make a page.
            empty = len(json.dumps({"n": i, "pad": ""}))
            body = json.dumps({"n": i, "pad": "x" * ((2 << 20) - 8192 - empty)}).encode()
            st, _, b = cls.sagad.http("POST", "/saga", body)
            assert st == 200, b[:300]
            cls.created.append(jbody(b)["id"])
            time.sleep(0.002)
        cls.newest_first = list(reversed(cls.created))

    def walk(self, limit):
        seen, after, sizes = [], None, []
        while True:
            q = "/sagas?limit=%d%s" % (limit, "&after=" + after if after else "")
            st, _, b = self.sagad.http("GET", q)
            self.assertEqual(st, 200, (q, b[:300]))
            self.assertLessEqual(len(b), self.PAGE_BUDGET, q)
            d = jbody(b)
            self.assertGreaterEqual(len(d["sagas"]), 1, q)
            seen += [r["id"] for r in d["sagas"]]
            sizes.append(len(d["sagas"]))
            self.assertLess(len(sizes), 50, "pagination does not end")
            if d["next"] is None:
                return seen, sizes
            after = d["next"]

    def test_pages_stop_at_budget(self):
        seen, sizes = self.walk(1000)
        self.assertEqual(seen, self.newest_first)
        self.assertGreater(len(sizes), 1, sizes)
        self.assertLess(sizes[0], self.N, sizes)
        # Pages smaller than the budget are as before.
        seen, sizes = self.walk(3)
        self.assertEqual(seen, self.newest_first)
        self.assertEqual(sizes, [3] * 6 + [2])


class ShutdownTest(SagadCase):
    """A synchronous POST still running when the grace period ends gets its
    503 (with Retry-After) before sagad exits."""

    SAGAD_ARGS = ("--grace-ms", "300")

    def test_held_request_gets_503(self):
        body = {"image_id": "held", "_stub": {"ai_model": {"delay_ms": 10000}}}
        res = {}

        def post():
            try:
                res["r"] = self.sagad.http("POST", "/saga", body, timeout=30)
            except Exception as e:  # noqa: BLE001
                res["e"] = e
        t = threading.Thread(target=post)
        t.start()

        def running():
            st, _, b = self.sagad.http("GET", "/sagas?status=IN_PROGRESS")
            sagas = jbody(b)["sagas"]
            return sagas and sagas[0]["step3_status"] == "RUNNING"
        harness.wait_until(running, 10, msg="saga in step 3")
        rc = self.sagad.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, self.sagad.log())
        t.join(15)
        self.assertNotIn("e", res, res.get("e"))
        st, h, b = res["r"]
        self.assertEqual(st, 503, b)
        self.assertEqual(h.get("retry-after"), "1", h)
        self.assertIn("detail", jbody(b))


if __name__ == "__main__":
    harness.main()
