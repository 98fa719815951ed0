"""The Pulsar transport (--bus pulsar://, pulsar+ssl://) against the test
broker of tests/pulsar/broker.js: a Node.js broker built on pulsar-flex's
protocol codec (an implementation independent of sagad's), run as a child
process on free ports. It checks every frame sagad sends (sizes, CRC32-C,
required fields, command order) and records violations, stored messages,
lookups, producers and sends, and injects faults on request.

No real Pulsar broker runs here: this is what the transport was verified
against (see the README)."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EVENT_WITHDRAWN, jbody, wait_until  # noqa: E402

PULSAR_DIR = os.path.join(harness.REPO, "tests", "pulsar")
NODE = shutil.which("node")
TOPIC = "persistent://public/default/tokenizer_event"
COMP_TOPIC = "persistent://public/default/tokenizer_compensation"


def ensure_node_modules():
    """npm ci in tests/pulsar once, under a lock (two builds may test at once)."""
    if os.path.isdir(os.path.join(PULSAR_DIR, "node_modules", "pulsar-flex")):
        return
    with open(os.path.join(PULSAR_DIR, ".npm-ci.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(os.path.join(PULSAR_DIR, "node_modules", "pulsar-flex")):
            return
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PULSAR_DIR,
                           capture_output=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError("npm ci in tests/pulsar failed:\n%s" % p.stderr.decode()[-3000:])


class Broker:
    """The test broker: brokers "a" and "b" and a control port."""

    def __init__(self, ports=None, state=None, tls=None, token=None):
        self.argv = [NODE, os.path.join(PULSAR_DIR, "broker.js")]
        if ports:
            self.argv += ["--ports", "%d,%d" % ports]
        if state:
            self.argv += ["--state", state]
        if tls:
            self.argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if token:
            self.argv += ["--token", token]
        self.start()

    def start(self):
        self.proc = harness.Proc(self.argv, name="pulsar-broker")
        m = self.proc.wait_line(r'^\{"ready":true.*\}$', which="out", timeout=30)
        info = json.loads(m.group(0))
        self.ports = (info["brokers"]["a"], info["brokers"]["b"])
        self.control = info["control"]
        return self

    def restart(self):
        """Kills the process and starts it on the same ports (and state file)."""
        self.kill()
        self.argv = [a for a in self.argv]
        if "--ports" not in self.argv:
            self.argv += ["--ports", "%d,%d" % self.ports]
        if "--control" not in self.argv:
            self.argv += ["--control", str(self.control)]
        return self.start()

    def kill(self):
        self.proc.kill()

    def url(self, broker="a", scheme="pulsar", host="127.0.0.1"):
        return "%s://%s:%d" % (scheme, host, self.ports[0 if broker == "a" else 1])

    def post(self, path, obj=None):
        st, _, b = harness.http(self.control, "POST", path, body=json.dumps(obj or {}))
        assert st == 200, "broker %s -> %d %r" % (path, st, b)
        return jbody(b)

    def config(self, **kw):
        return self.post("/config", kw)

    def state(self):
        st, _, b = harness.http(self.control, "GET", "/state")
        assert st == 200, b
        return jbody(b)

    def messages(self, topic=None):
        return [m for m in self.state()["messages"] if topic is None or m["topic"] == topic]


@unittest.skipIf(NODE is None, "node is not installed")
class PulsarCase(unittest.TestCase):
    """One sta-stubs for the class; each test starts its own broker and sagad."""

    @classmethod
    def setUpClass(cls):
        ensure_node_modules()
        cls.stubs = harness.Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.sagads = []
        self.brokers = []

    def tearDown(self):
        for b in self.brokers:
            if b.proc.alive():
                self.assertEqual(b.state()["violations"], [], "protocol violations")
        procs = [p for s in self.sagads for p in s.generations]
        self.assertEqual(harness.sanitizer_reports(procs), [], "sanitizer reports from sagad")
        for s in self.sagads:
            s.proc.kill()
        for b in self.brokers:
            b.kill()

    def run(self, result=None):
        n = len(result.failures) + len(result.errors) if result is not None else 0
        out = super().run(result)
        r = result if result is not None else out
        if r is not None and len(r.failures) + len(r.errors) > n:
            for s in getattr(self, "sagads", []):
                sys.stderr.write("\n----- sagad stderr -----\n%s\n" % s.log(60))
            for b in getattr(self, "brokers", []):
                sys.stderr.write("\n----- broker stderr -----\n%s\n" % b.proc.output("err", 30))
        return out

    def broker(self, **kw):
        b = Broker(**kw)
        self.brokers.append(b)
        return b

    def sagad(self, bus, step_timeout_ms=3000, env=None, **kw):
        s = harness.Sagad(self.stubs, step_timeout_ms=step_timeout_ms, bus=bus, env=env, **kw)
        self.sagads.append(s)
        return s

    def ready(self, s):
        return s.http("GET", "/readyz")[0] == 200

    def wait_ready(self, s, timeout=15):
        wait_until(lambda: self.ready(s), timeout, msg="sagad /readyz 200")

    def ok_saga(self, s, body=None):
        st, _, d = s.post_saga(body if body is not None else {"image_id": "img_1"})
        self.assertEqual(st, 200, d)
        return d["id"]

    def event_of(self, s, sid, comp=0):
        rows = [r for r in s.outbox(sid) if r["compensation"] == comp]
        self.assertEqual(len(rows), 1, rows)
        return rows[0]

    def async_sagas(self, s, n, body=None):
        ids = []
        for i in range(n):
            st, _, d = s.post_saga(body or {"image_id": "img_%d" % i},
                                   headers={"Prefer": "respond-async"})
            self.assertEqual(st, 202, d)
            ids.append(d["id"])
        return ids


class DeliveryTest(PulsarCase):
    def test_events_reach_the_broker(self):
        b = self.broker()
        s = self.sagad(b.url())
        self.wait_ready(s)
        raw = b'{"image_id":"img_7","data":"a\\u0000b \xc3\xa9","big":123456789012345678901234567890}'
        sids = [self.ok_saga(s, raw) for _ in range(3)]
        msgs = b.messages(TOPIC)
        self.assertEqual(len(msgs), 3, msgs)
        names = {m["producer_name"] for m in msgs}
        self.assertEqual(len(names), 1, names)
        self.assertTrue(names.pop().startswith("sagad-"))
        self.assertEqual([m["sequence_id"] for m in msgs], [0, 1, 2])
        now_ms = time.time() * 1000
        for sid, m in zip(sids, msgs):
            ev = self.event_of(s, sid)
            self.assertEqual(m["partition_key"], sid)
            # The saga's trace (design §7) rides along as a property too.
            props = dict(m["properties"])
            tp = props.pop("traceparent", "")
            self.assertRegex(tp, r"^00-%s-[0-9a-f]{16}-01$" % s.get_saga(sid)["trace_id"])
            self.assertEqual(props, {"event_id": ev["id"], "saga_id": sid,
                                     "topic": "tokenizer_event"})
            self.assertLess(abs(m["publish_time"] - now_ms), 60000)
            env = json.loads(m["payload"])
            self.assertEqual(list(env), ["id", "topic", "saga_id", "payload", "created_at"])
            self.assertEqual((env["id"], env["topic"], env["saga_id"]),
                             (ev["id"], "tokenizer_event", sid))
            # The request reaches the broker byte for byte inside the envelope.
            self.assertIn(raw.decode("utf-8"), m["payload"])
        st = b.state()
        self.assertEqual([c["client_version"] for c in st["connects"]], ["sagad"])
        self.assertEqual([(l["broker"], l["authoritative"], l["answer"]) for l in st["lookups"]],
                         [("a", False, "connect")])
        self.assertEqual(s.http("GET", "/readyz")[0], 200)

    def test_compensation_event(self):
        b = self.broker()
        s = self.sagad(b.url())
        tid = "4bf92f3577b34da6a3ce929d0e0e4736"
        st, _, d = s.post_saga({"image_id": "x", "_stub": {"ai_model": {"status": 500}}},
                               {"traceparent": "00-%s-00f067aa0ba902b7-01" % tid,
                                "tracestate": "rojo=1"})
        self.assertEqual(st, 400, d)
        sid = d["detail"]["id"]
        s.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED")
        comp = self.event_of(s, sid, comp=1)
        msgs = b.messages(COMP_TOPIC)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0]["partition_key"], sid)
        self.assertEqual(msgs[0]["properties"]["event_id"], comp["id"])
        self.assertEqual(json.loads(msgs[0]["payload"])["topic"], "tokenizer_compensation")
        # Both events carry the caller's trace as properties, a span each.
        step = b.messages(TOPIC)
        self.assertEqual(len(step), 1, step)
        spans = set()
        for m in (step[0], msgs[0]):
            tp = m["properties"].get("traceparent", "")
            self.assertRegex(tp, r"^00-%s-[0-9a-f]{16}-01$" % tid)
            self.assertNotEqual(tp.split("-")[2], "00f067aa0ba902b7")
            spans.add(tp.split("-")[2])
            self.assertEqual(m["properties"].get("tracestate"), "rojo=1")
        self.assertEqual(len(spans), 2)
        # One producer per topic, same name on both.
        prods = b.state()["producers"]
        self.assertEqual({p["topic"] for p in prods}, {TOPIC, COMP_TOPIC})
        self.assertEqual(len({p["name"] for p in prods}), 1)

    def test_redirect_lookup(self):
        b = self.broker()
        b.config(owners={TOPIC: "b"})
        s = self.sagad(b.url())
        self.ok_saga(s)
        st = b.state()
        self.assertEqual([(l["broker"], l["authoritative"], l["answer"]) for l in st["lookups"]],
                         [("a", False, "redirect:b"), ("b", True, "connect")])
        self.assertEqual([p["broker"] for p in st["producers"]], ["b"])
        self.assertEqual([m["broker"] for m in st["messages"]], ["b"])

    def test_options_name_the_topic_and_producer(self):
        b = self.broker()
        s = self.sagad(b.url() + "/?producer=sagad-test&tenant=acme&namespace=orders")
        self.ok_saga(s)
        m = b.messages()
        self.assertEqual([(x["topic"], x["producer_name"]) for x in m],
                         [("persistent://acme/orders/tokenizer_event", "sagad-test")])

    def test_sequence_ids_continue_after_restart(self):
        b = self.broker()
        s = self.sagad(b.url() + "?producer=sagad-seq")
        self.ok_saga(s)
        self.ok_saga(s)
        # What a broker with deduplication remembers for this producer.
        b.config(last_seq={TOPIC + "|sagad-seq": 41})
        s.restart()
        self.ok_saga(s)
        self.assertEqual([m["sequence_id"] for m in b.messages(TOPIC)], [0, 1, 42])
        self.assertEqual([p["last_sequence_id"] for p in b.state()["producers"]], [-1, 41])

    def test_default_producer_name_is_stable(self):
        b = self.broker()
        s = self.sagad(b.url())
        self.ok_saga(s)
        s.restart()
        self.ok_saga(s)
        prods = b.state()["producers"]
        self.assertEqual(len(prods), 2)
        self.assertEqual(prods[0]["name"], prods[1]["name"])
        self.assertEqual([m["sequence_id"] for m in b.messages(TOPIC)], [0, 1])


class FaultTest(PulsarCase):
    def test_dropped_connections_under_load(self):
        b = self.broker()
        s = self.sagad(b.url())
        self.wait_ready(s)
        b.config(drop_after_store=6)  # stored, but the receipt is lost, six times
        ids = self.async_sagas(s, 40)
        for sid in ids:
            s.wait_status(sid, "COMPLETED", timeout=60)
        st = b.state()
        stored = [m for m in st["messages"] if m["topic"] == TOPIC]
        events = [m["properties"]["event_id"] for m in stored]
        self.assertEqual(len(events), 40, "each event stored exactly once")
        self.assertEqual(len(set(events)), 40)
        self.assertEqual({m["properties"]["saga_id"] for m in stored}, set(ids))
        dups = [x for x in st["sends"] if x["outcome"] == "duplicate"]
        self.assertGreaterEqual(len(dups), 1, "retried sends dropped by deduplication")
        by_seq = {m["sequence_id"]: m["properties"]["event_id"] for m in stored}
        for d in dups:  # a retried send carries its original sequence id
            self.assertEqual(by_seq[d["sequence_id"]], d["event_id"], d)
        drops = 6 - st["config"]["drop_after_store"]
        self.assertGreaterEqual(drops, 2)
        self.assertEqual(len(st["connects"]), 1 + drops)

    def test_broker_restart(self):
        state = os.path.join(harness.tmpdir(), "broker-state.json")
        b = self.broker(state=state)
        s = self.sagad(b.url())
        self.ok_saga(s)
        b.kill()
        wait_until(lambda: s.http("GET", "/readyz")[0] == 503, 10, msg="readyz 503")
        st, _, body = s.http("GET", "/readyz")
        self.assertIn("not connected to pulsar://127.0.0.1:%d" % b.ports[0], jbody(body)["detail"])
        ids = self.async_sagas(s, 5)
        time.sleep(0.3)
        b.restart()
        for sid in ids:
            s.wait_status(sid, "COMPLETED", timeout=30)
        self.wait_ready(s)
        events = [m["properties"]["event_id"] for m in b.messages(TOPIC)]
        self.assertEqual(len(events), 6)
        self.assertEqual(len(set(events)), 6)

    def test_send_error_transient(self):
        b = self.broker()
        s = self.sagad(b.url())
        b.config(send_error={"count": 1, "code": "PersistenceError"})
        sid = self.ok_saga(s)
        sends = b.state()["sends"]
        self.assertEqual([x["outcome"] for x in sends], ["send_error", "stored"])
        self.assertEqual(sends[0]["sequence_id"], sends[1]["sequence_id"])
        self.assertEqual(sends[0]["event_id"], self.event_of(s, sid)["id"])
        self.assertEqual(len(b.state()["connects"]), 2)  # reconnected to send again

    def test_send_error_permanent(self):
        b = self.broker()
        s = self.sagad(b.url())
        b.config(send_error={"count": 1, "code": "NotAllowedError", "message": "no"})
        t0 = time.monotonic()
        st, _, d = s.post_saga({"image_id": "p"})
        self.assertEqual(st, 400, d)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertIn("Error en Step 2 (Tokenizer)", d["detail"]["error"])
        self.assertIn("NotAllowedError", d["detail"]["error"])
        self.assertEqual(b.messages(), [])

    def test_broker_error_on_producer(self):
        b = self.broker()
        s = self.sagad(b.url())
        b.config(producer_error={"count": 2, "code": "ServiceNotReady"})
        self.ok_saga(s)
        self.assertEqual(len(b.state()["producers"]), 1)
        s2 = self.sagad(b.url() + "?producer=other")
        b.config(producer_error={"count": 1, "code": "AuthorizationError", "message": "denied"})
        t0 = time.monotonic()
        st, _, d = s2.post_saga({"image_id": "q"})
        self.assertEqual(st, 400, d)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertIn("AuthorizationError", d["detail"]["error"])

    def test_lookup_error(self):
        b = self.broker()
        s = self.sagad(b.url())
        b.config(lookup_error={"count": 1, "code": "ServiceNotReady"})
        self.ok_saga(s)
        self.assertEqual([l["answer"] for l in b.state()["lookups"]], ["failed", "connect"])

    def test_duplicate_receipts(self):
        b = self.broker()
        s = self.sagad(b.url())
        b.config(dup_receipts=3)
        for _ in range(4):
            self.ok_saga(s)
        self.assertEqual(len(b.messages(TOPIC)), 4)

    def test_close_producer(self):
        b = self.broker()
        s = self.sagad(b.url())
        self.ok_saga(s)
        self.assertEqual(b.post("/close-producers")["closed"], 1)
        self.ok_saga(s)
        st = b.state()
        self.assertEqual(len(st["producers"]), 2)
        self.assertEqual(len(st["lookups"]), 2)
        self.assertEqual([m["sequence_id"] for m in st["messages"]], [0, 1])

    def test_garbage_from_broker(self):
        b = self.broker()
        s = self.sagad(b.url())
        self.ok_saga(s)
        b.post("/garbage")
        s.proc.wait_line("malformed frame from the broker", timeout=10)
        wait_until(lambda: len(b.state()["connects"]) == 2, 10, msg="reconnected")
        self.ok_saga(s)

    def test_pings(self):
        b = self.broker()
        s = self.sagad(b.url() + "?keepalive_s=1")
        self.wait_ready(s)
        wait_until(lambda: b.state()["pings"] >= 2, 10, msg="sagad's keepalive PINGs")
        b.post("/ping")
        wait_until(lambda: b.state()["pongs"] >= 1, 10, msg="PONG for the broker's PING")
        self.ok_saga(s)


class WithdrawTest(PulsarCase):
    """A publish that timed out (and was withdrawn) is never sent later."""

    def failed_publish(self, s):
        st, _, d = s.post_saga({"image_id": "late"})
        self.assertEqual(st, 400, d)
        self.assertIn("Error en Step 2 (Tokenizer)", d["detail"]["error"])
        sid = d["detail"]["id"]
        ev = self.event_of(s, sid)
        self.assertEqual(ev["status"], EVENT_WITHDRAWN)
        return ev["id"]

    def sends_of(self, b, eid):
        return [x for x in b.state()["sends"] if x["event_id"] == eid]

    def test_while_producer_not_created(self):
        b = self.broker()
        s = self.sagad(b.url() + "?connect_timeout_ms=400", step_timeout_ms=1000)
        self.wait_ready(s)
        b.config(hold_producer=True)
        eid = self.failed_publish(s)
        b.config(hold_producer=False)
        self.ok_saga(s)
        time.sleep(0.5)
        self.assertEqual(self.sends_of(b, eid), [])

    def test_while_broker_down(self):
        b = self.broker()
        s = self.sagad(b.url(), step_timeout_ms=1000)
        self.wait_ready(s)
        b.post("/stop", {"broker": "a"})
        wait_until(lambda: not self.ready(s), 10, msg="readyz 503")
        eid = self.failed_publish(s)
        b.post("/start", {"broker": "a"})
        self.wait_ready(s)
        self.ok_saga(s)
        time.sleep(0.5)
        self.assertEqual(self.sends_of(b, eid), [])

    def test_not_resent_after_reconnect(self):
        b = self.broker()
        s = self.sagad(b.url(), step_timeout_ms=1000)
        self.wait_ready(s)
        b.config(hold_receipts=True)  # stored, no receipt: the publish times out
        eid = self.failed_publish(s)
        self.assertEqual(len(self.sends_of(b, eid)), 1)  # sent once: in doubt
        b.config(hold_receipts=False)
        b.post("/drop")
        wait_until(lambda: len(b.state()["connects"]) == 2, 10, msg="reconnected")
        self.ok_saga(s)
        time.sleep(0.5)
        self.assertEqual(len(self.sends_of(b, eid)), 1, "a withdrawn publish was sent again")


class AuthTest(PulsarCase):
    def test_token(self):
        b = self.broker(token="s3cret")
        s = self.sagad(b.url() + "?token=s3cret")
        self.ok_saga(s)
        self.assertNotIn("s3cret", s.log(200))
        s2 = self.sagad(b.url(), env={"SAGAD_PULSAR_TOKEN": "s3cret"})
        self.ok_saga(s2)
        c = b.state()["connects"]
        self.assertEqual([(x["auth_method"], x["token_ok"]) for x in c], [("token", True)] * 2)

    def test_token_refused(self):
        b = self.broker(token="s3cret")
        s = self.sagad(b.url() + "?token=wrong", step_timeout_ms=1000)
        wait_until(lambda: "AuthenticationError" in s.http("GET", "/readyz")[2].decode(), 10,
                   msg="readyz names the refusal")
        self.assertEqual(s.http("GET", "/readyz")[0], 503)
        st, _, d = s.post_saga({"image_id": "t"})
        self.assertEqual(st, 400, d)
        self.assertEqual(b.messages(), [])
        self.assertNotIn("wrong", s.log(200))

    def test_readyz_follows_the_broker(self):
        port_a, port_b = harness.free_port(), harness.free_port()
        s = self.sagad("pulsar://127.0.0.1:%d" % port_a)
        self.assertEqual(s.http("GET", "/healthz")[0], 200)
        st, _, body = s.http("GET", "/readyz")
        self.assertEqual(st, 503)
        self.assertIn("not connected", jbody(body)["detail"])
        self.broker(ports=(port_a, port_b))
        self.wait_ready(s)
        self.ok_saga(s)

    def test_bad_urls(self):
        for url, msg in [("pulsar://h:99999", "port"), ("pulsar://h:6650?nope=1", "unknown option"),
                         ("pulsar://h:6650?ca=/x", "pulsar+ssl"),
                         ("pulsar://h:6650/x", "no path"),
                         ("pulsar://h?token=abc&x=1", "unknown option")]:
            rc, _, err = harness.run([harness.SAGAD, "--listen", "127.0.0.1:0", "--db",
                                      os.path.join(harness.tmpdir(), "x.db"), "--bus", url],
                                     env=harness.clean_env())
            self.assertEqual(rc, 2, err)
            self.assertIn(msg, err)
            self.assertNotIn("abc", err)


def make_certs(d):
    """A CA and a server certificate for localhost and 127.0.0.1."""
    def ossl(*a):
        subprocess.run(["openssl"] + list(a), cwd=d, check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=sagad test CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
         "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    return [os.path.join(d, n) for n in ("ca.pem", "srv.pem", "srv.key")]


@unittest.skipIf(shutil.which("openssl") is None, "openssl is not installed")
class TlsTest(PulsarCase):
    def test_tls(self):
        ca, cert, key = make_certs(harness.tmpdir())
        b = self.broker(tls=(cert, key))
        b.config(owners={TOPIC: "b"})  # the redirect goes to pulsar+ssl://127.0.0.1 (IP check)
        s = self.sagad(b.url(scheme="pulsar+ssl", host="localhost") + "?ca=" + ca)
        self.ok_saga(s)
        self.assertEqual([m["broker"] for m in b.messages(TOPIC)], ["b"])

        bad = self.sagad(b.url(scheme="pulsar+ssl", host="localhost"))  # system CAs only
        wait_until(lambda: "certificate verification failed" in
                   bad.http("GET", "/readyz")[2].decode(), 10, msg="readyz names the TLS failure")

        insecure = self.sagad(b.url(scheme="pulsar+ssl", host="localhost") + "?insecure=1")
        self.ok_saga(insecure)
        self.assertIn("insecure=1", insecure.log(100))


class PulsarFlexTest(PulsarCase):
    """pulsar-flex's own producer against the same broker."""

    def flex(self, b, topic, count=3, token=None):
        argv = [NODE, os.path.join(PULSAR_DIR, "flex_producer.js"), "--service",
                "127.0.0.1:%d" % b.ports[0], "--topic", topic, "--count", str(count)]
        if token:
            argv += ["--token", token]
        return harness.run(argv, timeout=60)

    def test_flex_producer(self):
        b = self.broker(token="tk")
        b.config(owners={"persistent://public/default/flex-b": "b"})
        for topic in ("persistent://public/default/flex", "persistent://public/default/flex-b"):
            rc, out, err = self.flex(b, topic, token="tk")
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out)["sent"], 3)
            msgs = b.messages(topic)
            self.assertEqual([json.loads(m["payload"])["n"] for m in msgs], [0, 1, 2])
            self.assertEqual([m["properties"]["n"] for m in msgs], ["0", "1", "2"])
        self.assertEqual(b.messages("persistent://public/default/flex-b")[0]["broker"], "b")


if __name__ == "__main__":
    harness.main()
