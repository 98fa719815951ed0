"""GET /metrics (design §7): the Prometheus text exposition format 0.0.4,
parsed strictly, scraped while a known mix of sagas runs concurrently and
after it, and every value checked against what happened: sagas started and
finished by status, in flight back to 0, one step observation per attempt
by outcome, store histograms, HTTP answers by route template and code, and
the outbox by status as GET /events lists it."""

import json
import math
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SagadCase, jbody, wait_until  # noqa: E402

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME_RX = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RX = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
# What design §7 names, with each family's type and labels.
FAMILIES = {
    "sagad_sagas_started_total": ("counter", {"type"}),
    "sagad_sagas_finished_total": ("counter", {"type", "status"}),
    "sagad_sagas_in_flight": ("gauge", set()),
    "sagad_step_duration_seconds": ("histogram", {"type", "step", "outcome"}),
    "sagad_outbox_events": ("gauge", {"status"}),
    "sagad_store_commit_seconds": ("histogram", set()),
    "sagad_store_batch_writes": ("histogram", set()),
    "sagad_http_requests_total": ("counter", {"route", "code"}),
    "sagad_sagas_purged_total": ("counter", set()),
}


def parse_labels(s, pos, line):
    """Parses `{k="v",...}` from s[pos] == "{"; returns (dict, next pos)."""
    assert s[pos] == "{"
    pos += 1
    labels = {}
    while True:
        if s[pos] == "}":
            return labels, pos + 1
        m = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"").match(s, pos)
        if not m:
            raise AssertionError("bad label at %d: %r" % (pos, line))
        name = m.group(1)
        pos = m.end()
        val = []
        while True:
            c = s[pos]
            if c == "\\":
                nxt = s[pos + 1]
                if nxt not in ('\\', '"', "n"):
                    raise AssertionError("bad escape \\%s: %r" % (nxt, line))
                val.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise AssertionError("raw newline in a label value: %r" % line)
            else:
                val.append(c)
                pos += 1
        if name in labels:
            raise AssertionError("label %s twice: %r" % (name, line))
        labels[name] = "".join(val)
        if s[pos] == ",":
            pos += 1
        elif s[pos] != "}":
            raise AssertionError("expected , or } at %d: %r" % (pos, line))


def parse(text):
    """Strict parse of an exposition: {family: {"type", "help", "samples":
    {(name, frozenset(labels)): value}}}. Every sample belongs to a family
    declared by # TYPE before it; no family is declared twice, no series
    appears twice, the text ends with a newline."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    fams = {}
    current = None
    for line in text[:-1].split("\n"):
        assert line, "empty line in the exposition"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert len(parts) >= 3 and parts[0] == "#", line
            kind, name = parts[1], parts[2]
            assert NAME_RX.match(name), line
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": {}})
            if kind == "TYPE":
                assert fam["type"] is None, "TYPE twice for %s" % name
                assert not fam["samples"], "TYPE after samples of %s" % name
                assert len(parts) == 4 and parts[3] in TYPES, line
                fam["type"] = parts[3]
                current = name
            elif kind == "HELP":
                assert fam["help"] is None, "HELP twice for %s" % name
                fam["help"] = parts[3] if len(parts) == 4 else ""
            continue
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        assert m, line
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = parse_labels(line, pos, line)
        assert line[pos] == " ", line
        rest = line[pos + 1:].split(" ")
        assert 1 <= len(rest) <= 2, line  # value [timestamp]
        value = float(rest[0])
        assert current is not None, "sample before any TYPE: %r" % line
        fam = fams[current]
        base = current
        if fam["type"] == "histogram":
            assert name in (base + "_bucket", base + "_sum", base + "_count"), line
            if name.endswith("_bucket"):
                assert "le" in labels, line
        else:
            assert name == base, "sample %s under family %s" % (name, base)
        key = (name, frozenset(labels.items()))
        assert key not in fam["samples"], "series twice: %r" % line
        fam["samples"][key] = value
    return fams


def histograms(fam):
    """{labels without le: {"buckets": [(le, v)...], "sum", "count"}}; checks
    that buckets are cumulative, end at +Inf and that +Inf == count."""
    out = {}
    for (name, labels), v in fam["samples"].items():
        d = dict(labels)
        le = d.pop("le", None)
        key = frozenset(d.items())
        h = out.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            h["buckets"].append((float(le), v))
        elif name.endswith("_sum"):
            h["sum"] = v
        else:
            h["count"] = v
    for key, h in out.items():
        h["buckets"].sort()
        assert h["buckets"] and math.isinf(h["buckets"][-1][0]), "no +Inf bucket: %r" % key
        vals = [v for _, v in h["buckets"]]
        assert vals == sorted(vals), "buckets not cumulative: %r %r" % (key, h["buckets"])
        assert h["count"] == vals[-1], "count %r != +Inf %r" % (h["count"], vals[-1])
        assert h["sum"] is not None and h["sum"] >= 0, key
    return out


def value(fams, family, **labels):
    fam = fams.get(family)
    if not fam:
        return 0.0
    return fam["samples"].get((family, frozenset(labels.items())), 0.0)


class MetricsTest(SagadCase):
    STEP_TIMEOUT_MS = 2000
    # One retry per step, quickly, so that "retry" outcomes happen.
    SAGAD_ARGS = ("--step-retries", "1", "--retry-backoff-ms", "10")

    def setUp(self):
        self.gets = 0  # GET /saga/{id} made here, each answered 200
        self.lock = threading.Lock()

    def scrape(self):
        st, h, b = self.sagad.http("GET", "/metrics")
        self.assertEqual(st, 200, b[:300])
        self.assertEqual(h.get("content-type"), CONTENT_TYPE)
        fams = parse(b.decode("utf-8"))
        for name, (typ, labels) in FAMILIES.items():
            self.assertIn(name, fams, "family %s missing" % name)
            self.assertEqual(fams[name]["type"], typ, name)
            self.assertTrue(fams[name]["help"], "HELP of %s" % name)
            for (sname, slabels), _ in fams[name]["samples"].items():
                got = {k for k, _ in slabels} - {"le"}
                self.assertEqual(got, labels, "labels of %s" % sname)
        for name, fam in fams.items():
            if fam["type"] == "histogram":
                histograms(fam)
        self.assertGreaterEqual(value(fams, "sagad_sagas_in_flight"), 0)
        return fams

    def events_by_status(self):
        counts = {}
        for status in ("PENDING", "DELIVERED", "WITHDRAWN", "PARKED"):
            n, after = 0, None
            while True:
                path = "/events?status=%s&limit=1000" % status + ("&after=" + after if after else "")
                st, _, b = self.sagad.http("GET", path)
                self.assertEqual(st, 200, b[:300])
                d = jbody(b)
                n += len(d["events"])
                after = d["next"]
                if not after:
                    break
            counts[status] = n
        return counts

    def get(self, sid):
        rec = self.sagad.get_saga(sid)
        with self.lock:
            self.gets += 1
        return rec

    def test_metrics_under_load(self):
        before = self.scrape()
        http0 = {k: v for k, v in before["sagad_http_requests_total"]["samples"].items()}
        step0 = histograms(before["sagad_step_duration_seconds"])
        commit0 = histograms(before["sagad_store_commit_seconds"])[frozenset()]
        batch0 = histograms(before["sagad_store_batch_writes"])[frozenset()]

        mix = (
            # slow enough that scrapes see sagas in flight
            [("ok", {"image_id": "ok%d" % i, "_stub": {"anonymizer": {"delay_ms": 100}}})
             for i in range(40)]
            # 500: transient, retried once, fails for good on the second
            + [("f1", {"k": i, "_stub": {"anonymizer": {"status": 500}}}) for i in range(10)]
            # 404: permanent, one attempt
            + [("f1p", {"k": i, "_stub": {"anonymizer": {"status": 404}}}) for i in range(5)]
            # the tokenizer event refused with 500 twice
            + [("f2", {"k": i, "_stub": {"tokenizer_event": {"status": 500}}}) for i in range(8)]
            # 400 from the AI model: permanent; the compensation event goes out
            + [("f3", {"k": i, "_stub": {"ai_model": {"status": 400}}}) for i in range(8)]
            + [("async", {"image_id": "as%d" % i}) for i in range(10)]
        )
        expect_status = {"ok": 200, "f1": 400, "f1p": 400, "f2": 400, "f3": 400, "async": 202}
        bad = ([("POST", "/saga", b"{not json")] * 5 + [("POST", "/saga", b"[1,2]")] * 3
               + [("GET", "/saga/0190a7c2-0000-7000-8000-000000000000", None)] * 4
               + [("GET", "/saga/garbage%2Fid", None)]
               + [("DELETE", "/saga", None)] * 2 + [("GET", "/no/such/route", None)] * 3)

        stop = threading.Event()
        scrapes = {"n": 0, "errors": []}
        last = {"started": 0.0, "finished": 0.0, "max_in_flight": 0.0}

        def scraper():
            while not stop.is_set():
                try:
                    fams = self.scrape()
                    started = sum(v for _, v in fams["sagad_sagas_started_total"]["samples"].items())
                    finished = sum(v for _, v in fams["sagad_sagas_finished_total"]["samples"].items())
                    # Counters never go down between scrapes.
                    assert started >= last["started"] and finished >= last["finished"]
                    last["started"], last["finished"] = started, finished
                    last["max_in_flight"] = max(last["max_in_flight"],
                                                value(fams, "sagad_sagas_in_flight"))
                    scrapes["n"] += 1
                except Exception as e:  # noqa: BLE001 (reported below)
                    scrapes["errors"].append(repr(e))
                time.sleep(0.02)

        t = threading.Thread(target=scraper)
        t.start()
        ids = []

        def one(item):
            kind, body = item
            headers = {"Prefer": "respond-async"} if kind == "async" else None
            st, h, d = self.sagad.post_saga(json.dumps(body).encode(), headers)
            self.assertEqual(st, expect_status[kind], (kind, d))
            sid = d["id"] if st in (200, 202) else d["detail"]["id"]
            return kind, sid

        def bad_one(req):
            method, path, body = req
            st, _, _ = self.sagad.http(method, path, body)
            return st

        try:
            with ThreadPoolExecutor(16) as pool:
                futs = [pool.submit(one, it) for it in mix]
                bad_status = list(pool.map(bad_one, bad))
                ids = [f.result() for f in futs]
            for kind, sid in ids:
                if kind == "async":
                    self.sagad.wait_status(sid, "COMPLETED")  # its GETs: >= self.gets below
            # Every compensation delivered, nothing left in memory.
            wait_until(lambda: value(self.scrape(), "sagad_sagas_in_flight") == 0, 20,
                       msg="in_flight back to 0")
            wait_until(lambda: self.events_by_status()["PENDING"] == 0, 20,
                       msg="outbox drained")
        finally:
            stop.set()
            t.join()
        self.assertEqual(scrapes["errors"], [])
        self.assertGreater(scrapes["n"], 0, "no scrape ran during the load")
        self.assertGreater(last["max_in_flight"], 0, "no scrape saw a saga in flight")
        self.assertLessEqual(last["max_in_flight"], len(mix))
        self.assertEqual(bad_status, [400] * 5 + [422] * 3 + [404] * 5 + [405] * 2 + [404] * 3)

        for kind, sid in ids:
            rec = self.get(sid)
            self.assertEqual(rec["overall_status"], "COMPLETED" if kind in ("ok", "async")
                             else "FAILED", rec)

        after = self.scrape()
        d = lambda fam, **lb: value(after, fam, **lb) - value(before, fam, **lb)  # noqa: E731
        n_ok = sum(1 for k, _ in mix if k in ("ok", "async"))
        n_fail = len(mix) - n_ok
        self.assertEqual(d("sagad_sagas_started_total", type="sta"), len(mix))
        self.assertEqual(d("sagad_sagas_finished_total", type="sta", status="COMPLETED"), n_ok)
        self.assertEqual(d("sagad_sagas_finished_total", type="sta", status="FAILED"), n_fail)
        self.assertEqual(value(after, "sagad_sagas_in_flight"), 0)

        # One observation per attempt: step by outcome.
        n = {k: sum(1 for kk, _ in mix if kk == k) for k in expect_status}
        want = {
            ("anonymizer", "ok"): n["ok"] + n["async"] + n["f2"] + n["f3"],
            ("anonymizer", "retry"): n["f1"],
            ("anonymizer", "failed"): n["f1"] + n["f1p"],
            ("tokenizer", "ok"): n["ok"] + n["async"] + n["f3"],
            ("tokenizer", "retry"): n["f2"],
            ("tokenizer", "failed"): n["f2"],
            ("ai_model", "ok"): n["ok"] + n["async"],
            ("ai_model", "retry"): 0,
            ("ai_model", "failed"): n["f3"],
        }
        steps = histograms(after["sagad_step_duration_seconds"])
        for (step, outcome), count in want.items():
            key = frozenset({"type": "sta", "step": step, "outcome": outcome}.items())
            got = steps.get(key, {"count": 0, "sum": 0})
            was = step0.get(key, {"count": 0, "sum": 0})
            self.assertEqual(got["count"] - was["count"], count, (step, outcome))
            if count:
                self.assertGreater(got["sum"], was["sum"], (step, outcome))
        self.assertEqual(set(k for k in steps if steps[k]["count"]) - {
            frozenset({"type": "sta", "step": s, "outcome": o}.items()) for s, o in want},
            set(), "unexpected step series")

        # The store: one commit observation per transaction, each with its
        # writes; at least the insert and the final write of every saga.
        commit = histograms(after["sagad_store_commit_seconds"])[frozenset()]
        batch = histograms(after["sagad_store_batch_writes"])[frozenset()]
        self.assertEqual(commit["count"], batch["count"])
        self.assertGreater(commit["count"], commit0["count"])
        self.assertGreater(commit["sum"], commit0["sum"])
        self.assertGreaterEqual(batch["sum"] - batch0["sum"], 2 * len(mix))
        self.assertGreaterEqual(batch["sum"] - batch0["sum"], batch["count"] - batch0["count"])

        # HTTP answers by route template and code (never a raw path).
        http1 = after["sagad_http_requests_total"]["samples"]

        def dh(route, code):
            key = ("sagad_http_requests_total", frozenset({"route": route, "code": str(code)}.items()))
            return http1.get(key, 0) - http0.get(key, 0)

        self.assertEqual(dh("/saga", 200), n["ok"])
        self.assertEqual(dh("/saga", 202), n["async"])
        self.assertEqual(dh("/saga", 400), n_fail + 5)
        self.assertEqual(dh("/saga", 422), 3)
        self.assertEqual(dh("/saga", 405), 2)
        self.assertEqual(dh("/saga/{id}", 404), 5)
        self.assertEqual(dh("other", 404), 3)
        self.assertGreaterEqual(dh("/saga/{id}", 200), self.gets)
        self.assertGreaterEqual(dh("/metrics", 200), scrapes["n"])
        self.assertGreater(dh("/events", 200), 0)
        routes = {dict(k[1])["route"] for k in http1}
        allowed = {"/saga", "/saga/{id}", "/metrics", "/events", "/healthz", "other"}
        self.assertEqual(routes - allowed, set(), "raw paths in route labels")

        # The outbox by status, as GET /events lists it (quiet now).
        listed = self.events_by_status()
        final = self.scrape()
        for status, count in listed.items():
            self.assertEqual(value(final, "sagad_outbox_events", status=status), count, status)
        # f3's compensations and every completed saga's step event delivered;
        # f2's refused events withdrawn.
        self.assertGreaterEqual(listed["DELIVERED"], n["ok"] + n["async"] + 2 * n["f3"])
        self.assertGreaterEqual(listed["WITHDRAWN"], n["f2"])

    def test_exact_counts_when_quiet(self):
        """Sequential: the GET /saga/{id} and /metrics counts are exact."""
        before = self.scrape()
        st, _, d = self.sagad.post_saga(json.dumps({"image_id": "quiet"}).encode())
        self.assertEqual(st, 200, d)
        for _ in range(3):
            self.get(d["id"])
        self.sagad.http("HEAD", "/saga/" + d["id"])
        after = self.scrape()
        d2 = lambda route, code: (  # noqa: E731
            value(after, "sagad_http_requests_total", route=route, code=str(code))
            - value(before, "sagad_http_requests_total", route=route, code=str(code)))
        self.assertEqual(d2("/saga", 200), 1)
        self.assertEqual(d2("/saga/{id}", 200), 4)
        self.assertEqual(d2("/metrics", 200), 1)  # before's own; after's counts after it
        self.assertEqual(value(after, "sagad_sagas_in_flight"), 0)


if __name__ == "__main__":
    harness.main()
