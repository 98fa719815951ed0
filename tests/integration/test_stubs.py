"""sta-stubs itself (docs/stubs.md): the named services under /svc/<name>,
their failure injection through /_config, headers and `_stub`, and what
the recording ring keeps of every request (method, headers)."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Stubs, http, jbody  # noqa: E402

SPEC_OK = {"status": 200, "delay_ms": 0, "mode": "json", "fail_every": 0}


class NamedServicesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs("--quiet")
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.stubs.clear()

    def call(self, method, name, body=None, headers=None):
        st, h, b = http(self.stubs.port, method, "/svc/" + name, body, headers)
        return st, b

    def config(self, obj):
        return http(self.stubs.port, "POST", "/_config", json.dumps(obj))

    def test_answers_and_ids(self):
        answers = []
        for m in ("POST", "GET", "PUT", "PATCH", "DELETE"):
            st, b = self.call(m, "t1.stock_reserve-A", {"x": 1} if m != "GET" else None)
            self.assertEqual(st, 200, b)
            answers.append(jbody(b))
        self.assertEqual(answers, [
            {"id": "t1.stock_reserve-A-%d" % (i + 1), "service": "t1.stock_reserve-A", "method": m}
            for i, m in enumerate(("POST", "GET", "PUT", "PATCH", "DELETE"))])
        # Each name counts on its own.
        st, b = self.call("POST", "t1-other")
        self.assertEqual(jbody(b)["id"], "t1-other-1")
        st, b = self.call("POST", "t1.stock_reserve-A")
        self.assertEqual(jbody(b)["id"], "t1.stock_reserve-A-6")

    def test_bad_names_and_methods(self):
        for path in ("/svc/", "/svc", "/svc/a%20b", "/svc/a/b", "/svc/" + "n" * 65, "/svc/a%00"):
            st, _, b = http(self.stubs.port, "POST", path, "{}")
            self.assertEqual(st, 404, (path, b))
        st, _, b = http(self.stubs.port, "POST", "/svc/" + "n" * 64, "{}")
        self.assertEqual(st, 200, b)
        for m in ("HEAD", "OPTIONS", "TRACE"):
            st, _, _ = http(self.stubs.port, m, "/svc/t2")
            self.assertEqual(st, 405, m)
        self.assertEqual([r["path"] for r in self.stubs.requests()], ["/svc/" + "n" * 64])

    def test_config_per_name(self):
        try:
            st, _, b = self.config({"svc/t3-a": {"status": 503}, "svc/t3-b": {"fail_every": 2}})
            self.assertEqual(st, 200, b)
            cfg = jbody(b)
            self.assertEqual(cfg["svc/t3-a"], dict(SPEC_OK, status=503))
            self.assertEqual(cfg["svc/t3-b"], dict(SPEC_OK, fail_every=2))
            st, b = self.call("POST", "t3-a", {})
            self.assertEqual((st, jbody(b)), (503, {"detail": "injected failure"}))
            self.assertEqual(self.call("POST", "t3-c", {})[0], 200)  # other names untouched
            self.assertEqual([self.call("PUT", "t3-b")[0] for _ in range(4)], [200, 500, 200, 500])
            # A bad spec or name is a 400 and changes nothing.
            for bad in ({"svc/t3-a": {"status": 5003}}, {"svc/t3-a": {"nope": 1}},
                        {"svc/t3 a": {"status": 500}}, {"svc/": {"status": 500}},
                        {"svc/t3-a": None, "ai_model": {"mode": "weird"}}):
                st, _, b = self.config(bad)
                self.assertEqual(st, 400, (bad, b))
                self.assertEqual(set(jbody(b)), {"detail"})
            self.assertEqual(self.call("POST", "t3-a", {})[0], 503)
            # null resets that name; the fail_every count restarts with a new spec.
            st, _, b = self.config({"svc/t3-a": None, "svc/t3-b": {"fail_every": 2}})
            self.assertEqual(st, 200, b)
            self.assertNotIn("svc/t3-a", jbody(b))
            self.assertEqual(self.call("POST", "t3-a", {})[0], 200)
            self.assertEqual([self.call("PUT", "t3-b")[0] for _ in range(2)], [200, 500])
            st, _, b = http(self.stubs.port, "GET", "/_config")
            self.assertEqual(jbody(b)["svc/t3-b"], dict(SPEC_OK, fail_every=2))
        finally:
            self.config({"svc/t3-a": None, "svc/t3-b": None})

    def test_config_bounded(self):
        many = {"svc/t4-%d" % i: {"status": 500} for i in range(65)}
        st, _, b = self.config(many)
        self.assertEqual(st, 400, b)
        del many["svc/t4-64"]
        try:
            st, _, b = self.config(many)
            self.assertEqual(st, 200, b)
            st, _, b = self.config({"svc/t4-extra": {"status": 500}})
            self.assertEqual(st, 400, b)
            self.assertIn("at most 64", jbody(b)["detail"])
            self.assertEqual(self.call("POST", "t4-extra")[0], 200)
            # Trading one for another in the same request fits.
            st, _, b = self.config({"svc/t4-0": None, "svc/t4-extra": {"status": 502}})
            self.assertEqual(st, 200, b)
            self.assertEqual(self.call("POST", "t4-extra")[0], 502)
            self.assertEqual(self.call("POST", "t4-0")[0], 200)
        finally:
            reset = {"svc/t4-%d" % i: None for i in range(64)}
            reset["svc/t4-extra"] = None
            self.assertEqual(self.config(reset)[0], 200)

    def test_per_request_overrides(self):
        st, b = self.call("POST", "t5", {"k": 1}, {"X-Stub-Status": "404"})
        self.assertEqual(st, 404, b)
        st, b = self.call("POST", "t5", {"_stub": {"svc/t5": {"mode": "nonjson"}}})
        self.assertEqual((st, b), (200, b"not json"))
        st, b = self.call("POST", "t5", {"_stub": {"svc/other": {"status": 500}}})
        self.assertEqual(st, 200, b)
        st, b = self.call("POST", "t5", {"_stub": {"svc/t5": {"mode": "bogus"}}})
        self.assertEqual(st, 400, b)
        self.assertIn("bad stub injection", jbody(b)["detail"])
        recs = self.stubs.requests()
        self.assertEqual([r["status"] for r in recs], [404, 200, 200, 400])
        self.assertEqual([r["mode"] for r in recs], ["json", "nonjson", "json", "json"])

    def test_recording_method_and_headers(self):
        st, b = self.call("PATCH", "t6", b'{"a": 1}', {
            "X-Saga-Id": "saga-6", "Idempotency-Key": "saga-6:t6:compensate",
            "X-Saga-Compensation": "true", "X-Test-Tenant": "acme", "x-test-lower": "v 2",
            "X-Other": "not kept",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "rojo=1"})
        self.assertEqual(st, 200, b)
        self.call("GET", "t6", None, {"X-Saga-Id": "saga-6"})
        st, _, _ = http(self.stubs.port, "POST", "/process", {"p": 1}, {"X-Saga-Id": "saga-6"})
        self.assertEqual(st, 200)
        recs = self.stubs.requests("saga-6")
        self.assertEqual(len(recs), 3, recs)
        r = recs[0]
        self.assertEqual((r["path"], r["method"], r["saga_id"], r["idempotency_key"], r["body"]),
                         ("/svc/t6", "PATCH", "saga-6", "saga-6:t6:compensate", '{"a": 1}'))
        self.assertEqual(r["headers"], {"x-saga-compensation": "true", "x-test-tenant": "acme",
                                        "x-test-lower": "v 2"})
        self.assertEqual((recs[1]["method"], recs[1]["headers"], recs[1]["body"]),
                         ("GET", {"x-saga-compensation": None}, ""))
        self.assertEqual((recs[2]["path"], recs[2]["method"], recs[2]["headers"]),
                         ("/process", "POST", {"x-saga-compensation": None}))
        # The trace context as it came (design §7), null when absent.
        self.assertEqual((r["traceparent"], r["tracestate"]),
                         ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=1"))
        self.assertEqual((recs[1]["traceparent"], recs[1]["tracestate"]), (None, None))
        self.assertEqual(set(r), {"seq", "time_us", "path", "method", "headers", "saga_id",
                                  "idempotency_key", "owner", "traceparent", "tracestate",
                                  "status", "mode", "delay_ms", "body", "truncated"})

    def test_stats_count_named(self):
        n0 = self.stubs.stats()
        self.call("POST", "t7")
        self.call("DELETE", "t7-b")
        n1 = self.stubs.stats()
        self.assertEqual(n1["svc"], n0["svc"] + 2)
        self.assertEqual((n1["anonymize"], n1["process"], n1["events"]),
                         (n0["anonymize"], n0["process"], n0["events"]))


if __name__ == "__main__":
    harness.main()
