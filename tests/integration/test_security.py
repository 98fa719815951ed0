"""Security (design §7): bearer tokens on every route but /healthz and
/readyz (--api-token, SAGAD_API_TOKEN, --api-token-file re-read on
SIGHUP), HTTPS serving (--tls-cert/--tls-key), and certificate checks on
the way out (downstream HTTPS and pulsar+ssl, --ca-file for a private CA).

Certificates are made here with the openssl CLI; the downstream HTTPS
service is a small Python TLS server in this process; pulsar+ssl runs
against the Node.js test broker of tests/pulsar (as test_pulsar does).
Tokens must never show up in anything sagad prints."""

import http.client as httpclient
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import jbody, wait_until  # noqa: E402

OPENSSL = shutil.which("openssl")
ID = "00000000-0000-4000-8000-000000000000"

# Every route but /healthz, /readyz and the compiled-in files, known or
# not, any method.
PROTECTED = [
    ("POST", "/saga", {"image_id": "x"}),
    ("POST", "/sagas/sta", {"image_id": "x"}),
    ("GET", "/saga/" + ID, None),
    ("HEAD", "/saga/" + ID, None),
    ("POST", "/saga/%s/retry" % ID, None),
    ("GET", "/sagas", None),
    ("GET", "/sagas?status=FAILED&limit=1", None),
    ("GET", "/events", None),
    ("POST", "/events/%s/redeliver" % ID, None),
    ("GET", "/definitions", None),
    ("GET", "/metrics", None),
    ("GET", "/ui/no-such-file.js", None),
    ("POST", "/ui/", None),
    ("GET", "/docs/../sagas", None),
    ("GET", "/no/such/route", None),
    ("DELETE", "/saga", None),
    ("PUT", "/healthz/x", None),
    ("GET", "/saga/x%00y", None),
]


def make_certs(d, san="DNS:localhost,IP:127.0.0.1", prefix="srv"):
    """A CA (ca.pem) and a server certificate and key it signed; returns
    (ca, cert, key). A second call in the same directory reuses the CA."""
    def ossl(*a):
        subprocess.run([OPENSSL] + list(a), cwd=d, check=True, capture_output=True)
    if not os.path.exists(os.path.join(d, "ca.pem")):
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=sagad security test CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", prefix + ".key", "-out",
         prefix + ".csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, prefix + ".cnf"), "w") as f:
        f.write("subjectAltName=%s\n" % san)
    ossl("x509", "-req", "-in", prefix + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", prefix + ".pem", "-days", "2", "-extfile", prefix + ".cnf")
    return [os.path.join(d, n) for n in ("ca.pem", prefix + ".pem", prefix + ".key")]


def request(port, method, path, body=None, headers=None, tls=None, host="127.0.0.1"):
    """(status, {lower-case header: value}, body) on a fresh connection;
    tls: an ssl.SSLContext for HTTPS."""
    if tls is not None:
        conn = httpclient.HTTPSConnection(host, port, timeout=30, context=tls)
    else:
        conn = httpclient.HTTPConnection(host, port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def start_fails(argv, env=None):
    """Runs sagad with argv (and a fresh --db) expecting it to refuse to start."""
    d = harness.tmpdir()
    rc, out, err = harness.run([harness.SAGAD, "--listen", "127.0.0.1:0", "--db",
                                os.path.join(d, "x.db")] + argv, env=harness.clean_env(env))
    return rc, out + err


class SqliteOnly:
    """Nothing here depends on the store: run once, on the default one."""

    @classmethod
    def setUpClass(cls):
        if harness.store_mode() != "sqlite" or harness.file_mode():
            raise unittest.SkipTest("store-independent: runs in the default mode only")
        super().setUpClass()


class TokenTest(SqliteOnly, unittest.TestCase):
    """One sagad with a fixed token (SAGAD_API_TOKEN) and a token file."""

    FIXED = "fixed-Token_0123456789"
    FILE1 = ["file-token-one", "file.token.two=="]
    NEW = "rotated-token-3"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stubs = harness.Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.workdir = harness.tmpdir()
        cls.token_file = os.path.join(cls.workdir, "tokens")
        cls.write_tokens("# API tokens\n\n  %s  \r\n%s\n" % tuple(cls.FILE1))
        cls.sagad = harness.Sagad(cls.stubs, workdir=cls.workdir, definitions=False,
                                  args=["--api-token-file", cls.token_file, "--log-level", "debug"],
                                  env={"SAGAD_API_TOKEN": cls.FIXED})
        cls.addClassCleanup(lambda: cls.sagad.proc.kill())

    @classmethod
    def write_tokens(cls, text):
        harness.write_json_atomic(cls.token_file, text)  # text is written as is

    def tearDown(self):
        self.assertEqual(harness.sanitizer_reports(self.sagad.generations), [])

    def http(self, method, path, body=None, headers=None):
        return request(self.sagad.port, method, path, body, headers)

    def assert_refused(self, st, h, b, what, error):
        self.assertEqual(st, 401, what)
        self.assertTrue(h.get("www-authenticate", "").startswith("Bearer"), (what, h))
        self.assertEqual("error=" in h["www-authenticate"], error, (what, h))
        if b:  # HEAD has no body
            self.assertIsInstance(jbody(b)["detail"], str, what)
            self.assertEqual(h.get("content-type"), "application/json", what)

    def test_health_and_ready_are_open(self):
        for path in ("/healthz", "/readyz"):
            for hdr in (None, bearer("wrong"), {"Authorization": "garbage"}):
                st, _, _ = self.http("GET", path, headers=hdr)
                self.assertEqual(st, 200, (path, hdr))
            self.assertEqual(self.http("HEAD", path)[0], 200)

    def test_compiled_in_files_are_open(self):
        # The pages a browser opens before it can send a token: static
        # bytes of the binary, the same with or without one.
        for path, want in (("/openapi.json", 200), ("/docs", 200), ("/docs/", 200),
                           ("/ui/", 200), ("/ui", 308)):
            st, h, b = self.http("GET", path)
            self.assertEqual(st, want, path)
            self.assertNotIn("www-authenticate", h, path)
            st2, _, b2 = self.http("GET", path, headers=bearer("wrong"))
            self.assertEqual((st2, b2), (st, b), path)
            self.assertEqual(self.http("HEAD", path)[0], want, path)

    def test_every_route_needs_a_token(self):
        cases = [
            (None, False),
            (bearer("wrong-token"), True),
            (bearer(self.FIXED + "x"), True),  # an extension of a good one
            (bearer(self.FIXED[:-1]), True),  # a prefix
            (bearer(self.FIXED.upper()), True),  # tokens are case-sensitive
            ({"Authorization": "Basic " + self.FIXED}, True),  # another scheme
            ({"Authorization": "Bearer"}, True),  # no token
            ({"Authorization": "Bearer  "}, True),
            ({"Authorization": "Bearer %s extra" % self.FIXED}, True),
            ({"Authorization": "Bearer" + self.FIXED}, True),  # no space
            ({"Authorization": ""}, True),
        ]
        for method, path, body in PROTECTED:
            for hdr, error in cases:
                st, h, b = self.http(method, path, body, hdr)
                self.assert_refused(st, h, b, (method, path, hdr), error)
            # The right token: the route's own answer, whatever it is.
            for tok in [self.FIXED] + self.FILE1:
                st, _, b = self.http(method, path, body, bearer(tok))
                self.assertNotEqual(st, 401, (method, path, b))

    def test_two_authorization_headers(self):
        s = socket.create_connection(("127.0.0.1", self.sagad.port), timeout=10)
        s.sendall(("GET /sagas HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Authorization: Bearer %s\r\nConnection: close\r\n\r\n"
                   % (self.FIXED, self.FIXED)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 401"), data[:200])

    def test_header_variants(self):
        for value in ("bearer " + self.FIXED, "BEARER " + self.FIXED,
                      "Bearer     " + self.FIXED, "Bearer\t" + self.FIXED,
                      "Bearer %s   " % self.FIXED):
            st, _, b = self.http("GET", "/sagas", headers={"Authorization": value})
            self.assertEqual(st, 200, (value, b))
        # A huge header: refused, and sagad stays well.
        st, h, b = self.http("GET", "/sagas", headers=bearer("a" * 20000))
        self.assertEqual(st, 401)
        st = self.http("GET", "/sagas", headers=bearer("a" * 200000))[0]
        self.assertIn(st, (401, 413, 431))
        self.assertEqual(self.http("GET", "/healthz")[0], 200)

    def test_nothing_happens_without_a_token(self):
        before = len(self.stubs.requests())
        st, _, b = self.http("POST", "/saga", {"image_id": "no-token"}, bearer("nope"))
        self.assertEqual(st, 401)
        st, _, b = self.http("POST", "/saga", {"image_id": "no-token"},
                             dict(bearer("nope"), Prefer="respond-async"))
        self.assertEqual(st, 401)
        st, _, b = self.http("GET", "/sagas?limit=1000", headers=bearer(self.FIXED))
        self.assertEqual(st, 200)
        self.assertFalse([r for r in jbody(b)["sagas"]
                          if r["request_data"].get("image_id") == "no-token"])
        self.assertEqual(len(self.stubs.requests()), before)

    def test_no_body_is_read_without_a_token(self):
        # Headers announcing 100 MB, no body sent: the 401 comes at once.
        s = socket.create_connection(("127.0.0.1", self.sagad.port), timeout=10)
        s.sendall(b"POST /saga HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\nAuthorization: Bearer wrong\r\n\r\n{\"a\":")
        t0 = time.monotonic()
        data = s.recv(65536)
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 401"), data[:200])
        self.assertLess(time.monotonic() - t0, 5)

    def test_saga_with_a_token(self):
        for tok in (self.FIXED, self.FILE1[1]):
            st, _, b = self.http("POST", "/saga", {"image_id": "with-token"}, bearer(tok))
            self.assertEqual(st, 200, b)
            sid = jbody(b)["id"]
            st, _, b = self.http("GET", "/saga/" + sid, headers=bearer(tok))
            self.assertEqual(jbody(b)["overall_status"], "COMPLETED")

    def test_reload_on_sighup(self):
        def status(tok):
            return self.http("GET", "/sagas?limit=1", headers=bearer(tok))[0]

        try:
            self.write_tokens("%s\n" % self.NEW)
            mark = self.sagad.proc.count_lines()
            self.sagad.reload()
            self.sagad.proc.wait_line(r"API tokens re-read from .*: 2 in use", start=mark)
            self.assertEqual(status(self.NEW), 200)
            self.assertEqual(status(self.FILE1[0]), 401)  # gone with the old file
            self.assertEqual(status(self.FIXED), 200)  # the fixed one stays

            # A broken file, then an empty one, then none: the set in use stays.
            for text in ("%s\nnot a token\n" % self.FILE1[0], "# nothing\n", None):
                if text is None:
                    os.unlink(self.token_file)
                else:
                    self.write_tokens(text)
                mark = self.sagad.proc.count_lines()
                self.sagad.reload()
                self.sagad.proc.wait_line(r"warn API tokens not re-read .*keeping the 2 in use",
                                          start=mark)
                self.assertEqual(status(self.NEW), 200)
                self.assertEqual(status(self.FILE1[0]), 401)
            self.assertTrue(self.sagad.proc.alive())
        finally:
            self.write_tokens("# API tokens\n\n  %s  \r\n%s\n" % tuple(self.FILE1))
            mark = self.sagad.proc.count_lines()
            self.sagad.reload()
            self.sagad.proc.wait_line(r"API tokens re-read from .*: 3 in use", start=mark)

    def test_zz_tokens_never_printed(self):
        # Runs last (unittest sorts by name): everything above has been
        # logged by now, at debug level; add the odd requests once more.
        for hdr in ({"Authorization": "Bearer %s garbage" % self.FIXED},
                    {"Authorization": self.FILE1[0]}, bearer(self.NEW + "\x7f")):
            try:
                self.http("GET", "/sagas", headers=hdr)
            except (OSError, ValueError, httpclient.HTTPException):
                pass
        time.sleep(0.3)
        text = "\n".join(p.output("err", 100000) + "\n" + p.output("out", 100000)
                         for p in self.sagad.generations)
        self.assertIn("bearer tokens required", text)
        for tok in [self.FIXED, self.NEW] + self.FILE1:
            self.assertNotIn(tok, text)


class StartTest(SqliteOnly, unittest.TestCase):
    """Bad security settings stop sagad at start, exit status 2, saying why
    without quoting a token."""

    def test_bad_tokens(self):
        d = harness.tmpdir()
        missing = os.path.join(d, "missing")
        bad = os.path.join(d, "bad")
        with open(bad, "w") as f:
            f.write("good-one\nsecret value\n")
        empty = os.path.join(d, "empty")
        with open(empty, "w") as f:
            f.write("# none yet\n\n")
        big = os.path.join(d, "big")
        with open(big, "w") as f:
            f.write("x" * (300 << 10))
        for argv, env, msg in [
            (["--api-token", "secret value"], None, "--api-token: expected"),
            ([], {"SAGAD_API_TOKEN": "secret\tvalue"}, "SAGAD_API_TOKEN: expected"),
            (["--api-token", ""], None, "--api-token"),
            (["--api-token", "x" * 257], None, "--api-token"),
            (["--api-token-file", missing], None, "cannot open"),
            (["--api-token-file", d], None, "not a regular file"),
            (["--api-token-file", bad], None, "line 2: not a token"),
            (["--api-token-file", empty], None, "no token"),
            (["--api-token-file", big], None, "larger than"),
            ([], {"SAGAD_API_TOKEN_FILE": bad}, "line 2"),
        ]:
            rc, text = start_fails(argv, env)
            self.assertEqual(rc, 2, (argv, env, text))
            self.assertIn(msg, text)
            self.assertNotIn("secret", text)
            self.assertNotIn("x" * 50, text)

    def test_flag_wins_over_variable(self):
        d = harness.tmpdir()
        s = harness.Sagad(None, workdir=d, definitions=False, args=["--api-token", "from-flag"],
                          env={"SAGAD_API_TOKEN": "from-env"})
        try:
            self.assertEqual(request(s.port, "GET", "/sagas", headers=bearer("from-flag"))[0], 200)
            self.assertEqual(request(s.port, "GET", "/sagas", headers=bearer("from-env"))[0], 401)
        finally:
            s.proc.kill()

    def test_help_lists_the_flags(self):
        rc, out, _ = harness.run([harness.SAGAD, "--help"])
        self.assertEqual(rc, 0)
        for flag in ("--api-token ", "--api-token-file", "--tls-cert", "--tls-key", "--ca-file",
                     "SAGAD_API_TOKEN]", "SAGAD_API_TOKEN_FILE", "SAGAD_TLS_CERT", "SAGAD_TLS_KEY",
                     "SAGAD_CA_FILE"):
            self.assertIn(flag, out)


class HttpsSagad(harness.Sagad):
    """A sagad serving HTTPS: its health is polled over TLS."""

    def __init__(self, *a, ca=None, **kw):
        self.tls = ssl.create_default_context(cafile=ca)
        super().__init__(*a, **kw)

    def _healthy(self):
        try:
            return request(self.port, "GET", "/healthz", tls=self.tls, host="localhost")[0] == 200
        except OSError:
            return False


@unittest.skipIf(OPENSSL is None, "openssl is not installed")
class HttpsServeTest(SqliteOnly, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = harness.tmpdir()
        cls.ca, cls.cert, cls.key = make_certs(cls.dir)
        cls.stubs = harness.Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.sagad = HttpsSagad(cls.stubs, ca=cls.ca, definitions=False,
                               args=["--tls-cert", cls.cert, "--api-token", "tls-tok"],
                               env={"SAGAD_TLS_KEY": cls.key})
        cls.addClassCleanup(lambda: cls.sagad.proc.kill())

    def tearDown(self):
        self.assertEqual(harness.sanitizer_reports(self.sagad.generations), [])

    def test_python_verifies_and_runs_a_saga(self):
        tls = ssl.create_default_context(cafile=self.ca)
        st, _, b = request(self.sagad.port, "POST", "/saga", {"image_id": "tls"},
                           bearer("tls-tok"), tls=tls, host="localhost")
        self.assertEqual(st, 200, b)
        self.assertEqual(jbody(b)["result"], "Saga completada exitosamente")
        st, h, b = request(self.sagad.port, "GET", "/sagas", tls=tls, host="localhost")
        self.assertEqual(st, 401)
        self.assertTrue(h["www-authenticate"].startswith("Bearer"))
        # By IP address too: the certificate names 127.0.0.1.
        tls_ip = ssl.create_default_context(cafile=self.ca)
        self.assertEqual(request(self.sagad.port, "GET", "/readyz", tls=tls_ip)[0], 200)

    def test_chain_file(self):
        # The certificate file may hold the chain (server certificate, then its CA).
        chain = os.path.join(self.dir, "chain.pem")
        with open(chain, "w") as f, open(self.cert) as c, open(self.ca) as ca:
            f.write(c.read() + ca.read())
        s = HttpsSagad(None, ca=self.ca, definitions=False,
                       args=["--tls-cert", chain, "--tls-key", self.key])
        try:
            self.assertEqual(request(s.port, "GET", "/sagas", tls=s.tls, host="localhost")[0], 200)
        finally:
            s.proc.kill()

    def test_untrusted_and_plain_clients_fail(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            request(self.sagad.port, "GET", "/healthz", tls=ssl.create_default_context(),
                    host="localhost")
        with self.assertRaises((OSError, httpclient.HTTPException)):
            request(self.sagad.port, "GET", "/healthz")  # plain HTTP to the TLS port
        self.assertEqual(request(self.sagad.port, "GET", "/healthz",
                                 tls=self.sagad.tls, host="localhost")[0], 200)

    @unittest.skipIf(shutil.which("curl") is None, "curl is not installed")
    def test_curl_verifies(self):
        url = "https://localhost:%d/sagas" % self.sagad.port
        p = subprocess.run(["curl", "-sS", "--cacert", self.ca, "-H",
                            "Authorization: Bearer tls-tok", url], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("sagas", jbody(p.stdout))
        p = subprocess.run(["curl", "-sS", url], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 60, p.stderr)  # CURLE_PEER_FAILED_VERIFICATION

    def test_bad_files_stop_the_start(self):
        other_ca, other_cert, other_key = make_certs(harness.tmpdir())
        junk = os.path.join(self.dir, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        garbled = os.path.join(self.dir, "garbled.pem")
        with open(garbled, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        chain_bad = os.path.join(self.dir, "chain_bad.pem")  # a good one, then a broken one
        with open(chain_bad, "w") as f, open(self.cert) as good, open(garbled) as bad:
            f.write(good.read() + bad.read())
        for argv, msg in [
            (["--tls-cert", self.cert], "--tls-key is missing"),
            (["--tls-key", self.key], "--tls-cert is missing"),
            (["--tls-cert", junk, "--tls-key", self.key], "--tls-cert: %s: not PEM" % junk),
            (["--tls-cert", self.key, "--tls-key", self.key], "no certificate"),
            (["--tls-cert", self.cert, "--tls-key", self.cert], "--tls-key: %s: no usable private key"
             % self.cert),
            (["--tls-cert", self.cert, "--tls-key", os.path.join(self.dir, "none")],
             "cannot open"),
            (["--tls-cert", self.cert, "--tls-key", other_key], "is not the key of the certificate"),
            (["--tls-cert", garbled, "--tls-key", self.key], "--tls-cert: %s: no certificate" % garbled),
            (["--tls-cert", chain_bad, "--tls-key", self.key], "a broken certificate"),
            (["--tls-cert", self.dir, "--tls-key", self.key], "Is a directory"),
            (["--ca-file", junk], "--ca-file"),
            (["--ca-file", garbled], "--ca-file: %s: no certificate" % garbled),
            (["--ca-file", os.path.join(self.dir, "none")], "cannot open"),
        ]:
            rc, text = start_fails(argv)
            self.assertEqual(rc, 2, (argv, text))
            self.assertIn(msg, text)
            self.assertNotIn("PRIVATE KEY", text)


class TlsService:
    """The user's HTTPS service, standing in for the anonymizer: answers
    every POST with the stubs' anonymizer answer and counts requests."""

    def __init__(self, cert, key):
        outer = self
        self.count = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                req = json.loads(self.rfile.read(n) or b"{}")
                outer.count += 1
                body = json.dumps({"anonymized": True, "image_id": req.get("image_id"),
                                   "via": "tls"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@unittest.skipIf(OPENSSL is None, "openssl is not installed")
class DownstreamTlsTest(SqliteOnly, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = harness.tmpdir()
        # The service's certificate names localhost only: dialling it by
        # IP address must fail the host name check.
        cls.ca, cert, key = make_certs(cls.dir, san="DNS:localhost")
        cls.svc = TlsService(cert, key)
        cls.addClassCleanup(cls.svc.stop)
        cls.stubs = harness.Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)

    def setUp(self):
        self.sagads = []

    def tearDown(self):
        procs = [p for s in self.sagads for p in s.generations]
        self.assertEqual(harness.sanitizer_reports(procs), [])
        for s in self.sagads:
            s.proc.kill()

    def run_saga(self, url, args=(), env=None):
        s = harness.Sagad(self.stubs, definitions=False, args=["--anonymizer-url", url] + list(args),
                          env=env)
        self.sagads.append(s)
        st, _, d = s.post_saga({"image_id": "down-tls"})
        return s, st, d

    def test_private_ca_accepted_with_ca_file(self):
        before = self.svc.count
        url = "https://localhost:%d/anonymize" % self.svc.port
        for args, env in ((["--ca-file", self.ca], None), ([], {"SAGAD_CA_FILE": self.ca})):
            s, st, d = self.run_saga(url, args, env)
            self.assertEqual(st, 200, d)
            self.assertEqual(d["data"]["anonymized"]["via"], "tls")
        self.assertEqual(self.svc.count, before + 2)

    def test_refused_without_ca_file(self):
        before = self.svc.count
        s, st, d = self.run_saga("https://localhost:%d/anonymize" % self.svc.port)
        self.assertEqual(st, 400, d)
        err = d["detail"]["error"]
        self.assertTrue(err.startswith("Error en Step 1 (Anonymizer): "), err)
        self.assertIn("certificate", err)
        self.assertEqual(self.svc.count, before, "the request never reached the service")

    def test_host_name_checked(self):
        before = self.svc.count
        s, st, d = self.run_saga("https://127.0.0.1:%d/anonymize" % self.svc.port,
                                 ["--ca-file", self.ca])
        self.assertEqual(st, 400, d)
        self.assertIn("127.0.0.1", d["detail"]["error"])
        self.assertEqual(self.svc.count, before)


NODE = shutil.which("node")


@unittest.skipIf(OPENSSL is None or NODE is None, "openssl or node is not installed")
class PulsarTlsTest(SqliteOnly, unittest.TestCase):
    """pulsar+ssl checks the broker's certificate against --ca-file (the
    URL's ca= option, tested in test_pulsar, wins over it)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import test_pulsar
        test_pulsar.ensure_node_modules()
        cls.tp = test_pulsar
        cls.dir = harness.tmpdir()
        cls.ca, cert, key = make_certs(cls.dir)
        cls.broker = test_pulsar.Broker(tls=(cert, key))
        cls.addClassCleanup(cls.broker.kill)
        cls.stubs = harness.Stubs()
        cls.addClassCleanup(cls.stubs.proc.kill)

    def test_ca_file(self):
        url = self.broker.url(scheme="pulsar+ssl", host="localhost")
        good = harness.Sagad(self.stubs, definitions=False, bus=url, args=["--ca-file", self.ca])
        bad = harness.Sagad(self.stubs, definitions=False, bus=url)
        try:
            wait_until(lambda: good.http("GET", "/readyz")[0] == 200, 15, msg="readyz with --ca-file")
            st, _, d = good.post_saga({"image_id": "pulsar-tls"})
            self.assertEqual(st, 200, d)
            self.assertTrue([m for m in self.broker.messages(self.tp.TOPIC)])
            wait_until(lambda: "certificate verification failed" in
                       bad.http("GET", "/readyz")[2].decode(), 15,
                       msg="readyz names the TLS failure")
            self.assertEqual(harness.sanitizer_reports(good.generations + bad.generations), [])
        finally:
            good.proc.kill()
            bad.proc.kill()


if __name__ == "__main__":
    harness.main()
