"""The request JSON reaches every step and event exactly as posted (design
§1): \\u0000, any Unicode, escapes, 64-bit and bigger integers, nesting.
Downstream headers and the event envelope (§4)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EVENT_DELIVERED, SagadCase  # noqa: E402

# Hand-written bytes (not json.dumps) so that spacing, key order, escapes
# and raw UTF-8 all have to survive untouched.
TRICKY = (
    '{ "image_id" : "img_\\u0000_nul",\n'
    '  "nul_only": "\\u0000",\n'
    '  "unicode": "ñandú — 日本語 — \U0001F389 — \\ud83c\\udf89 — \\u00e9 é",\n'
    '  "escapes": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u001f",\n'
    '  "max": 9223372036854775807, "min": -9223372036854775808,\n'
    '  "big": 123456789012345678901234567890, "negbig": -123456789012345678901234567890,\n'
    '  "u64": 18446744073709551615, "float": 1.5e300, "tiny": 5e-324, "negzero": -0.0,\n'
    '  "empty": {}, "list": [ ], "t": true, "f": false, "n": null\t}'
).encode("utf-8")


def nested(levels):
    """An object nested `levels` deep, alternating objects and arrays."""
    s = "0"
    for i in range(levels - 1):
        s = ('{"l%d":%s}' % (i, s)) if i % 2 else "[%s]" % s
    return ('{"deep":%s}' % s).encode()


class ExactTest(SagadCase):

    def run_exact(self, raw):
        st, h, b = self.sagad.http("POST", "/saga", raw)
        self.assertEqual(st, 200, b[:500])
        sid = json.loads(b)["id"]
        reqs = self.stubs.requests(sid)
        by_path = {}
        for r in reqs:
            by_path.setdefault(r["path"], []).append(r)
        self.assertEqual(sorted(by_path), ["/anonymize", "/events", "/process"], reqs)
        for path, step in (("/anonymize", "anonymizer"), ("/process", "ai_model")):
            self.assertEqual(len(by_path[path]), 1, by_path[path])
            r = by_path[path][0]
            self.assertFalse(r.get("truncated"), "stub truncated the recording")
            self.assertEqual(r["body"].encode("utf-8"), raw, "%s body differs" % path)
            self.assertEqual(r["saga_id"], sid, "X-Saga-Id on %s" % path)
            self.assertEqual(r["idempotency_key"], "%s:%s" % (sid, step), "Idempotency-Key on %s" % path)
        self.assertEqual(len(by_path["/events"]), 1)
        ev = by_path["/events"][0]
        self.assertEqual(ev["saga_id"], sid, "X-Saga-Id on /events")
        env_bytes = ev["body"].encode("utf-8")
        self.assertIn(b'"payload":' + raw, env_bytes.replace(b'"payload": ', b'"payload":'),
                      "payload not spliced verbatim into the envelope")
        env = json.loads(env_bytes)
        self.assertEqual(set(env), {"id", "topic", "saga_id", "payload", "created_at"}, env.keys())
        self.assertUuid(env["id"])
        self.assertEqual(env["topic"], "tokenizer_event")
        self.assertEqual(env["saga_id"], sid)
        self.assertIso(env["created_at"])
        self.assertEqual(env["payload"], json.loads(raw))
        ob = self.sagad.outbox(sid)
        self.assertEqual(len(ob), 1, ob)
        self.assertEqual(ob[0]["id"], env["id"])
        self.assertEqual(ob[0]["status"], EVENT_DELIVERED)
        p = ob[0]["payload"]
        self.assertEqual(p if isinstance(p, bytes) else p.encode("utf-8"), raw, "outbox payload")
        rec = self.sagad.get_saga(sid)
        self.assertEqual(rec["request_data"], json.loads(raw))
        self.assertEqual(rec["overall_status"], "COMPLETED")
        return sid, rec

    def test_tricky_values(self):
        sid, rec = self.run_exact(TRICKY)
        rd = rec["request_data"]
        self.assertEqual(rd["nul_only"], "\x00")
        self.assertEqual(rd["max"], 2 ** 63 - 1)
        self.assertEqual(rd["min"], -(2 ** 63))
        self.assertEqual(rd["big"], 123456789012345678901234567890)
        self.assertEqual(rd["u64"], 2 ** 64 - 1)
        self.assertEqual(rd["unicode"], "ñandú — 日本語 — \U0001F389 — \U0001F389 — é é")
        # GET /saga renders the request verbatim too: big integers keep
        # every digit in the raw answer.
        st, _, b = self.sagad.http("GET", "/saga/" + sid)
        self.assertIn(b"123456789012345678901234567890", b)
        self.assertIn(b"-9223372036854775808", b)
        self.assertIn(b"18446744073709551615", b)

    def test_nesting_100(self):
        self.run_exact(nested(100))

    def test_nesting_500(self):
        self.run_exact(nested(500))

    def test_big_body_just_under_limit(self):
        # ~900 KiB of varied content still goes through byte for byte.
        items = ",".join('"k%d":"%s"' % (i, ("v\\u00%02x é" % (i % 256)) * 8) for i in range(8000))
        raw = ("{%s}" % items).encode()
        self.assertLess(len(raw), 1 << 20)
        self.assertGreater(len(raw), 600 * 1024)
        self.run_exact(raw)

    def test_async_exact(self):
        st, h, b = self.sagad.http("POST", "/saga", TRICKY, {"Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = json.loads(b)["id"]
        self.sagad.wait_status(sid, "COMPLETED", 15)
        for r in self.stubs.requests(sid):
            if r["path"] in ("/anonymize", "/process"):
                self.assertEqual(r["body"].encode(), TRICKY, r["path"])
            else:
                self.assertIn(b'"payload":' + TRICKY, r["body"].encode())


if __name__ == "__main__":
    harness.main()
