"""W3C trace context (design §7): a valid traceparent on POST /saga,
POST /sagas/{type} and a redrive is continued, anything else starts a new
trace (never an error); every downstream call and event carries the
saga's trace id with a span id of its own; the record shows "trace_id";
a restart continues the same trace. --log-format json writes one JSON
object per line with the saga's id and trace id."""

import http.client
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, jbody, wait_until  # noqa: E402

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"
TP = "00-%s-%s-01" % (TID, PID)
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
TP_RX = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

INVALID = [
    "00-%s-%s-01" % (TID.upper(), PID),            # uppercase hex
    "00-%s-%s-01" % ("0" * 32, PID),               # all-zero trace id
    "00-%s-%s-01" % (TID, "0" * 16),               # all-zero parent id
    "ff-%s-%s-01" % (TID, PID),                    # version ff
    "00-%s-%s-01-extra" % (TID, PID),              # a field more in version 00
    "00-%s-%s-1" % (TID, PID),                     # short flags
    "00-%s0-%s-01" % (TID, PID),                   # long trace id
    "00-%s-%s-01" % (TID[:-1] + "g", PID),         # not hex
    "garbage",
    "",
]


def parse_tp(v):
    m = TP_RX.match(v or "")
    assert m, "not a version 00 traceparent: %r" % (v,)
    trace, span, flags = m.groups()
    assert trace != "0" * 32 and span != "0" * 16, v
    return trace, span, flags


class TraceCase(harness.SagadCase):
    """The STA saga with the webhook bus on sta-stubs: every call and
    event reaches the stubs, which record each one's traceparent."""

    def calls(self, sid, n=None):
        """The saga's requests as the stubs saw them, oldest first; waits
        for n of them when n is given."""
        if n is not None:
            wait_until(lambda: len(self.stubs.requests(sid)) >= n, 15,
                       msg="%d requests for %s" % (n, sid))
        return sorted(self.stubs.requests(sid), key=lambda r: r["seq"])

    def assertTraced(self, reqs, trace_id, flags="01", state=None, not_span=None):
        """Every request carries trace_id with its own span id."""
        spans = []
        for r in reqs:
            t, span, f = parse_tp(r["traceparent"])
            self.assertEqual((t, f), (trace_id, flags), r)
            self.assertEqual(r["tracestate"], state, r)
            spans.append(span)
        self.assertEqual(len(set(spans)), len(spans), "span ids repeat: %s" % spans)
        if not_span:
            self.assertNotIn(not_span, spans)


class TestTrace(TraceCase):
    def test_continued_on_calls_events_and_compensation(self):
        st, _, d = self.sagad.post_saga({"t": 1, "_stub": {"ai_model": {"status": 500}}},
                                        {"traceparent": TP, "tracestate": STATE})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 15)
        reqs = self.calls(sid, 4)
        seen = [(r["path"], json.loads(r["body"]).get("topic") if r["path"] == "/events" else None)
                for r in reqs]
        self.assertEqual(seen, [("/anonymize", None), ("/events", "tokenizer_event"),
                                ("/process", None), ("/events", "tokenizer_compensation")])
        # The same trace everywhere, a new span each, none the caller's.
        self.assertTraced(reqs, TID, "01", STATE, not_span=PID)
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["trace_id"], TID)
        listed = jbody(self.sagad.http("GET", "/sagas?limit=50")[2])["sagas"]
        self.assertEqual([r["trace_id"] for r in listed if r["id"] == sid], [TID])

    def test_flags_pass_through(self):
        tp = "00-%s-%s-00" % (TID, PID)
        st, _, d = self.sagad.post_saga({"t": "flags"}, {"traceparent": tp})
        self.assertEqual(st, 200, d)
        self.assertTraced(self.calls(d["id"], 3), TID, "00")

    def test_missing_starts_a_new_trace(self):
        ids = []
        for i in range(2):
            st, _, d = self.sagad.post_saga({"t": "fresh", "i": i})
            self.assertEqual(st, 200, d)
            rec = self.sagad.get_saga(d["id"])
            self.assertRegex(rec["trace_id"], r"^[0-9a-f]{32}$")
            self.assertNotEqual(rec["trace_id"], "0" * 32)
            self.assertTraced(self.calls(d["id"], 3), rec["trace_id"])
            ids.append(rec["trace_id"])
        self.assertNotEqual(ids[0], ids[1])

    def test_invalid_is_ignored_not_refused(self):
        for tp in INVALID:
            with self.subTest(traceparent=tp):
                st, _, d = self.sagad.post_saga({"t": "invalid", "tp": tp},
                                                {"traceparent": tp, "tracestate": STATE})
                self.assertEqual(st, 200, d)
                rec = self.sagad.get_saga(d["id"])
                self.assertRegex(rec["trace_id"], r"^[0-9a-f]{32}$")
                self.assertNotEqual(rec["trace_id"], TID)
                # Without its traceparent a tracestate means nothing: dropped.
                self.assertTraced(self.calls(d["id"], 3), rec["trace_id"], state=None)

    def test_two_traceparents_are_ignored(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sagad.port, timeout=30)
        self.addCleanup(conn.close)
        body = json.dumps({"t": "two"}).encode()
        conn.putrequest("POST", "/saga")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("traceparent", TP)
        conn.putheader("traceparent", TP)
        conn.endheaders(body)
        r = conn.getresponse()
        b = r.read()
        self.assertEqual(r.status, 200, b)
        self.assertNotEqual(self.sagad.get_saga(jbody(b)["id"])["trace_id"], TID)

    def test_later_version_is_read_forward_compatibly(self):
        tp = "cc-%s-%s-ff-what-comes-next" % (TID, PID)
        st, _, d = self.sagad.post_saga({"t": "v-cc"}, {"traceparent": tp})
        self.assertEqual(st, 200, d)
        self.assertEqual(self.sagad.get_saga(d["id"])["trace_id"], TID)
        # Sent on as version 00, with only the flag version 00 knows.
        self.assertTraced(self.calls(d["id"], 3), TID, "01")

    def test_tracestate_bounded(self):
        big = ",".join("k%d=%s" % (i, "v" * 20) for i in range(40))  # over 512 characters
        st, _, d = self.sagad.post_saga({"t": "big-state"}, {"traceparent": TP, "tracestate": big})
        self.assertEqual(st, 200, d)
        self.assertTraced(self.calls(d["id"], 3), TID, state=None)
        st, _, d = self.sagad.post_saga({"t": "ctl-state"},
                                        {"traceparent": TP, "tracestate": "a=b\tc"})
        self.assertEqual(st, 200, d)
        self.assertTraced(self.calls(d["id"], 3), TID, state=None)

    def test_typed_start_and_async(self):
        st, _, d = self.sagad.post_type("sta", {"t": "typed"}, {"traceparent": TP})
        self.assertEqual(st, 200, d)
        self.assertEqual(self.sagad.get_saga(d["id"])["trace_id"], TID)
        self.assertTraced(self.calls(d["id"], 3), TID)
        st, _, d = self.sagad.post_saga({"t": "async"},
                                        {"traceparent": TP, "Prefer": "respond-async"})
        self.assertEqual(st, 202, d)
        self.sagad.wait_status(d["id"], "COMPLETED")
        self.assertTraced(self.calls(d["id"], 3), TID)

    def test_redrive_stays_in_the_saga_trace(self):
        st, _, d = self.sagad.post_saga({"t": "redrive", "_stub": {"anonymizer": {"status": 503}}},
                                        {"traceparent": TP})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        self.stubs.config({"anonymizer": None})
        other = "00-%s-%s-01" % ("a" * 32, PID)
        # The stub's directive lives in the request: the redrive fails the
        # same way, and is still traced in the saga's own trace.
        st, _, b = self.sagad.http("POST", "/saga/%s/retry" % sid, None, {"traceparent": other})
        self.assertEqual(st, 400, b)
        reqs = self.calls(sid, 2)
        self.assertEqual([r["path"] for r in reqs], ["/anonymize", "/anonymize"])
        self.assertTraced(reqs, TID)
        self.assertEqual(self.sagad.get_saga(sid)["trace_id"], TID)


class TestTraceRestart(TraceCase):
    def test_restart_continues_the_trace(self):
        self.stubs.config({"ai_model": {"delay_ms": 3000}})
        self.addCleanup(self.stubs.config, {"ai_model": None})
        st, _, b = self.sagad.http("POST", "/saga", {"t": "restart"},
                                   {"traceparent": TP, "tracestate": STATE,
                                    "Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        self.sagad.wait_saga(sid, lambda r: r["steps"][2]["status"] == "RUNNING", 10)
        wait_until(lambda: self.stubs.requests(sid, path="/process"), 10, msg="step 3 called")
        self.sagad.kill9()
        self.stubs.config({"ai_model": None})
        self.sagad.start()
        self.sagad.wait_status(sid, "COMPLETED", 20)
        reqs = self.calls(sid, 4)
        self.assertEqual([r["path"] for r in reqs].count("/process"), 2, reqs)
        self.assertTraced(reqs, TID, "01", STATE)
        self.assertEqual(self.sagad.get_saga(sid)["trace_id"], TID)


def svc(name):
    return "${STUBS_URL}/svc/" + name


class TestTraceHttpCompensation(TraceCase):
    """HTTP compensations (design §6) carry the trace too."""

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs("--quiet")
        cls.addClassCleanup(cls.stubs.proc.kill)
        defs = {"default": "order", "sagas": {"order": {"version": 1, "steps": [
            {"name": "reserve", "http": {"url": svc("reserve")},
             "compensate": {"http": {"url": svc("release")}}},
            {"name": "notify", "publish": {"topic": "order_confirmed"},
             "compensate": {"publish": {"topic": "order_cancelled"}}},
            {"name": "ship", "http": {"url": svc("ship")}}]}}}
        cls.sagad = Sagad(cls.stubs, definitions=defs)
        cls.addClassCleanup(lambda: cls.sagad.proc.kill())

    def test_http_compensation_traced(self):
        self.stubs.config({"svc/ship": {"status": 409}})
        self.addCleanup(self.stubs.config, {"svc/ship": None})
        st, _, d = self.sagad.post_saga({"o": 1}, {"traceparent": TP})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 15)
        reqs = self.calls(sid, 5)
        self.assertEqual([r["path"] for r in reqs],
                         ["/svc/reserve", "/events", "/svc/ship", "/events", "/svc/release"])
        self.assertEqual(reqs[-1]["idempotency_key"], sid + ":reserve:compensate")
        self.assertTraced(reqs, TID, not_span=PID)


class TestJsonLog(TraceCase):
    SAGAD_ARGS = ("--log-format", "json")

    def test_lines_are_json_with_the_trace(self):
        st, _, d = self.sagad.post_saga({"t": "log \"quoted\"\n"}, {"traceparent": TP})
        self.assertEqual(st, 200, d)
        sid = d["id"]
        st, _, d = self.sagad.post_saga({"t": "log-fail", "_stub": {"ai_model": {"status": 500}}})
        self.assertEqual(st, 400, d)
        sid2 = d["detail"]["id"]
        trace2 = self.sagad.get_saga(sid2)["trace_id"]
        self.sagad.wait_saga(sid2, lambda r: r["compensation_status"] == "COMPLETED", 15)

        def mine(s):
            return [o for o in self.objects() if o.get("saga_id") == s]

        wait_until(lambda: any(o.get("status") == "COMPLETED" and o.get("step") == "ai_model"
                               for o in mine(sid)), 5, msg="final log line")
        wait_until(lambda: any(o.get("event") == "compensation_delivered" for o in mine(sid2)),
                   5, msg="compensation log line")
        lines = mine(sid)
        self.assertGreaterEqual(len(lines), 3, lines)
        for o in lines:
            self.assertEqual(o["trace_id"], TID, o)
            self.assertEqual(o["type"], "sta", o)
            self.assertIn(o["level"], ("info", "warn", "error"), o)
            self.assertRegex(o["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertIn("status", o)
            self.assertIn(sid, o["msg"])
        self.assertEqual({o.get("step") for o in lines}, {"anonymizer", "tokenizer", "ai_model"})
        for o in mine(sid2):
            self.assertEqual(o["trace_id"], trace2, o)
        # Every line sagad wrote, start-up included, is one JSON object.
        self.assertTrue(any(o.get("msg", "").startswith("sagad listening") for o in self.objects()))

    def objects(self):
        out = []
        for line in self.sagad.proc.output("err", last=100000).splitlines():
            obj = json.loads(line)  # raises on a line that is not JSON
            self.assertIsInstance(obj, dict, line)
            out.append(obj)
        return out


class TestLogFormatFlag(harness.SagadCase):
    @classmethod
    def setUpClass(cls):
        pass

    def test_bad_value_exits_2(self):
        for argv, env in ((["--log-format", "xml"], None), ([], {"SAGAD_LOG_FORMAT": "JSON"})):
            rc, _, err = harness.run([harness.SAGAD, "--db", "/nonexistent/x.db"] + argv,
                                     env=harness.clean_env(env))
            self.assertEqual(rc, 2, err)
            self.assertIn("text or json", err)

    def test_help_lists_it(self):
        rc, out, _ = harness.run([harness.SAGAD, "--help"])
        self.assertEqual(rc, 0)
        self.assertIn("--log-format", out)
        self.assertIn("SAGAD_LOG_FORMAT", out)


if __name__ == "__main__":
    harness.main()
