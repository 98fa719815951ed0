"""HTTP step semantics against a hand-made downstream server (design §1):
2xx + any JSON value succeeds whatever the Content-Type; redirects are not
followed; the response size cap; request method and headers; connection
reuse."""

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Sagad, Stubs, jbody  # noqa: E402

CAP = 8 << 20  # sagad's default --max-response


class Fake:
    """A downstream server whose answer for /anon and /ai is set per test."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = []  # (path, headers dict, body bytes, client port)
        self.behaviour = {}
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with fake.lock:
                    fake.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body, self.client_address[1]))
                    b = fake.behaviour.get(self.path)
                if b is None:
                    b = (200, "application/json", b'{"ok":true}')
                if callable(b):
                    return b(self)
                status, ctype, payload = b
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # peers that hang up (sagad timing out) are expected

        self.httpd = Server(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set(self, path, behaviour):
        with self.lock:
            self.behaviour[path] = behaviour

    def requests(self, path=None):
        with self.lock:
            return [s for s in self.seen if path is None or s[0] == path]

    def clear(self):
        with self.lock:
            self.seen.clear()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class DownstreamTest(harness.unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.fake = Fake()
        cls.addClassCleanup(cls.fake.stop)
        cls.stubs = Stubs("--quiet")
        cls.addClassCleanup(cls.stubs.proc.kill)
        cls.sagad = Sagad(None, step_timeout_ms=1500, bus=cls.stubs.events_url,
                          args=("--anonymizer-url", "http://127.0.0.1:%d/anon" % cls.fake.port,
                                "--ai-model-url", "http://127.0.0.1:%d/ai" % cls.fake.port))
        cls.addClassCleanup(lambda: cls.sagad.proc.kill())

    def setUp(self):
        self.fake.set("/anon", None)
        self.fake.set("/ai", None)
        self.fake.clear()

    def saga(self, body=None):
        st, _, b = self.sagad.http("POST", "/saga", body or {"x": 1})
        return st, jbody(b)

    def test_any_json_value_any_content_type(self):
        for payload, ctype, expected in ((b"42", "text/plain", 42), (b'"str"', None, "str"),
                                         (b"[1,2]", "application/octet-stream", [1, 2]),
                                         (b"null", "application/json", None),
                                         (b'  {"a":1}\r\n ', "text/html", {"a": 1}),
                                         (b"-0.5e-3", "application/json", -0.0005),
                                         (b'{"big":123456789012345678901234567890}', None,
                                          {"big": 123456789012345678901234567890})):
            self.fake.set("/anon", (200, ctype, payload))
            self.fake.set("/ai", (201, ctype, payload))
            st, d = self.saga()
            self.assertEqual(st, 200, (payload, d))
            self.assertEqual(d["data"]["anonymized"], expected, payload)
            self.assertEqual(d["data"]["ai_result"], expected, payload)
            rec = self.sagad.get_saga(d["id"])
            self.assertEqual(rec["processed_data"]["anonymized"], expected)

    def test_not_json_fails(self):
        for payload in (b"", b"not json", b"{", b'{"a":1} x', b"\xff\xfe", b"NaN"):
            self.fake.set("/anon", (200, "application/json", payload))
            st, d = self.saga()
            self.assertEqual(st, 400, (payload, d))
            self.assertTrue(d["detail"]["error"].startswith("Error en Step 1 (Anonymizer): "), d)
        self.fake.set("/anon", (204, None, b""))
        st, d = self.saga()
        self.assertEqual(st, 400, d)

    def test_redirect_not_followed(self):
        target = self.stubs.anonymizer_url
        for status in (301, 302, 303, 307, 308):
            def redirect(h, status=status):
                h.send_response(status)
                h.send_header("Location", target)
                h.send_header("Content-Type", "application/json")
                body = b'{"moved":true}'
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)
            self.fake.set("/anon", redirect)
            n = self.stubs.stats()["anonymize"]
            st, d = self.saga()
            self.assertEqual(st, 400, (status, d))
            self.assertTrue(d["detail"]["error"].startswith("Error en Step 1 (Anonymizer): "), d)
            self.assertIn(str(status), d["detail"]["error"])
            self.assertEqual(self.stubs.stats()["anonymize"], n, "redirect was followed")

    def test_response_cap(self):
        def sized(n):
            return b'{"p":"' + b"z" * (n - 8) + b'"}'
        self.assertEqual(len(sized(CAP)), CAP)
        self.fake.set("/anon", (200, "application/json", sized(CAP)))
        st, d = self.saga()
        self.assertEqual(st, 200, str(d)[:300])
        self.assertEqual(len(d["data"]["anonymized"]["p"]), CAP - 8)
        self.fake.set("/anon", (200, "application/json", sized(CAP + 1)))
        st, d = self.saga()
        self.assertEqual(st, 400, str(d)[:300])
        self.assertTrue(d["detail"]["error"].startswith("Error en Step 1 (Anonymizer): "), d)

    def test_escaped_echo_of_a_900k_request(self):
        # Design §1 "true bounds": a 900 KiB request whose anonymizer answers
        # it back escaped (about 1.3 MB) succeeds with the defaults.
        def echo(h):
            with self.fake.lock:
                raw = self.fake.seen[-1][2]  # the body Fake has read
            out = json.dumps({"echo": raw.decode("utf-8")}).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(out)))
            h.end_headers()
            h.wfile.write(out)
        self.fake.set("/anon", echo)
        body = {"l": ["v"] * 184000}  # short strings: many quotes to escape
        self.assertTrue(880 * 1024 < len(json.dumps(body)) <= 900 * 1024, len(json.dumps(body)))
        st, d = self.saga(body)
        self.assertEqual(st, 200, str(d)[:300])
        self.assertGreater(len(json.dumps(d["data"]["anonymized"])), 1200 * 1024)

    def test_chunked_answer_over_cap(self):
        def chunked(h):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                h.wfile.write(b"6\r\n{\"p\":\"\r\n")
                for _ in range(CAP // 0x10000 + 8):  # past the cap
                    h.wfile.write(b"10000\r\n" + b"q" * 0x10000 + b"\r\n")
                h.wfile.write(b"2\r\n\"}\r\n0\r\n\r\n")
            except OSError:
                pass
            h.close_connection = True
        self.fake.set("/anon", chunked)
        st, d = self.saga()
        self.assertEqual(st, 400, str(d)[:300])
        # And a small chunked answer is fine.

        def small(h):
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.write(b"3\r\n{\"a\r\n5\r\n\":7}\r\n0\r\n\r\n")
        self.fake.set("/anon", small)
        st, d = self.saga()
        self.assertEqual(st, 200, d)
        self.assertEqual(d["data"]["anonymized"], {"a": 7})

    def test_trickling_answer_times_out(self):
        def trickle(h):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "40")
            h.end_headers()
            try:
                for ch in b'{"slow":"' + b"s" * 29 + b'"}':
                    h.wfile.write(bytes([ch]))
                    h.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
            h.close_connection = True
        self.fake.set("/anon", trickle)
        t0 = time.monotonic()
        st, d = self.saga()
        self.assertEqual(st, 400, d)
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_request_method_headers_body(self):
        raw = b'{"image_id": "h1", "n": [1, 2.5, "\\u0000"]}'
        st, _, b = self.sagad.http("POST", "/saga", raw)
        self.assertEqual(st, 200, b)
        sid = jbody(b)["id"]
        for path, step in (("/anon", "anonymizer"), ("/ai", "ai_model")):
            reqs = self.fake.requests(path)
            self.assertEqual(len(reqs), 1)
            _, h, body, _ = reqs[0]
            self.assertEqual(body, raw)
            self.assertEqual(h.get("x-saga-id"), sid)
            self.assertEqual(h.get("idempotency-key"), "%s:%s" % (sid, step))
            self.assertTrue(h.get("content-type", "").startswith("application/json"), h)

    def test_connections_reused(self):
        for i in range(20):
            st, d = self.saga({"reuse": i})
            self.assertEqual(st, 200, d)
        ports = {s[3] for s in self.fake.requests()}
        self.assertLessEqual(len(ports), 4, "downstream connections not reused: %d" % len(ports))

    def test_downstream_down(self):
        # Nothing listens there: step 1 fails fast, no crash.
        port = harness.free_port()
        sg = Sagad(None, step_timeout_ms=1500, bus=self.stubs.events_url,
                   args=("--anonymizer-url", "http://127.0.0.1:%d/anon" % port,
                         "--ai-model-url", "http://127.0.0.1:%d/ai" % port))
        try:
            t0 = time.monotonic()
            st, _, b = sg.http("POST", "/saga", {"down": 1})
            self.assertEqual(st, 400, b)
            self.assertTrue(jbody(b)["detail"]["error"].startswith("Error en Step 1 (Anonymizer): "))
            self.assertLess(time.monotonic() - t0, 1.4)
        finally:
            sg.proc.kill()


if __name__ == "__main__":
    harness.main()
