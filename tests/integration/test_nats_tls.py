#!/usr/bin/env python3
"""sagad with --bus tls://host:port (NATS JetStream over TLS) against a real
nats-server that requires TLS, its certificates made here with the openssl
CLI (test_security.make_certs): sagas run with --ca-file and their events
are in the stream (read back over TLS); without the CA, or dialled by a name
the certificate does not hold, /readyz stays 503 and says why, and the
tokenizer step fails; the URL's ca= wins over --ca-file; bad TLS options
stop the start. A missing nats-server or openssl fails the test; nothing is
skipped."""

import json
import os
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_nats  # noqa: E402
import test_security  # noqa: E402
from harness import jbody, wait_until  # noqa: E402

FAIL3 = test_nats.FAIL3


class NatsTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if test_security.OPENSSL is None:
            raise AssertionError("openssl not found: install it (scripts/deps.sh)")
        cls.dir = harness.tmpdir("sagad-nats-tls-")
        # The server's certificate names localhost only: dialling it by IP
        # address must fail the name check.
        cls.ca, cls.cert, cls.key = test_security.make_certs(cls.dir, san="DNS:localhost")
        cls.other_ca = test_security.make_certs(harness.tmpdir("sagad-nats-tls-other-"))[0]
        cls.stubs = harness.Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.nats = test_nats.NatsServer(
            extra=["--tls", "--tlscert", self.cert, "--tlskey", self.key])
        self.addCleanup(self.nats.stop)
        self.sagads = []

    def tearDown(self):
        procs = [p for s in self.sagads for p in s.generations]
        self.assertEqual(harness.sanitizer_reports(procs), [])
        for s in self.sagads:
            s.stop()

    def url(self, host="localhost", query=""):
        return "tls://%s:%d%s" % (host, self.nats.port, query)

    def start_sagad(self, bus, args=(), **kw):
        s = harness.Sagad(self.stubs, bus=bus, args=list(args), **kw)
        self.sagads.append(s)
        return s

    def js(self):
        tls = ssl.create_default_context(cafile=self.ca)
        return test_nats.JetStream(self.nats.port, tls=tls, host="localhost")

    def stream(self):
        js = self.js()
        try:
            return js.messages()
        finally:
            js.close()

    def no_stream(self):
        js = self.js()
        try:
            return "error" in js.api("$JS.API.STREAM.INFO.SAGAD")
        finally:
            js.close()

    def readyz(self, sg):
        st, _, b = sg.http("GET", "/readyz")
        return st, jbody(b).get("detail", "") if st != 200 else ""

    def assert_refused(self, sg, why):
        """/readyz stays 503 with `why` in its reason; the tokenizer fails."""
        wait_until(lambda: why in self.readyz(sg)[1], 15, msg="/readyz says '%s'" % why)
        st, detail = self.readyz(sg)
        self.assertEqual(st, 503)
        self.assertIn("cannot connect to tls://", detail)
        st, _, b = sg.post_saga({"image_id": "refused"})
        self.assertEqual(st, 400, b)
        self.assertIn("Error en Step 2 (Tokenizer)", b["detail"]["error"])
        self.assertEqual(self.readyz(sg)[0], 503)

    def test_sagas_over_tls(self):
        sg = self.start_sagad(self.url(), ["--ca-file", self.ca])
        wait_until(lambda: self.readyz(sg)[0] == 200, 15, msg="/readyz 200 over TLS")
        ok, failed = {}, {}
        for i in range(8):
            body = ('{"image_id":"tls_%d","data":"a\\u0000b \\u00e9","big":123456789012345678901234567890}'
                    % i).encode()
            st, _, b = sg.post_saga(body)
            self.assertEqual(st, 200, b)
            ok[b["id"]] = body
        for i in range(3):
            body = json.dumps({"image_id": "tls_bad_%d" % i, "_stub": FAIL3}).encode()
            st, _, b = sg.post_saga(body)
            self.assertEqual(st, 400, b)
            failed[b["detail"]["id"]] = body
        for sid in failed:
            sg.wait_saga(sid, lambda r: r["compensation_status"] == "COMPLETED", 20)
        msgs = self.stream()
        self.assertEqual(len(msgs), len(ok) + 2 * len(failed))
        seen = {}
        for _, subject, mid, data in msgs:
            env = test_nats.NatsTest.check_envelope(self, subject, mid, data)
            seen.setdefault(env["saga_id"], []).append((subject, mid, data))
        for sid, body in list(ok.items()) + list(failed.items()):
            want = ["tokenizer_event"] + (["tokenizer_compensation"] if sid in failed else [])
            self.assertEqual([s for s, _, _ in seen[sid]], want, sid)
            outbox = {e["id"]: e for e in sg.outbox(sid)}
            for subject, mid, data in seen[sid]:
                test_nats.NatsTest.check_envelope(self, subject, mid, data, sid, body)
                self.assertEqual(outbox[mid]["status"], harness.EVENT_DELIVERED)
        self.assertIn("NATS: TLS to tls://localhost:%d" % self.nats.port, sg.log(200))

    def test_refused_without_ca_file(self):
        sg = self.start_sagad(self.url())
        self.assert_refused(sg, "TLS: certificate verification failed: "
                                "unable to get local issuer certificate")
        self.assertTrue(self.no_stream(), "nothing of sagad's reached JetStream")

    def test_host_name_checked(self):
        sg = self.start_sagad(self.url("127.0.0.1"), ["--ca-file", self.ca])
        self.assert_refused(sg, "certificate verification failed: IP address mismatch "
                                "(expected=127.0.0.1")
        self.assertTrue(self.no_stream())

    def test_url_ca_wins_over_ca_file(self):
        good = self.start_sagad(self.url(query="?ca=" + self.ca), ["--ca-file", self.other_ca])
        bad = self.start_sagad(self.url(query="?ca=" + self.other_ca), ["--ca-file", self.ca])
        wait_until(lambda: self.readyz(good)[0] == 200, 15, msg="/readyz 200 with ca=")
        st, _, b = good.post_saga({"image_id": "url-ca"})
        self.assertEqual(st, 200, b)
        self.assert_refused(bad, "certificate verification failed")
        self.assertEqual([json.loads(m[3])["saga_id"] for m in self.stream()], [b["id"]])

    def test_bad_tls_options_stop_the_start(self):
        junk = os.path.join(self.dir, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        missing = os.path.join(self.dir, "none.pem")
        for bus, msg in [
            ("nats://localhost:4222?ca=" + self.ca, "options ca, cert, key and insecure need tls://"),
            (self.url(query="?ca=" + missing), "cannot open %s: No such file or directory" % missing),
            (self.url(query="?ca=" + junk), "CA file %s: no certificate or crl found" % junk),
            (self.url(query="?cert=" + self.cert), "cert and key go together"),
            (self.url(query="?ca=%s&insecure=1" % self.ca), "insecure=1 turns off the certificate check"),
            (self.url(query="?insecure=yes"), "insecure: expected 0 or 1"),
        ]:
            rc, text = test_security.start_fails(["--bus", bus])
            self.assertEqual(rc, 2, (bus, text))
            self.assertIn("--bus / SAGAD_BUS: ", text)
            self.assertIn(msg, text)
            self.assertNotIn("PRIVATE KEY", text)


if __name__ == "__main__":
    harness.main()
