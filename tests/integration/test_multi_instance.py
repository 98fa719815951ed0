"""Several sagad on one shared store (design §7, issue 10): leases,
takeover and fencing, on a real PostgreSQL server (pgserver.py; Redis too
when SAGAD_IT_SHARED=redis).

- one Idempotency-Key posted to the three at once: one saga;
- three sagad on one database under load: every saga completes, each
  downstream HTTP call carries the lease (X-Saga-Owner: <owner>/<epoch>) of the
  process that started the saga;
- one killed with SIGKILL mid-saga: once its lease expires the others
  adopt its sagas and finish them, with a larger epoch, and no step of a
  saga ever ran in two processes at once;
- one paused past its lease (SIGSTOP, then SIGCONT): the others finish its
  sagas; once it wakes it starts no call and writes nothing, and exits
  with status 3.
"""

import os
import re
import signal
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LEASE_MS = 1000
AI_DELAY_MS = 1500
BODY = {"image_id": "img_multi", "data": "datos de prueba"}


def shared_store(name):
    """A fresh database on the test process's shared-store server."""
    kind = os.environ.get("SAGAD_IT_SHARED", "postgres")
    if kind == "redis":
        import redisserver
        return redisserver.new_url()
    return harness.pg_server().create_db("%s_%d_%s" % (name, os.getpid(), uuid.uuid4().hex[:8]))


class Node:
    """One sagad of the group and the lease it logged at start."""

    def __init__(self, stubs, db, i):
        self.i = i
        self.sagad = harness.Sagad(stubs, db=db, step_timeout_ms=5000,
                                   args=["--lease-ms", str(LEASE_MS)])
        m = self.sagad.proc.wait_line(r"store lease (\S+)/(\d+):", timeout=15)
        self.owner, self.epoch = m.group(1), int(m.group(2))

    @property
    def lease(self):
        return "%s/%d" % (self.owner, self.epoch)


def owner_of(req):
    return req.get("owner")


class MultiInstanceTest(unittest.TestCase):
    def setUp(self):
        self.stubs = harness.Stubs()
        self.addCleanup(self.stubs.proc.kill)
        self.db = shared_store("multi")
        self.nodes = []
        for i in range(3):
            n = Node(self.stubs, self.db, i)
            self.addCleanup(n.sagad.proc.kill)
            self.nodes.append(n)

    def live(self, exclude=()):
        return [n for n in self.nodes if n not in exclude and n.sagad.proc.alive()]

    def calls(self, saga_id):
        """The saga's HTTP step calls (events go through the bus, whose
        envelope ids consumers de-duplicate; they carry no lease)."""
        return [r for r in self.stubs.requests(saga_id=saga_id)
                if r["path"] in ("/anonymize", "/process")]

    def wait_completed(self, node, ids, timeout):
        for sid in ids:
            node.sagad.wait_status(sid, "COMPLETED", timeout=timeout)

    def test_leases_are_distinct_and_ordered(self):
        owners = {n.owner for n in self.nodes}
        self.assertEqual(len(owners), 3, "each process has its own owner id")
        epochs = [n.epoch for n in self.nodes]
        self.assertEqual(len(set(epochs)), 3, "each lease its own epoch: %s" % epochs)

    def test_idempotency_key_across_processes(self):
        """The same Idempotency-Key posted to all three at once: one saga,
        every answer for it; another body with that key is refused."""
        for round_ in range(5):
            key = "multi-%s-%d" % (uuid.uuid4().hex[:8], round_)
            answers, errors = [], []

            def post(node):
                try:
                    answers.append(node.sagad.post_saga(dict(BODY, k=round_),
                                                        headers={"Idempotency-Key": key}))
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

            threads = [threading.Thread(target=post, args=(n,)) for n in self.nodes]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(errors, [])
            ids = {b["id"] for st, _, b in answers if st == 200}
            self.assertEqual(len(ids), 1, answers)
            for st, _, b in answers:
                self.assertIn(st, (200, 202), b)
                self.assertEqual(b["id"], next(iter(ids)), b)
            sid = next(iter(ids))
            self.assertEqual(len([r for r in self.stubs.requests(saga_id=sid)
                                  if r["path"] == "/anonymize"]), 1)
            st, _, b = self.nodes[1].sagad.post_saga({"other": 1},
                                                     headers={"Idempotency-Key": key})
            self.assertEqual(st, 422, b)

    def test_three_processes_under_load(self):
        results, errors = [], []

        def client(node, k):
            try:
                c = harness.Client(node.sagad.port)
                for j in range(k):
                    st, _, b = c.request("POST", "/saga", dict(BODY, n=j))
                    results.append((node, st, harness.jbody(b)))
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(n, 40)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 120)
        for node, st, body in results:
            self.assertEqual(st, 200, body)
            self.assertEqual(body["result"], "Saga completada exitosamente", body)
            self.assertEqual(node.sagad.get_saga(body["id"])["overall_status"], "COMPLETED")
            owners = {owner_of(r) for r in self.calls(body["id"])}
            self.assertEqual(owners, {node.lease},
                             "saga %s started on %s: calls from %s" % (body["id"], node.lease,
                                                                        owners))
        # Every process sees every saga: one database.
        for n in self.nodes:
            st, _, b = n.sagad.http("GET", "/sagas?status=COMPLETED&limit=1000")
            self.assertEqual(st, 200)
            self.assertGreaterEqual(len(harness.jbody(b)["sagas"]), 120)

    def start_slow(self, node, k):
        """k async sagas on node whose AI model answers after AI_DELAY_MS;
        returns their ids once every one of them waits on the model."""
        self.stubs.config({"ai_model": {"delay_ms": AI_DELAY_MS}})
        ids = []
        for j in range(k):
            st, _, b = node.sagad.post_saga(dict(BODY, n=j), headers={"Prefer": "respond-async"})
            self.assertEqual(st, 202, b)
            ids.append(b["id"])
        harness.wait_until(
            lambda: all(any(r["path"] == "/process" for r in self.calls(s)) for s in ids),
            10, msg="every saga waiting on the AI model")
        return ids

    def assert_never_two_at_once(self, sid, first, t_gone_us):
        """Every call of saga sid from a lease other than first came after
        first was gone (t_gone_us), and came from one lease at a time."""
        by_owner = {}
        for r in self.calls(sid):
            by_owner.setdefault(owner_of(r), []).append(r["time_us"])
        self.assertIn(first.lease, by_owner, sid)
        for owner, times in by_owner.items():
            if owner == first.lease:
                self.assertTrue(all(t < t_gone_us for t in times),
                                "%s: a call from the old owner after it was gone" % sid)
            else:
                self.assertTrue(all(t > t_gone_us for t in times),
                                "%s: %s called while %s still ran it" % (sid, owner, first.lease))
                epoch = int(owner.rsplit("/", 1)[1])
                self.assertGreater(epoch, first.epoch, "the adopter's epoch is larger")
        # The adopters never overlapped either: at most one besides the first.
        self.assertLessEqual(len(by_owner), 2, "%s ran under %s" % (sid, sorted(by_owner)))

    def test_killed_process_sagas_finish_elsewhere(self):
        victim = self.nodes[0]
        ids = self.start_slow(victim, 12)
        victim.sagad.kill9()
        t_kill = time.time() * 1e6
        survivor = self.nodes[1]
        # Lease expiry + a takeover tick + the slow model + the last step.
        self.wait_completed(survivor, ids, timeout=LEASE_MS / 1000 * 3 + AI_DELAY_MS / 1000 + 15)
        for sid in ids:
            rec = survivor.sagad.get_saga(sid)
            self.assertEqual(rec["overall_status"], "COMPLETED", rec)
            self.assert_never_two_at_once(sid, victim, t_kill)
        adopted = "".join(n.sagad.log(200) for n in self.live())
        self.assertRegex(adopted, r"takeover: adopted \d+ saga")

    def test_paused_process_is_fenced(self):
        victim = self.nodes[0]
        ids = self.start_slow(victim, 8)
        victim.sagad.proc.send_signal(signal.SIGSTOP)
        t_stop = time.time() * 1e6
        survivor = self.nodes[1]
        self.wait_completed(survivor, ids, timeout=LEASE_MS / 1000 * 3 + AI_DELAY_MS / 1000 + 15)
        before = {sid: survivor.sagad.get_saga(sid) for sid in ids}
        n_calls = {sid: len(self.calls(sid)) for sid in ids}
        t_cont = time.time() * 1e6
        victim.sagad.proc.send_signal(signal.SIGCONT)
        rc = victim.sagad.proc.wait(timeout=15)
        self.assertEqual(rc, 3, "a fenced sagad exits with status 3:\n" + victim.sagad.log(30))
        self.assertRegex(victim.sagad.log(60), r"lease \S+ lost")
        time.sleep(0.5)
        for sid in ids:
            # Nothing new reached a service, and the store is as the adopter left it.
            late = [r for r in self.calls(sid)
                    if owner_of(r) == victim.lease and r["time_us"] >= t_cont]
            self.assertEqual(late, [], "%s: calls from the fenced process after it woke" % sid)
            self.assertEqual(len(self.calls(sid)), n_calls[sid], sid)
            self.assertEqual(survivor.sagad.get_saga(sid), before[sid], sid)
            self.assert_never_two_at_once(sid, victim, t_stop)


if __name__ == "__main__":
    harness.main()
