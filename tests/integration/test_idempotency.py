"""Idempotency-Key on POST /saga (design §2)."""

import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import OK_RESULT, SagadCase, jbody  # noqa: E402


class IdempotencyTest(SagadCase):

    def key(self):
        return "k-" + uuid.uuid4().hex

    def anon_count(self):
        return self.stubs.stats()["anonymize"]

    def test_sync_repeat_same_answer(self):
        k = self.key()
        body = {"image_id": "idem-1"}
        n0 = self.anon_count()
        st1, _, b1 = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": k})
        self.assertEqual(st1, 200, b1)
        st2, _, b2 = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": k})
        self.assertEqual(st2, 200, b2)
        self.assertEqual(jbody(b2), jbody(b1))
        self.assertEqual(jbody(b1)["result"], OK_RESULT)
        time.sleep(0.2)
        self.assertEqual(self.anon_count(), n0 + 1, "a repeated key started a second saga")
        # A different key starts a new saga.
        st3, _, b3 = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": self.key()})
        self.assertEqual(st3, 200)
        self.assertNotEqual(jbody(b3)["id"], jbody(b1)["id"])
        # No key at all: a new saga every time.
        st4, _, b4 = self.sagad.http("POST", "/saga", body)
        st5, _, b5 = self.sagad.http("POST", "/saga", body)
        self.assertNotEqual(jbody(b4)["id"], jbody(b5)["id"])

    def test_sync_repeat_of_failed_saga(self):
        k = self.key()
        body = {"image_id": "idem-fail", "_stub": {"ai_model": {"status": 500}}}
        n0 = self.anon_count()
        st1, _, b1 = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": k})
        self.assertEqual(st1, 400, b1)
        st2, _, b2 = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": k})
        self.assertEqual(st2, 400, b2)
        self.assertEqual(jbody(b2), jbody(b1))
        time.sleep(0.2)
        self.assertEqual(self.anon_count(), n0 + 1)

    def test_concurrent_same_key_one_saga(self):
        k = self.key()
        # A slow anonymizer keeps the first saga in flight while the others arrive.
        body = json.dumps({"image_id": "idem-conc", "_stub": {"anonymizer": {"delay_ms": 500}}})
        n0 = self.anon_count()
        results = [None] * 10
        barrier = threading.Barrier(10)

        def go(i):
            barrier.wait()
            results[i] = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": k})

        ths = [threading.Thread(target=go, args=(i,)) for i in range(10)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(30)
        statuses = [r[0] for r in results]
        self.assertEqual(statuses, [200] * 10, [r[2][:200] for r in results])
        bodies = [jbody(r[2]) for r in results]
        self.assertEqual(len({b["id"] for b in bodies}), 1, bodies)
        for b in bodies:
            self.assertEqual(b, bodies[0])
        time.sleep(0.3)
        self.assertEqual(self.anon_count(), n0 + 1, "more than one saga for one key")
        self.assertEqual(len(self.stubs.requests(bodies[0]["id"], path="/anonymize")), 1)

    def test_concurrent_same_key_async(self):
        k = self.key()
        body = json.dumps({"image_id": "idem-conc-async"})
        n0 = self.anon_count()
        results = [None] * 10
        barrier = threading.Barrier(10)

        def go(i):
            barrier.wait()
            results[i] = self.sagad.http("POST", "/saga", body,
                                         {"Idempotency-Key": k, "Prefer": "respond-async"})

        ths = [threading.Thread(target=go, args=(i,)) for i in range(10)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(30)
        self.assertEqual([r[0] for r in results], [202] * 10, [r[2][:200] for r in results])
        ids = {jbody(r[2])["id"] for r in results}
        self.assertEqual(len(ids), 1)
        sid = ids.pop()
        for st, h, b in results:
            self.assertEqual(h.get("location"), "/saga/" + sid)
        self.sagad.wait_status(sid, "COMPLETED", 15)
        self.assertEqual(self.anon_count(), n0 + 1)

    def test_same_key_different_body_422(self):
        k = self.key()
        st, _, b = self.sagad.http("POST", "/saga", {"a": 1}, {"Idempotency-Key": k})
        self.assertEqual(st, 200, b)
        n0 = self.anon_count()
        for other in ({"a": 2}, {"a": 1, "b": 0}, {}):
            st, h, b2 = self.sagad.http("POST", "/saga", other, {"Idempotency-Key": k})
            self.assertEqual(st, 422, (other, b2))
            self.assertIn("detail", jbody(b2))
            st, h, b2 = self.sagad.http("POST", "/saga", other,
                                        {"Idempotency-Key": k, "Prefer": "respond-async"})
            self.assertEqual(st, 422, (other, b2))
        self.assertEqual(self.anon_count(), n0)
        # The original body still answers for the saga.
        st, _, b3 = self.sagad.http("POST", "/saga", {"a": 1}, {"Idempotency-Key": k})
        self.assertEqual(st, 200)
        self.assertEqual(jbody(b3), jbody(b))

    def test_different_body_while_in_flight_422(self):
        k = self.key()
        body = {"a": "slow", "_stub": {"ai_model": {"delay_ms": 1000}}}
        st, _, b = self.sagad.http("POST", "/saga", body,
                                   {"Idempotency-Key": k, "Prefer": "respond-async"})
        self.assertEqual(st, 202, b)
        sid = jbody(b)["id"]
        st, _, b2 = self.sagad.http("POST", "/saga", {"a": "other"}, {"Idempotency-Key": k})
        self.assertEqual(st, 422, b2)
        # A sync repeat with the same body waits for the final result.
        t0 = time.monotonic()
        st, _, b3 = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": k})
        self.assertEqual(st, 200, b3)
        self.assertEqual(jbody(b3)["id"], sid)
        self.assertEqual(jbody(b3)["result"], OK_RESULT)
        self.assertEqual(self.sagad.get_saga(sid)["overall_status"], "COMPLETED")

    def test_async_repeat_202_same_id(self):
        k = self.key()
        body = {"a": "async-repeat", "_stub": {"ai_model": {"delay_ms": 600}}}
        n0 = self.anon_count()
        hdr = {"Idempotency-Key": k, "Prefer": "respond-async"}
        st, h, b = self.sagad.http("POST", "/saga", body, hdr)
        self.assertEqual(st, 202, b)
        d = jbody(b)
        sid = d["id"]
        st, h2, b2 = self.sagad.http("POST", "/saga", body, hdr)
        self.assertEqual(st, 202, b2)
        self.assertEqual(jbody(b2), {"id": sid, "overall_status": "IN_PROGRESS"})
        self.assertEqual(h2.get("location"), "/saga/" + sid)
        self.sagad.wait_status(sid, "COMPLETED", 15)
        # After it finished: still 202 with the same id.
        st, h3, b3 = self.sagad.http("POST", "/saga", body, hdr)
        self.assertEqual(st, 202, b3)
        d3 = jbody(b3)
        self.assertEqual(d3["id"], sid)
        self.assertEqual(set(d3), {"id", "overall_status"})
        self.assertIn(d3["overall_status"], ("IN_PROGRESS", "COMPLETED"))
        self.assertEqual(h3.get("location"), "/saga/" + sid)
        # And a sync repeat gets the final result.
        st, _, b4 = self.sagad.http("POST", "/saga", body, {"Idempotency-Key": k})
        self.assertEqual(st, 200, b4)
        self.assertEqual(jbody(b4)["id"], sid)
        time.sleep(0.2)
        self.assertEqual(self.anon_count(), n0 + 1)


if __name__ == "__main__":
    harness.main()
