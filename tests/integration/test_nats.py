#!/usr/bin/env python3
"""sagad with --bus nats:// against a real nats-server -js: every envelope in
the stream (read back through the JetStream API, content and Nats-Msg-Id
checked), /readyz following the broker, sagad starting while the broker is
down, and a broker restart under load that loses no saga and duplicates no
event. A missing nats-server fails the test; nothing is skipped."""

import base64
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import unittest

import harness

FAIL3 = {"ai_model": {"status": 500}}


def nats_server_bin():
    p = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.access(p, os.X_OK):
        raise AssertionError("nats-server not found: install it (scripts/deps.sh)")
    return p


class NatsServer:
    """nats-server -js on a free port of 127.0.0.1 with its own store; can be
    stopped and started again on the same port and store. extra: more
    arguments (TLS)."""

    def __init__(self, extra=()):
        self.port = harness.free_port()
        self.dir = harness.tmpdir("sagad-nats-")
        self.extra = list(extra)
        self.proc = None
        self.start()

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def start(self):
        self.proc = harness.Proc([nats_server_bin(), "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                  "-sd", self.dir] + self.extra, name="nats-server")
        harness.wait_until(self._accepts, 15, msg="nats-server accepting on %d" % self.port)

    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self, sig=signal.SIGKILL):
        if self.proc and self.proc.alive():
            self.proc.stop(sig)


class JetStream:
    """Just enough of the NATS protocol to read a stream back through the
    JetStream API ($JS.API.STREAM.INFO / MSG.GET). tls: an ssl.SSLContext
    for a server that requires TLS, checked for the name `host`."""

    def __init__(self, port, tls=None, host="127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.sock.makefile("rb")
        if not self.f.readline().startswith(b"INFO "):
            raise AssertionError("no INFO from nats-server")
        if tls is not None:  # NATS starts in plain text: INFO, then the handshake
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            self.f = self.sock.makefile("rb")
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                          b'"no_responders":true,"protocol":1}\r\nSUB _INBOX.sgtest.* 1\r\n')
        self.n = 0

    def close(self):
        self.sock.close()

    def request(self, subject, body):
        """(headers bytes, data bytes) of the answer."""
        self.n += 1
        reply = "_INBOX.sgtest.%d" % self.n
        data = json.dumps(body).encode() if body is not None else b""
        self.sock.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(data), data))
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError("nats-server closed the connection")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise AssertionError(line.decode())
            elif line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                parts = line.split()
                total = int(parts[-1])
                hlen = int(parts[-2]) if parts[0] == b"HMSG" else 0
                raw = self.f.read(total + 2)[:-2]
                if parts[1] == reply.encode():
                    return raw[:hlen], raw[hlen:]

    def api(self, subject, body=None):
        _, data = self.request(subject, body)
        return json.loads(data) if data else {}

    def messages(self, stream="SAGAD", headers=False):
        """[(seq, subject, Nats-Msg-Id, data bytes)] of every message kept;
        with headers, each tuple also has a dict of its headers (names
        lower-cased)."""
        info = self.api("$JS.API.STREAM.INFO." + stream)
        if "error" in info:
            raise AssertionError("stream %s: %s" % (stream, info["error"]))
        st = info["state"]
        out = []
        for seq in range(st["first_seq"], st["last_seq"] + 1):
            m = self.api("$JS.API.STREAM.MSG.GET." + stream, {"seq": seq})
            if "error" in m:
                continue
            m = m["message"]
            hdrs = base64.b64decode(m.get("hdrs", "")).decode()
            mid = None
            hd = {}
            for h in hdrs.split("\r\n")[1:]:
                if ":" in h:
                    hd[h.split(":", 1)[0].strip().lower()] = h.split(":", 1)[1].strip()
                if h.lower().startswith("nats-msg-id:"):
                    mid = h.split(":", 1)[1].strip()
            row = (m["seq"], m["subject"], mid, base64.b64decode(m.get("data", "")))
            out.append(row + (hd,) if headers else row)
        if len(out) != st["messages"]:
            raise AssertionError("stream says %d messages, read %d" % (st["messages"], len(out)))
        return out


class NatsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stubs = harness.Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.nats = NatsServer()
        self.addCleanup(self.nats.stop)
        self.sagad = None

    def tearDown(self):
        if self.sagad is not None:
            self.assertEqual(harness.sanitizer_reports(self.sagad.generations), [])
            self.sagad.stop()

    def start_sagad(self, url=None, **kw):
        self.sagad = harness.Sagad(self.stubs, bus=url or self.nats.url, **kw)
        return self.sagad

    def ready(self):
        return self.sagad.http("GET", "/readyz")[0] == 200

    def not_ready(self):
        return self.sagad.http("GET", "/readyz")[0] == 503

    def stream(self):
        js = JetStream(self.nats.port)
        try:
            return js.messages()
        finally:
            js.close()

    def check_envelope(self, subject, mid, data, saga_id=None, payload=None):
        env = json.loads(data)
        self.assertEqual(list(env), ["id", "topic", "saga_id", "payload", "created_at"])
        self.assertEqual(env["id"], mid)
        self.assertEqual(env["topic"], subject)
        harness.SagadCase.assertIso(self, env["created_at"])
        if saga_id is not None:
            self.assertEqual(env["saga_id"], saga_id)
        if payload is not None:
            # The request bytes, verbatim, inside the envelope.
            self.assertIn(b'"payload":' + payload + b',"created_at"', data)
        return env

    def test_events_in_stream(self):
        sg = self.start_sagad()
        harness.wait_until(self.ready, 15, msg="/readyz 200")
        ok, failed = {}, {}
        for i in range(12):
            body = ('{"image_id":"img_%d","data":"a\\u0000b \\u00e9","big":123456789012345678901234567890}'
                    % i).encode()
            st, _, b = sg.post_saga(body)
            self.assertEqual(st, 200, b)
            ok[b["id"]] = body
        for i in range(4):
            body = json.dumps({"image_id": "bad_%d" % i, "_stub": FAIL3}).encode()
            st, _, b = sg.post_saga(body)
            self.assertEqual(st, 400, b)
            failed[b["detail"]["id"]] = body
        for sid in failed:
            sg.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 20)
        msgs = self.stream()
        self.assertEqual(len(msgs), len(ok) + 2 * len(failed))
        seen = {}
        for _, subject, mid, data in msgs:
            env = self.check_envelope(subject, mid, data)
            seen.setdefault(env["saga_id"], []).append((subject, mid, data))
        for sid, body in list(ok.items()) + list(failed.items()):
            want = ["tokenizer_event"] + (["tokenizer_compensation"] if sid in failed else [])
            self.assertEqual([s for s, _, _ in seen[sid]], want, sid)
            outbox = {e["id"]: e for e in sg.outbox(sid)}
            for subject, mid, data in seen[sid]:
                self.check_envelope(subject, mid, data, sid, body)
                self.assertEqual(outbox[mid]["topic"], subject)
                self.assertEqual(outbox[mid]["status"], harness.EVENT_DELIVERED)

    def test_trace_context_in_headers(self):
        # Design §7: each event carries the saga's trace as a NATS message
        # header, with a span id of its own.
        sg = self.start_sagad()
        harness.wait_until(self.ready, 15, msg="/readyz 200")
        tid, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        st, _, b = sg.post_saga({"image_id": "traced", "_stub": FAIL3},
                                {"traceparent": "00-%s-%s-01" % (tid, parent),
                                 "tracestate": "rojo=1"})
        self.assertEqual(st, 400, b)
        sid = b["detail"]["id"]
        sg.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 20)
        js = JetStream(self.nats.port)
        try:
            msgs = js.messages(headers=True)
        finally:
            js.close()
        mine = [(subject, h) for _, subject, _, data, h in msgs
                if json.loads(data)["saga_id"] == sid]
        self.assertEqual([s for s, _ in mine], ["tokenizer_event", "tokenizer_compensation"])
        spans = set()
        for subject, h in mine:
            m = re.match(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$", h.get("traceparent", ""))
            self.assertIsNotNone(m, h)
            self.assertEqual(m.group(1), tid)
            self.assertNotEqual(m.group(2), parent)
            spans.add(m.group(2))
            self.assertEqual(h.get("tracestate"), "rojo=1", h)
        self.assertEqual(len(spans), 2)
        self.assertEqual(sg.get_saga(sid)["trace_id"], tid)

    def test_readyz_follows_broker(self):
        self.nats.stop()
        sg = self.start_sagad(step_timeout_ms=1000)  # starts and serves while the broker is down
        st, _, b = sg.http("GET", "/readyz")
        self.assertEqual(st, 503)
        self.assertIn(self.nats.url, harness.jbody(b)["detail"])
        # Once the first connection attempt has failed, the reason says so.
        harness.wait_until(lambda: "cannot connect to %s" % self.nats.url
                           in harness.jbody(sg.http("GET", "/readyz")[2])["detail"], 5)
        self.assertEqual(sg.http("GET", "/healthz")[0], 200)
        st, _, b = sg.post_saga({"image_id": "down"})
        self.assertEqual(st, 400, b)
        self.assertIn("Error en Step 2 (Tokenizer)", b["detail"]["error"])

        self.nats.start()
        harness.wait_until(self.ready, 15, msg="/readyz 200 once nats-server is up")
        st, _, b = sg.post_saga({"image_id": "up"})
        self.assertEqual(st, 200, b)

        self.nats.stop()
        harness.wait_until(self.not_ready, 15, msg="/readyz 503 once nats-server is gone")
        self.nats.start()
        harness.wait_until(self.ready, 15, msg="/readyz 200 again")
        msgs = self.stream()
        self.assertEqual(len(msgs), 1)
        self.check_envelope(msgs[0][1], msgs[0][2], msgs[0][3], b["id"])

    def test_restart_under_load(self):
        sg = self.start_sagad(step_timeout_ms=2000)
        harness.wait_until(self.ready, 15, msg="/readyz 200")
        ids, errors, stop = [], [], threading.Event()
        lock = threading.Lock()

        def load(k):
            c = harness.Client(sg.port)
            i = 0
            while not stop.is_set():
                i += 1
                body = {"image_id": "l%d_%d" % (k, i)}
                if i % 4 == 0:
                    body["_stub"] = FAIL3
                try:
                    st, _, b = c.request("POST", "/saga", body, {"Prefer": "respond-async"})
                except OSError as e:
                    errors.append(repr(e))
                    continue
                if st == 202:
                    with lock:
                        ids.append(json.loads(b)["id"])
                elif st != 503:
                    errors.append((st, b[:200]))
            c.close()

        threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(2)  # load runs meanwhile
            self.nats.stop(signal.SIGKILL)
            harness.wait_until(self.not_ready, 15, msg="/readyz 503 while nats-server is down")
            time.sleep(1)
            self.nats.start()  # same port, same store
            harness.wait_until(self.ready, 15, msg="/readyz 200 after the restart")
            time.sleep(2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertGreater(len(ids), 50)

        def settled(sid):
            r = sg.get_saga(sid)
            return r["overall_status"] != "IN_PROGRESS" and r["compensation_status"] != "PENDING"

        for sid in ids:  # no saga lost: each one ends, its compensation delivered
            harness.wait_until(lambda: settled(sid), 60, msg="saga %s settled" % sid)
        boxes = sg.outboxes(ids)
        msgs = self.stream()
        mids = [m[2] for m in msgs]
        self.assertEqual(len(mids), len(set(mids)), "an event is in the stream twice")
        by_id = {m[2]: m for m in msgs}
        delivered = withdrawn_sent = 0
        for sid in ids:
            for e in boxes[sid]:
                if e["target"] is not None:
                    continue
                if e["status"] == harness.EVENT_DELIVERED:
                    delivered += 1
                    self.assertIn(e["id"], by_id, "delivered event %s not in the stream" % e["id"])
                    self.check_envelope(by_id[e["id"]][1], e["id"], by_id[e["id"]][3], sid)
                elif e["id"] in by_id:
                    # Sent, then its ack lost with the broker: in doubt, as a
                    # webhook request already sent would be.
                    withdrawn_sent += 1
        outbox_ids = {e["id"] for sid in ids for e in boxes[sid]}
        self.assertEqual(set(by_id) - outbox_ids, set())
        sys_msg = "%d sagas, %d events delivered, %d in the stream, %d withdrawn but sent (in doubt)"
        print(sys_msg % (len(ids), delivered, len(msgs), withdrawn_sent))


if __name__ == "__main__":
    harness.main()
