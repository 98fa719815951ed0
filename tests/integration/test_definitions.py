"""Saga definitions from a file (design §6): examples/definitions.json's
order saga end to end, templates and downstream requests, failure at every
position and the reverse-order compensations, a parked compensation and
its redelivery, payload templates of publish steps and compensations (the
envelopes the webhook gets, after a failure, after a restart), the 64-step
limit, HTTP-only sagas without a bus, the API's type routes, validation at
start, SIGHUP reloads (alone, under load, a changed payload) and a restart
that finishes sagas on the version they started with."""

import copy
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, jbody, wait_until  # noqa: E402

EXAMPLE = os.path.join(harness.REPO, "examples", "definitions.json")

ORDER_REQUEST = {"order_id": "o-1001", "sku": "SKU-42", "quantity": 2, "total": 59.9,
                 "currency": "EUR",
                 "customer": {"email": "ana@example.com",
                              "address": {"street": "Calle Mayor 1", "city": "Madrid"}}}


def svc(name):
    return "${STUBS_URL}/svc/" + name


def http_step(name, service, comp=None, **extra):
    """An HTTP step calling /svc/<service>; comp: the compensation's
    "http" object (its url a service name) or None."""
    step = {"name": name, "http": {"url": svc(service)}}
    step.update(extra)
    if comp is not None:
        c = dict(comp)
        c["url"] = svc(c["url"])
        step["compensate"] = {"http": c}
    return step


def pub_step(name, topic, comp_topic=None, comp_http=None, **extra):
    step = {"name": name, "publish": {"topic": topic}}
    step.update(extra)
    if comp_topic:
        step["compensate"] = {"publish": {"topic": comp_topic}}
    if comp_http:
        c = dict(comp_http)
        c["url"] = svc(c["url"])
        step["compensate"] = {"http": c}
    return step


def saga(version, steps, **extra):
    d = {"version": version, "steps": steps}
    d.update(extra)
    return d


def defs(sagas, default=None):
    d = {"sagas": sagas}
    if default:
        d["default"] = default
    return d


def fail_prefix(k, label):
    return "Error en Step %d (%s): " % (k, label)


def by_seq(reqs):
    return sorted(reqs, key=lambda r: r["seq"])


class DefCase(harness.SagadCase):
    """One sta-stubs for the class; sagad instances are the tests' own
    unless the class sets DEFINITIONS (then one for the class)."""

    DEFINITIONS = None
    SAGAD_ARGS = ()
    STEP_TIMEOUT_MS = 3000

    @classmethod
    def setUpClass(cls):
        cls.stubs = Stubs("--quiet")
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.sagad = None
        if cls.DEFINITIONS is not None:
            cls.sagad = Sagad(cls.stubs, step_timeout_ms=cls.STEP_TIMEOUT_MS, args=cls.SAGAD_ARGS,
                              definitions=cls.DEFINITIONS)
            cls.addClassCleanup(lambda: cls.sagad.proc.kill())

    def start_sagad(self, definitions, args=(), **kw):
        s = Sagad(self.stubs, definitions=definitions, args=args, **kw)
        type(self).sagad = s  # for the failure log
        self.addCleanup(lambda: s.proc.kill() if s.proc else None)
        return s

    def stub_config(self, obj):
        self.stubs.config(obj)
        self.addCleanup(self.stubs.config, {k: None for k in obj})

    def saga_requests(self, sid, path_prefix=None):
        reqs = by_seq(self.stubs.requests(sid))
        if path_prefix:
            reqs = [r for r in reqs if r["path"].startswith(path_prefix)]
        return reqs

    def assertStepsCompleted(self, rec, names):
        self.assertEqual([s["name"] for s in rec["steps"]], names, rec["steps"])
        for s in rec["steps"]:
            self.assertEqual((s["status"], s["attempts"], s["error"]), ("COMPLETED", 1, None), s)
            self.assertIso(s["started_at"])
            self.assertIso(s["finished_at"])


# ---------------------------------------------------------------------------


class ExampleFileTest(DefCase):
    """examples/definitions.json as shipped: the STA saga and the order saga."""

    DEFINITIONS = EXAMPLE

    def test_order_happy_path(self):
        st, h, d = self.sagad.post_type("order", ORDER_REQUEST)
        self.assertEqual(st, 200, d)
        self.assertEqual(set(d), {"id", "result", "data"}, d)
        sid = d["id"]
        self.assertUuid(sid)
        self.assertEqual(d["result"], "Pedido confirmado")
        data = d["data"]
        self.assertEqual(set(data), {"reservation", "payment", "order_event", "shipment"}, data)
        self.assertEqual(data["order_event"], "event_published")
        for out, service, method in (("reservation", "stock-reserve", "POST"),
                                     ("payment", "payment-charge", "POST"),
                                     ("shipment", "shipping-create", "PUT")):
            self.assertEqual(set(data[out]), {"id", "service", "method"}, data[out])
            self.assertEqual((data[out]["service"], data[out]["method"]), (service, method))
            self.assertRegex(data[out]["id"], "^%s-\\d+$" % service)
        reservation = data["reservation"]["id"]

        reqs = self.saga_requests(sid)
        self.assertEqual([(r["path"], r["method"]) for r in reqs],
                         [("/svc/stock-reserve", "POST"), ("/svc/payment-charge", "POST"),
                          ("/events", "POST"), ("/svc/shipping-create", "PUT")], reqs)
        reserve, charge, event, ship = reqs
        for r, step in ((reserve, "reserve"), (charge, "charge"), (ship, "ship")):
            self.assertEqual(r["saga_id"], sid)
            self.assertEqual(r["idempotency_key"], "%s:%s" % (sid, step))
            self.assertEqual(r["status"], 200)
        custom = {"x-saga-compensation": None, "x-test-tenant": "shop-eu"}
        self.assertEqual(reserve["headers"], custom)
        self.assertEqual(charge["headers"], custom)
        self.assertEqual(ship["headers"], {"x-saga-compensation": None})
        # Typed values: a number stays a number, an object an object; a
        # ${…} inside a longer string is spliced in as text.
        self.assertEqual(json.loads(reserve["body"]),
                         {"order": "o-1001", "sku": "SKU-42", "quantity": 2})
        self.assertEqual(json.loads(charge["body"]),
                         {"amount": 59.9, "currency": "EUR", "ref": reservation,
                          "description": "order o-1001 for ana@example.com"})
        self.assertIn('"amount":59.9', charge["body"].replace(" ", ""))
        self.assertEqual(json.loads(ship["body"]),
                         {"order": "o-1001", "address": ORDER_REQUEST["customer"]["address"],
                          "reservation": reservation})
        # The event's payload is its template, rendered.
        env = json.loads(event["body"])
        self.assertEqual((env["topic"], env["saga_id"], env["payload"]),
                         ("order_confirmed", sid,
                          {"order": "o-1001", "total": 59.9, "currency": "EUR",
                           "reservation": reservation, "payment": data["payment"]["id"]}))

        rec = self.sagad.get_saga(sid)
        self.assertEqual((rec["type"], rec["version"]), ("order", 2))
        self.assertEqual(rec["overall_status"], "COMPLETED")
        self.assertEqual(rec["compensation_status"], "NONE")
        self.assertIsNone(rec["error"])
        self.assertEqual(rec["request_data"], ORDER_REQUEST)
        self.assertEqual(rec["processed_data"], data)
        self.assertStepsCompleted(rec, ["reserve", "charge", "confirm", "ship"])
        # Nothing was compensated: no step shows a compensation.
        for s in rec["steps"]:
            self.assertNotIn("compensation", s)
        self.assertEqual(self.saga_requests(sid, "/svc/stock-release"), [])
        self.assertEqual(self.saga_requests(sid, "/svc/payment-refund"), [])

    def test_order_failure_compensates_in_reverse(self):
        # Shipping refuses: order_cancelled, then the refund, then the
        # stock release, each with its template body.
        self.stub_config({"svc/shipping-create": {"status": 409}})
        st, _, d = self.sagad.post_type("order", dict(ORDER_REQUEST, order_id="o-1002"))
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        self.assertEqual(d["detail"]["error"], fail_prefix(4, "Shipping") + "HTTP 409 from "
                         + self.stubs.url("/svc/shipping-create"))
        rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 15)
        pd = rec["processed_data"]
        self.assertEqual(set(pd), {"reservation", "payment", "order_event"})
        reqs = self.saga_requests(sid)
        seen = [(r["path"], json.loads(r["body"]).get("topic") if r["path"] == "/events" else None)
                for r in reqs]
        self.assertEqual(seen, [("/svc/stock-reserve", None), ("/svc/payment-charge", None),
                                ("/events", "order_confirmed"), ("/svc/shipping-create", None),
                                ("/events", "order_cancelled"), ("/svc/payment-refund", None),
                                ("/svc/stock-release", None)], reqs)
        refund, release = reqs[5], reqs[6]
        for r, step in ((refund, "charge"), (release, "reserve")):
            self.assertEqual(r["method"], "POST")
            self.assertEqual(r["headers"], {"x-saga-compensation": "true"})
            self.assertEqual(r["idempotency_key"], "%s:%s:compensate" % (sid, step))
            self.assertEqual(r["saga_id"], sid)
        self.assertEqual(json.loads(refund["body"]),
                         {"payment": pd["payment"]["id"], "amount": 59.9})
        self.assertEqual(json.loads(release["body"]),
                         {"reservation": pd["reservation"]["id"], "order": "o-1002"})
        self.assertEqual(json.loads(reqs[4]["body"])["payload"],
                         {"order": "o-1002", "payment": pd["payment"]["id"],
                          "reason": "order o-1002 not shipped"})

    def test_type_routes(self):
        st, _, d = self.sagad.post_type("order", dict(ORDER_REQUEST, order_id="o-1003"))
        self.assertEqual(st, 200, d)
        order_id = d["id"]
        # POST /saga starts the default type: the file's STA saga.
        st, _, d = self.sagad.post_saga({"image_id": "img_def"})
        self.assertEqual(st, 200, d)
        sta_id = d["id"]
        self.assertEqual(set(d["data"]), {"anonymized", "tokenizer_event", "ai_result"})
        self.assertEqual(sorted(r["path"] for r in self.stubs.requests(sta_id)),
                         ["/anonymize", "/events", "/process"])
        rec = self.sagad.get_saga(sta_id)
        self.assertEqual((rec["type"], rec["version"]), ("sta", 1))
        st, _, b = self.sagad.http("GET", "/sagas?type=order&limit=1000")
        self.assertEqual(st, 200, b)
        listed = jbody(b)["sagas"]
        self.assertIn(order_id, [r["id"] for r in listed])
        self.assertNotIn(sta_id, [r["id"] for r in listed])
        self.assertEqual({r["type"] for r in listed}, {"order"})
        st, _, b = self.sagad.http("GET", "/sagas?type=sta&limit=1000")
        self.assertEqual({r["type"] for r in jbody(b)["sagas"]}, {"sta"})
        self.assertIn(sta_id, [r["id"] for r in jbody(b)["sagas"]])
        st, _, b = self.sagad.http("POST", "/sagas/nope", {"x": 1})
        self.assertEqual(st, 404, b)
        self.assertEqual(jbody(b), {"detail": "unknown saga type 'nope' (known: sta, order)"})

    def test_definitions_listing(self):
        st, _, b = self.sagad.http("GET", "/definitions")
        self.assertEqual(st, 200, b)
        listed = jbody(b)["definitions"]
        self.assertEqual([(x["name"], x["version"], x["versions"], x["default"]) for x in listed],
                         [("sta", 1, [1], True), ("order", 2, [2], False)])
        order = listed[1]
        self.assertEqual([s["name"] for s in order["steps"]],
                         ["reserve", "charge", "confirm", "ship"])
        self.assertEqual([s["label"] for s in order["steps"]],
                         ["Stock", "Payment", "Order events", "Shipping"])
        self.assertEqual([s["output"] for s in order["steps"]],
                         ["reservation", "payment", "order_event", "shipment"])
        self.assertEqual(order["steps"][2]["compensate"], {"publish": {"topic": "order_cancelled"}})
        self.assertEqual(order["steps"][3]["action"],
                         {"http": {"method": "PUT", "url": self.stubs.url("/svc/shipping-create")}})
        self.assertIsNone(order["steps"][3]["compensate"])


# ---------------------------------------------------------------------------

FIVE = saga(1, [http_step("s%d" % i, "five-s%d" % i, output="out%d" % i, label="Service %d" % i,
                          comp=({"url": "five-c%d" % i, "method": "DELETE"} if i % 2 else
                                {"url": "five-c%d" % i, "method": "PATCH",
                                 "body": {"undo": "${steps.s%d.response.id}" % i,
                                          "order": "${request.order}", "step": i}}))
                for i in range(1, 6)])

# Publish steps and compensations mixed with HTTP ones (webhook = /events).
MIXED = saga(1, [
    http_step("m1", "mixed-s1", label="One", comp={"url": "mixed-c1", "method": "PUT",
                                                   "body": "${steps.m1.response.id}"}),
    pub_step("m2", "mixed_step2", comp_topic="mixed_comp2", label="Two"),
    http_step("m3", "mixed-s3", label="Three"),
    pub_step("m4", "mixed_step4", comp_http={"url": "mixed-c4"}, label="Four"),
    http_step("m5", "mixed-s5", label="Five", comp={"url": "mixed-c5"}),
])

PARK = saga(1, [http_step("p1", "park-s1", comp={"url": "park-c1"}),
                http_step("p2", "park-s2", comp={"url": "park-c2"}),
                http_step("p3", "park-s3", label="Last")])


class FailurePositionTest(DefCase):
    DEFINITIONS = defs({"five": FIVE, "mixed": MIXED, "park": PARK}, default="five")
    SAGAD_ARGS = ("--park-after", "1")

    def check_comp_view(self, rec, compensated):
        """steps[] entries: compensated ones COMPLETED with their
        timestamps, one after the other in reverse order; the others show
        no compensation."""
        prev_end = None  # of the compensation that ran before this one
        for i in reversed(range(len(rec["steps"]))):
            s = rec["steps"][i]
            comp = s.get("compensation")
            if i in compensated:
                self.assertIsNotNone(comp, s)
                self.assertEqual(set(comp), {"status", "attempts", "started_at", "finished_at",
                                             "error"}, comp)
                self.assertEqual((comp["status"], comp["attempts"], comp["error"]),
                                 ("COMPLETED", 1, None), s)
                self.assertIso(comp["started_at"])
                self.assertIso(comp["finished_at"])
                self.assertLessEqual(comp["started_at"], comp["finished_at"])
                if prev_end is not None:
                    self.assertLessEqual(
                        prev_end, comp["started_at"],
                        "the compensation of %s shows started_at before the one of the step "
                        "after it finished (it ran after it: see the stubs); steps: %s"
                        % (s["name"], json.dumps(rec["steps"])))
                prev_end = comp["finished_at"]
            else:
                self.assertNotIn("compensation", s)

    def test_http_failure_at_every_position(self):
        for k in range(1, 6):
            with self.subTest(k=k):
                self.stubs.config({"svc/five-s%d" % k: {"status": 500}})
                try:
                    st, _, d = self.sagad.post_type("five", {"order": "five-%d" % k})
                finally:
                    self.stubs.config({"svc/five-s%d" % k: None})
                self.assertEqual(st, 400, d)
                sid = d["detail"]["id"]
                err = d["detail"]["error"]
                self.assertEqual(err, fail_prefix(k, "Service %d" % k) + "HTTP 500 from "
                                 + self.stubs.url("/svc/five-s%d" % k))
                want_comp = "COMPLETED" if k > 1 else "NONE"
                rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == want_comp, 15)
                self.assertEqual(rec["overall_status"], "FAILED")
                self.assertEqual(rec["error"], err)
                self.assertEqual((rec["type"], rec["version"]), ("five", 1))
                self.assertEqual([s["status"] for s in rec["steps"]],
                                 ["COMPLETED"] * (k - 1) + ["FAILED"] + ["PENDING"] * (5 - k))
                self.assertEqual(set(rec["processed_data"]), {"out%d" % i for i in range(1, k)})
                time.sleep(0.2)  # nothing more arrives
                reqs = self.saga_requests(sid)
                self.assertEqual([r["path"] for r in reqs],
                                 ["/svc/five-s%d" % i for i in range(1, k + 1)]
                                 + ["/svc/five-c%d" % i for i in range(k - 1, 0, -1)], reqs)
                for i, r in enumerate(reqs[:k], 1):
                    self.assertEqual((r["method"], r["idempotency_key"], r["headers"]),
                                     ("POST", "%s:s%d" % (sid, i), {"x-saga-compensation": None}))
                    self.assertEqual(json.loads(r["body"]), {"order": "five-%d" % k})
                for r in reqs[k:]:
                    i = int(r["path"][-1])
                    self.assertEqual((r["idempotency_key"], r["headers"], r["saga_id"]),
                                     ("%s:s%d:compensate" % (sid, i),
                                      {"x-saga-compensation": "true"}, sid))
                    if i % 2:
                        self.assertEqual(r["method"], "DELETE")
                        self.assertEqual(json.loads(r["body"]), {"order": "five-%d" % k})
                    else:
                        self.assertEqual(r["method"], "PATCH")
                        self.assertEqual(json.loads(r["body"]),
                                         {"undo": rec["processed_data"]["out%d" % i]["id"],
                                          "order": "five-%d" % k, "step": i})
                self.check_comp_view(rec, set(range(k - 1)))

    def test_mixed_failure_at_every_position(self):
        labels = ["One", "Two", "Three", "Four", "Five"]
        # What each completed step's compensation sends, latest first.
        comp_of = {1: ("/svc/mixed-c1", None), 2: ("/events", "mixed_comp2"),
                   4: ("/svc/mixed-c4", None), 5: ("/svc/mixed-c5", None)}
        forward = {1: ("/svc/mixed-s1", None), 2: ("/events", "mixed_step2"),
                   3: ("/svc/mixed-s3", None), 4: ("/events", "mixed_step4"),
                   5: ("/svc/mixed-s5", None)}
        for k in range(1, 6):
            with self.subTest(k=k):
                body = {"order": "mixed-%d" % k}
                if k in (2, 4):  # the webhook refuses that topic's event only
                    body["_stub"] = {"mixed_step%d" % k: {"status": 500}}
                else:  # that service refuses this saga's call
                    body["_stub"] = {"svc/mixed-s%d" % k: {"status": 500}}
                st, _, d = self.sagad.post_type("mixed", body)
                self.assertEqual(st, 400, d)
                sid = d["detail"]["id"]
                err = d["detail"]["error"]
                self.assertTrue(err.startswith(fail_prefix(k, labels[k - 1])), err)
                comps = [i for i in range(k - 1, 0, -1) if i in comp_of]
                want = "COMPLETED" if comps else "NONE"
                rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == want, 15)
                self.assertEqual([s["status"] for s in rec["steps"]],
                                 ["COMPLETED"] * (k - 1) + ["FAILED"] + ["PENDING"] * (5 - k))
                time.sleep(0.2)
                reqs = self.saga_requests(sid)
                seen = [(r["path"], json.loads(r["body"])["topic"] if r["path"] == "/events"
                         else None) for r in reqs]
                self.assertEqual(seen, [forward[i] for i in range(1, k + 1)]
                                 + [comp_of[i] for i in comps], reqs)
                for r, i in zip(reqs[k:], comps):
                    if r["path"] == "/events":
                        env = json.loads(r["body"])
                        self.assertEqual((env["saga_id"], env["payload"]), (sid, body))
                        continue
                    self.assertEqual((r["idempotency_key"], r["headers"]),
                                     ("%s:m%d:compensate" % (sid, i),
                                      {"x-saga-compensation": "true"}))
                    if i == 1:
                        self.assertEqual(r["method"], "PUT")
                        self.assertEqual(json.loads(r["body"]),
                                         rec["processed_data"]["m1"]["id"])
                    else:
                        self.assertEqual(r["method"], "POST")
                        self.assertEqual(json.loads(r["body"]), body)
                self.check_comp_view(rec, {i - 1 for i in comps})
                # Outbox: the failed publish step's event withdrawn, every
                # compensation delivered.
                ob = self.sagad.outbox(sid)
                self.assertTrue(all(o["status"] == harness.EVENT_DELIVERED
                                    for o in ob if o["compensation"]), ob)
                if k in (2, 4):
                    failed = [o for o in ob if o["topic"] == "mixed_step%d" % k]
                    self.assertEqual([o["status"] for o in failed], [harness.EVENT_WITHDRAWN], ob)

    def test_parked_compensation_holds_the_rest(self):
        # p3 fails; p2's compensation keeps failing (503) until parked
        # after --park-after 1 s; p1's waits for it.
        self.stub_config({"svc/park-s3": {"status": 500}, "svc/park-c2": {"status": 503}})
        st, _, d = self.sagad.post_type("park", {"order": "park-1"})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        self.assertTrue(d["detail"]["error"].startswith(fail_prefix(3, "Last")), d)
        rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "PARKED", 15)
        c2 = self.saga_requests(sid, "/svc/park-c2")
        self.assertGreaterEqual(len(c2), 2, "the compensation was not retried")
        self.assertEqual({r["idempotency_key"] for r in c2}, {"%s:p2:compensate" % sid})
        self.assertEqual(self.saga_requests(sid, "/svc/park-c1"), [])
        comp = rec["steps"][1]["compensation"]
        self.assertEqual(comp["status"], "PARKED", rec["steps"])
        self.assertEqual(comp["attempts"], len(self.saga_requests(sid, "/svc/park-c2")))
        self.assertEqual(comp["error"], "still undelivered after --park-after")
        self.assertIso(comp["started_at"])
        self.assertIsNone(comp["finished_at"])
        c1 = rec["steps"][0]["compensation"]
        self.assertEqual((c1["status"], c1["attempts"], c1["started_at"], c1["finished_at"]),
                         ("PENDING", 0, None, None))
        self.assertNotIn("compensation", rec["steps"][2])
        st, _, b = self.sagad.http("GET", "/events?status=PARKED&limit=1000")
        parked = [e for e in jbody(b)["events"] if e["saga_id"] == sid]
        self.assertEqual(len(parked), 1, parked)
        ev = parked[0]
        self.assertIsNone(ev["topic"])
        self.assertEqual(ev["url"], self.stubs.url("/svc/park-c2"))
        # Still waiting a moment later.
        time.sleep(0.5)
        self.assertEqual(self.saga_requests(sid, "/svc/park-c1"), [])

        self.stubs.config({"svc/park-c2": None})
        st, _, b = self.sagad.http("POST", "/events/%s/redeliver" % ev["id"])
        self.assertEqual(st, 202, b)
        rec = self.sagad.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 15)
        reqs = self.saga_requests(sid)
        self.assertEqual([r["path"] for r in reqs][-2:], ["/svc/park-c2", "/svc/park-c1"])
        self.assertEqual([r["status"] for r in reqs][-2:], [200, 200])
        self.assertEqual(len(self.saga_requests(sid, "/svc/park-c1")), 1)
        c1, c2 = rec["steps"][0]["compensation"], rec["steps"][1]["compensation"]
        self.assertEqual((c1["status"], c1["attempts"], c1["error"]), ("COMPLETED", 1, None))
        self.assertEqual((c2["status"], c2["error"]), ("COMPLETED", None))
        self.assertEqual(c2["attempts"], len(self.saga_requests(sid, "/svc/park-c2")))
        self.assertLessEqual(c2["finished_at"], c1["started_at"],
                             "p1's compensation shows started_at before p2's finished (it ran "
                             "after it: see the stubs)")


# ---------------------------------------------------------------------------

# A publish step and a publish compensation with payload templates (design
# §6): typed values, a spliced string, a missing value, a constant, and the
# answer of the HTTP step before them.
PAID_PAYLOAD = {"order": "${request.order_id}", "charge": "${steps.charge.response.id}",
                "amount": "${request.total}", "customer": "${request.customer}",
                "note": "order ${request.order_id} for ${request.customer.email}",
                "missing": "${request.nope}", "v": 1}
UNPAID_PAYLOAD = {"order": "${request.order_id}", "refund": "${steps.charge.response.id}",
                  "amount": "${request.total}", "own": "${steps.paid.response}"}
PAID = saga(1, [
    http_step("charge", "pt-charge", label="Charge"),
    {"name": "paid", "label": "Paid",
     "publish": {"topic": "order_paid", "payload": PAID_PAYLOAD},
     "compensate": {"publish": {"topic": "order_unpaid", "payload": UNPAID_PAYLOAD}}},
    http_step("ship", "pt-ship", label="Ship"),
])


def envelope_payload(body):
    """The raw JSON text of an envelope's payload, as sent: between
    ',"payload":' and ',"created_at":"' (the contract's key order)."""
    m = re.fullmatch(r'\{"id":"[^"]+","topic":"[^"]+","saga_id":"[^"]+","payload":(.*),'
                     r'"created_at":"[^"]+"\}', body, re.S)
    assert m, body
    return m.group(1)


def stored_text(v):
    return v.decode() if isinstance(v, (bytes, bytearray, memoryview)) else v


class PayloadTemplateTest(DefCase):
    """Publish payload templates end to end: the webhook gets the design §4
    envelope with the rendered payload (the request no longer), the
    compensation's after a forced failure, the same event after a restart;
    bad templates refused at start. Each test runs its own sagad."""

    def expected(self, req, charge_id):
        paid = {"order": req["order_id"], "charge": charge_id, "amount": req["total"],
                "customer": req["customer"],
                "note": "order %s for %s" % (req["order_id"], req["customer"]["email"]),
                "missing": None, "v": 1}
        unpaid = {"order": req["order_id"], "refund": charge_id, "amount": req["total"],
                  "own": None}
        return paid, unpaid

    def events(self, sid, topic):
        return [r for r in self.saga_requests(sid, "/events")
                if json.loads(r["body"])["topic"] == topic]

    def check_envelope(self, r, sid, topic, payload):
        env = json.loads(r["body"], object_pairs_hook=list)
        self.assertEqual([k for k, _ in env], ["id", "topic", "saga_id", "payload", "created_at"])
        env = dict(env)
        self.assertUuid(env["id"])
        self.assertIso(env["created_at"])
        self.assertEqual((env["topic"], env["saga_id"]), (topic, sid))
        self.assertEqual(json.loads(r["body"])["payload"], payload)
        return env["id"]

    def check_stored(self, s, sid, topic, raw):
        """The outbox holds exactly the bytes that were sent."""
        rows = [o for o in s.outbox(sid) if o["topic"] == topic]
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(stored_text(rows[0]["payload"]), raw)
        self.assertEqual(rows[0]["status"], harness.EVENT_DELIVERED)

    def test_step_payload(self):
        s = self.start_sagad(defs({"paid": PAID}))
        req = dict(ORDER_REQUEST, order_id="pt-1")
        st, _, d = s.post_type("paid", req)
        self.assertEqual(st, 200, d)
        sid = d["id"]
        self.assertEqual(d["data"]["paid"], "event_published")
        paid, _ = self.expected(req, d["data"]["charge"]["id"])
        self.assertRegex(paid["charge"], "^pt-charge-\\d+$")
        [ev] = self.events(sid, "order_paid")
        self.check_envelope(ev, sid, "order_paid", paid)
        raw = envelope_payload(ev["body"])
        self.assertIn('"amount":59.9,', raw)  # typed, as compact JSON
        self.assertIn('"missing":null,', raw)
        self.check_stored(s, sid, "order_paid", raw)
        self.assertEqual(self.events(sid, "order_unpaid"), [])

    def test_compensation_payload(self):
        s = self.start_sagad(defs({"paid": PAID}))
        req = dict(ORDER_REQUEST, order_id="pt-2", _stub={"svc/pt-ship": {"status": 500}})
        st, _, d = s.post_type("paid", req)
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        self.assertTrue(d["detail"]["error"].startswith(fail_prefix(3, "Ship")), d)
        rec = s.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 15)
        paid, unpaid = self.expected(req, rec["processed_data"]["charge"]["id"])
        seen = [(r["path"], json.loads(r["body"])["topic"] if r["path"] == "/events" else None)
                for r in self.saga_requests(sid)]
        self.assertEqual(seen, [("/svc/pt-charge", None), ("/events", "order_paid"),
                                ("/svc/pt-ship", None), ("/events", "order_unpaid")])
        [ev] = self.events(sid, "order_paid")
        self.check_envelope(ev, sid, "order_paid", paid)
        [comp] = self.events(sid, "order_unpaid")
        self.check_envelope(comp, sid, "order_unpaid", unpaid)
        self.check_stored(s, sid, "order_unpaid", envelope_payload(comp["body"]))
        self.assertEqual(rec["steps"][1]["compensation"]["status"], "COMPLETED")

    def test_same_event_after_restart(self):
        # sagad dies while the event is out and unanswered: after the
        # restart the same event (id, payload, created_at) goes out again.
        # The answer is held far longer than a loaded machine needs to see
        # the event and kill sagad.
        s = self.start_sagad(defs({"paid": PAID}), step_timeout_ms=60000)
        self.stub_config({"tokenizer": {"delay_ms": 30000}})
        req = dict(ORDER_REQUEST, order_id="pt-3")
        st, _, b = s.http("POST", "/sagas/paid", req, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        wait_until(lambda: self.events(sid, "order_paid"), 10, msg="the event sent")
        s.kill9()
        self.stubs.config({"tokenizer": None})
        s.start()
        rec = s.wait_status(sid, "COMPLETED", 30)
        self.assertEqual(rec["steps"][1]["attempts"], 2)
        first, again = self.events(sid, "order_paid")
        self.assertEqual(again["body"], first["body"])
        paid, _ = self.expected(req, rec["processed_data"]["charge"]["id"])
        self.check_envelope(again, sid, "order_paid", paid)
        self.check_stored(s, sid, "order_paid", envelope_payload(again["body"]))

    def test_bad_payloads_refused_at_start(self):
        def steps(payload=None, comp_payload=None):
            pub = {"name": "paid", "publish": {"topic": "order_paid"},
                   "compensate": {"publish": {"topic": "order_unpaid"}}}
            if payload is not None:
                pub["publish"]["payload"] = payload
            if comp_payload is not None:
                pub["compensate"]["publish"]["payload"] = comp_payload
            return defs({"order": saga(1, [http_step("charge", "v-charge"), pub,
                                            http_step("ship", "v-ship")])})

        cases = [
            (steps({"ref": "${steps.ship.response.id}"}),
             "sagas.order.steps[1].publish.payload.ref: ${steps.ship.response.id} names a step "
             "that does not run before this one"),
            (steps({"who": {"x": "${steps.nobody.response}"}}),
             "sagas.order.steps[1].publish.payload.who.x: ${steps.nobody.response} names a step "
             "that does not run before this one"),
            (steps(["${request.order_id"]),
             "sagas.order.steps[1].publish.payload[0]: ${request.order_id has no closing }"),
            (steps(comp_payload={"ship": "${steps.ship.response}"}),
             "sagas.order.steps[1].compensate.publish.payload.ship: ${steps.ship.response} names "
             "a step that does not run before this one"),
            (steps(comp_payload="${STUBS_URL}"),
             "sagas.order.steps[1].compensate.publish.payload: ${STUBS_URL} is neither "
             "${request...} nor ${steps.<name>.response...}"),
        ]
        for bad, msg in cases:
            with self.subTest(msg=msg):
                start_fails(self, bad, msg)
        # Its own step's answer and the steps before: accepted.
        s = self.start_sagad(steps({"c": "${steps.charge.response.id}"},
                                   {"p": "${steps.paid.response}"}))
        st, _, d = s.post_type("order", {"ok": 1})
        self.assertEqual(st, 200, d)
        [ev] = self.events(d["id"], "order_paid")
        self.check_envelope(ev, d["id"], "order_paid", {"c": d["data"]["charge"]["id"]})


# ---------------------------------------------------------------------------


def wide(n, service="wide"):
    return saga(1, [http_step("w%02d" % i, service) for i in range(n)])


def start_fails(test, definitions, msg, env=None):
    """Starts sagad on a definitions file that must not load: it exits
    with status 2 and says `sagad: FILE: msg`, before it serves or
    touches the store."""
    d = harness.tmpdir()
    path = os.path.join(d, "defs.json")
    db = os.path.join(d, "s.db")
    harness.write_json_atomic(path, definitions)
    e = {"STUBS_URL": "http://127.0.0.1:9"}
    e.update(env or {})
    rc, out, err = harness.run([harness.SAGAD, "--listen", "127.0.0.1:0", "--db", db,
                                "--definitions", path], env=harness.clean_env(e), timeout=15)
    test.assertEqual(rc, 2, err)
    test.assertIn("sagad: %s: %s\n" % (path, msg), err)
    test.assertNotRegex(err, Sagad.LISTEN_RX)
    test.assertFalse(os.path.exists(db), "the store was created")


GOOD_ORDER = saga(1, [http_step("reserve", "v-reserve"), http_step("charge", "v-charge"),
                      http_step("ship", "v-ship")])


def order_with(step_index, change):
    d = copy.deepcopy(GOOD_ORDER)
    change(d["steps"], step_index)
    return defs({"order": d})


class LimitsTest(DefCase):

    def test_64_steps_complete(self):
        s = self.start_sagad(defs({"wide": wide(64)}))
        st, _, d = s.post_type("wide", {"n": 64})
        self.assertEqual(st, 200, d)
        self.assertEqual(len(d["data"]), 64)
        rec = s.get_saga(d["id"])
        self.assertStepsCompleted(rec, ["w%02d" % i for i in range(64)])
        reqs = self.saga_requests(d["id"])
        self.assertEqual([r["idempotency_key"] for r in reqs],
                         ["%s:w%02d" % (d["id"], i) for i in range(64)])

    def test_65_steps_refused(self):
        start_fails(self, defs({"wide": wide(65)}), "sagas.wide.steps: more than 64 steps")

    def test_http_only_without_bus(self):
        # No --bus at all: a saga of HTTP steps needs none.
        s = Sagad(None, definitions=defs({"plain": saga(1, [
            http_step("a", "plain-a", comp={"url": "plain-ca"}), http_step("b", "plain-b")])}),
            env={"STUBS_URL": self.stubs.url("")})
        type(self).sagad = s
        self.addCleanup(s.proc.kill)
        self.assertNotIn("--bus", s.argv)
        st, _, d = s.post_type("plain", {"p": 1})
        self.assertEqual(st, 200, d)
        self.assertEqual(sorted(d["data"]), ["a", "b"])
        st, _, d = s.post_saga({"p": 2})  # the only type is the default
        self.assertEqual(st, 200, d)
        self.assertEqual(s.get_saga(d["id"])["type"], "plain")
        # And its HTTP compensation goes out without a bus too.
        st, _, d = s.post_type("plain", {"p": 3, "_stub": {"svc/plain-b": {"status": 500}}})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        s.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 10)
        self.assertEqual([r["path"] for r in self.saga_requests(sid)],
                         ["/svc/plain-a", "/svc/plain-b", "/svc/plain-ca"])

    def test_bad_files_refused_at_start(self):
        def unknown_key(steps, i):
            steps[i]["retries"] = 3

        def no_action(steps, i):
            del steps[i]["http"]

        def dup_name(steps, i):
            steps[i]["name"] = steps[0]["name"]

        def later_ref(steps, i):
            steps[i]["http"]["body"] = {"ref": "${steps.ship.response.id}"}

        def bad_url(steps, i):
            steps[i]["http"]["url"] = "ftp://stock/reserve"

        def unset_env(steps, i):
            steps[i]["http"]["url"] = "${SG_IT_UNSET_URL}/reserve"

        cases = [
            (order_with(0, unknown_key), "sagas.order.steps[0].retries: unknown key"),
            (order_with(1, no_action), 'sagas.order.steps[1]: a step needs "http" or "publish"'),
            (order_with(1, dup_name), 'sagas.order.steps[1].name: "reserve" is used by steps[0]'),
            (order_with(1, later_ref), "sagas.order.steps[1].http.body.ref: "
             "${steps.ship.response.id} names a step that does not run before this one"),
            (order_with(1, bad_url), "sagas.order.steps[1].http.url: not an http(s) URL"),
            (order_with(0, unset_env),
             "sagas.order.steps[0].http.url: ${SG_IT_UNSET_URL} is not set"),
            (dict(defs({"order": GOOD_ORDER}), default="nope"),
             'default: "nope" is not a saga in this file'),
            (defs({"order": saga(0, GOOD_ORDER["steps"])}),
             "sagas.order.version: must be 1 to 2147483647"),
            ('{"sagas": {"order": ', "line 1, column 20: unexpected token near end of file"),
        ]
        for bad, msg in cases:
            with self.subTest(msg=msg):
                start_fails(self, bad, msg)
        # The same file with everything right starts.
        s = self.start_sagad(defs({"order": GOOD_ORDER}))
        st, _, d = s.post_type("order", {"ok": 1})
        self.assertEqual(st, 200, d)


# ---------------------------------------------------------------------------

V1 = saga(1, [http_step("a", "hup-a"), http_step("b", "hup-b")])
SAME_VERSION = ("sagas.hup.version: version 1 is already in use by a different definition of "
                "'hup'; give the changed definition a new version number")
V2 = saga(2, [http_step("a", "hup-a"), http_step("b", "hup-b"), http_step("c", "hup-c")])


class ReloadTest(DefCase):

    def listing(self, s):
        st, _, b = s.http("GET", "/definitions")
        self.assertEqual(st, 200, b)
        return {x["name"]: x for x in jbody(b)["definitions"]}

    def versions(self, s):
        return {name: x["version"] for name, x in self.listing(s).items()}

    def wait_version(self, s, name, version):
        wait_until(lambda: self.versions(s).get(name) == version, 10,
                   msg="%s at version %d" % (name, version))

    def run_one(self, s, saga_type, body):
        st, _, d = s.post_type(saga_type, body)
        self.assertEqual(st, 200, d)
        return s.get_saga(d["id"])

    def test_sighup_new_version(self):
        s = self.start_sagad(defs({"hup": V1}))
        old = self.run_one(s, "hup", {"v": 1})
        self.assertEqual((old["type"], old["version"]), ("hup", 1))
        self.assertStepsCompleted(old, ["a", "b"])
        s.write_definitions(defs({"hup": V2}))
        s.reload()
        self.wait_version(s, "hup", 2)
        self.assertEqual(self.listing(s)["hup"]["versions"], [1, 2])
        new = self.run_one(s, "hup", {"v": 2})
        self.assertEqual((new["type"], new["version"]), ("hup", 2))
        self.assertStepsCompleted(new, ["a", "b", "c"])
        self.assertEqual([r["path"] for r in self.saga_requests(new["id"])],
                         ["/svc/hup-a", "/svc/hup-b", "/svc/hup-c"])
        # The old saga's record is unchanged.
        self.assertEqual(s.get_saga(old["id"]), old)
        # A URL change under a new version number is a new version too.
        v3 = copy.deepcopy(V2)
        v3["version"] = 3
        v3["steps"][2]["http"]["url"] = svc("hup-c3")
        s.write_definitions(defs({"hup": v3}))
        s.reload()
        self.wait_version(s, "hup", 3)
        self.assertEqual(self.listing(s)["hup"]["versions"], [1, 2, 3])
        third = self.run_one(s, "hup", {"v": 3})
        self.assertEqual(third["version"], 3)
        self.assertEqual([r["path"] for r in self.saga_requests(third["id"])],
                         ["/svc/hup-a", "/svc/hup-b", "/svc/hup-c3"])

    def test_sighup_bad_file_keeps_old(self):
        s = self.start_sagad(defs({"hup": V1}))
        bad = copy.deepcopy(V2)
        bad["steps"][2]["http"]["url"] = "gopher://x/"
        n = s.proc.count_lines()
        s.write_definitions(defs({"hup": bad}))
        s.reload()
        s.proc.wait_line(r"sagas\.hup\.steps\[2\]\.http\.url: not an http\(s\) URL", start=n)
        self.assertTrue(s.proc.alive())
        rec = self.run_one(s, "hup", {"after": "bad"})
        self.assertEqual(rec["version"], 1)
        self.assertStepsCompleted(rec, ["a", "b"])
        # Not JSON at all: the same.
        n = s.proc.count_lines()
        s.write_definitions('{"sagas": {"hup": ')
        s.reload()
        s.proc.wait_line(r"line 1, column", start=n)
        self.assertEqual(self.run_one(s, "hup", {"after": "garbage"})["version"], 1)
        self.assertEqual(self.versions(s), {"hup": 1})

    def test_sighup_changed_same_version_refused(self):
        s = self.start_sagad(defs({"hup": V1}))
        changed = copy.deepcopy(V1)
        changed["steps"][1]["http"]["url"] = svc("hup-b-changed")
        n = s.proc.count_lines()
        s.write_definitions(defs({"hup": changed}))
        s.reload()
        s.proc.wait_line(re.escape(SAME_VERSION), start=n)
        rec = self.run_one(s, "hup", {"after": "same-version"})
        self.assertEqual(rec["version"], 1)
        self.assertEqual([r["path"] for r in self.saga_requests(rec["id"])],
                         ["/svc/hup-a", "/svc/hup-b"])
        # A restart with that file is refused too: the store knows version 1.
        s.kill9()
        p = harness.Proc(s.argv, env=s.env, cwd=s.workdir, name="sagad")
        self.assertEqual(p.wait(timeout=15), 2, p.output())
        self.assertIn(SAME_VERSION, p.output())

    def test_sighup_changed_payload(self):
        # The payload is part of the definition: changed under the same
        # version it is refused (the old one stays); under a new one, new
        # sagas send the new payload.
        def pub(version, payload):
            return defs({"hup": saga(version, [
                http_step("a", "hup-a"),
                {"name": "b", "publish": {"topic": "hup_b", "payload": payload}}])})

        s = self.start_sagad(pub(1, {"v": 1, "a": "${steps.a.response.id}"}))
        n = s.proc.count_lines()
        s.write_definitions(pub(1, {"v": 2, "a": "${steps.a.response.id}"}))
        s.reload()
        s.proc.wait_line(re.escape(SAME_VERSION), start=n)
        rec = self.run_one(s, "hup", {"after": "same-version"})
        [ev] = [r for r in self.saga_requests(rec["id"], "/events")]
        self.assertEqual(json.loads(ev["body"])["payload"],
                         {"v": 1, "a": rec["processed_data"]["a"]["id"]})
        s.write_definitions(pub(2, {"v": 2, "a": "${steps.a.response.id}"}))
        s.reload()
        self.wait_version(s, "hup", 2)
        rec = self.run_one(s, "hup", {"after": "new-version"})
        [ev] = [r for r in self.saga_requests(rec["id"], "/events")]
        self.assertEqual(json.loads(ev["body"])["payload"],
                         {"v": 2, "a": rec["processed_data"]["a"]["id"]})

    def test_reload_under_load(self):
        v1 = saga(1, [http_step("a", "load-a"), http_step("b", "load-b"), http_step("c", "load-c")])
        v2 = saga(2, [http_step("a", "load-a"), http_step("b", "load-b"), http_step("x", "load-x"),
                      http_step("c", "load-c")])
        names = {1: ["a", "b", "c"], 2: ["a", "b", "x", "c"]}
        s = self.start_sagad(defs({"order": v1}))
        self.stub_config({"svc/load-b": {"delay_ms": 30}})
        results, errors = [], []
        lock = threading.Lock()
        stop = threading.Event()
        marks = {}

        def client(n):
            c = harness.Client(s.port)
            i = 0
            try:
                while not stop.is_set():
                    t0 = time.monotonic()
                    st, _, b = c.request("POST", "/sagas/order", {"client": n, "i": i})
                    with lock:
                        results.append((t0, time.monotonic(), st, b))
                    i += 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                c.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        s.write_definitions(defs({"order": v2}))
        marks["hup"] = time.monotonic()
        s.reload()
        self.wait_version(s, "order", 2)
        marks["v2"] = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertTrue(all(st == 200 for _, _, st, _ in results),
                        [b[:300] for _, _, st, b in results if st != 200][:5])
        seen = {1: 0, 2: 0}
        for t0, t1, st, b in results:
            sid = jbody(b)["id"]
            rec = s.get_saga(sid)
            v = rec["version"]
            seen[v] += 1
            self.assertEqual(rec["overall_status"], "COMPLETED", rec)
            self.assertStepsCompleted(rec, names[v])
            self.assertEqual([r["path"] for r in self.saga_requests(sid)],
                             ["/svc/load-%s" % n for n in names[v]], sid)
            if t1 < marks["hup"]:
                self.assertEqual(v, 1, "answered before the SIGHUP, yet on version 2")
            if t0 > marks["v2"]:
                self.assertEqual(v, 2, "started after the reload, yet on version 1")
        self.assertGreater(seen[1], 0)
        self.assertGreater(seen[2], 0)
        # None lost: the store holds exactly the sagas answered.
        st, _, b = s.http("GET", "/sagas?type=order&limit=1000")
        self.assertEqual(len(jbody(b)["sagas"]), len(results))

    def test_restart_finishes_on_started_version(self):
        v1 = saga(1, [http_step("a", "rs-a"), http_step("b", "rs-b")])
        v2 = saga(2, [http_step("a", "rs-a"), http_step("b", "rs-b"), http_step("x", "rs-x")])
        s = self.start_sagad(defs({"order": v1}), step_timeout_ms=5000)
        self.stub_config({"svc/rs-b": {"delay_ms": 3000}})
        ids = []
        for i in range(3):
            st, _, b = s.http("POST", "/sagas/order", {"rs": i}, {"Prefer": "respond-async"})
            self.assertEqual(st, 202, b)
            ids.append(jbody(b)["id"])
        for sid in ids:
            wait_until(lambda: self.saga_requests(sid, "/svc/rs-b"), 10, msg="%s in step b" % sid)
        s.kill9()
        self.stubs.config({"svc/rs-b": None})
        s.write_definitions(defs({"order": v2}))
        s.start()
        for sid in ids:
            rec = s.wait_status(sid, "COMPLETED", 20)
            self.assertEqual(rec["version"], 1)
            self.assertEqual([x["name"] for x in rec["steps"]], ["a", "b"])
            self.assertEqual(self.saga_requests(sid, "/svc/rs-x"), [])
        self.assertEqual(self.versions(s), {"order": 2})
        self.assertEqual(self.listing(s)["order"]["versions"], [1, 2])
        new = self.run_one(s, "order", {"rs": "new"})
        self.assertEqual(new["version"], 2)
        self.assertStepsCompleted(new, ["a", "b", "x"])


if __name__ == "__main__":
    harness.main()
