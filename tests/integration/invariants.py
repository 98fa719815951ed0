"""System-wide invariants of sagad after a run in which it was crashed,
killed, starved of its store or of its downstream services (design §1,
§2, §4). Shared by test_crash_points.py and test_chaos.py.

A run tags every request it posts with a unique "tag" field, so that each
request a stub received can be tied to the POST it came from even when a
header is missing. The stubs must run with --record FILE: the checks need
every request and the answer the stub gave it (the answer's status tells
whether the tokenizer acknowledged an event, i.e. acted on it).

check() returns a Report: each violation names its invariant (INVARIANTS
below), the saga and tag, and the evidence (what the record says, what the
stubs saw). Nothing here waits or sleeps except settle().
"""

import collections
import json
import time

import harness

STEP_NAMES = ("anonymizer", "tokenizer", "ai_model")
SERVICES = ("Anonymizer", "Tokenizer", "AI Model Process")
EVENT_STATUS = {0: "PENDING", 1: "DELIVERED", 2: "WITHDRAWN"}

# What a run meant each saga to do, from the `_stub` injection it posted:
# "ok" (every step answers), "fail1"/"fail2"/"fail3" (that step is refused
# for good: the service, or for step 2 the consumer, says no), "late2" (the
# consumer acknowledges the event only after the step timeout: step 2
# fails, and since the consumer acted on the event, its compensation is
# due), None (chaos decides: only the design-independent checks apply).
DESIGNS = ("ok", "fail1", "fail2", "late2", "fail3")

INVARIANTS = {
    "final": "nothing IN_PROGRESS and no compensation PENDING after settling",
    "record": "a final record is coherent: step statuses, error text, processed_data",
    "design": "the saga ends as its injection says: COMPLETED, or FAILED at the refused step",
    "acked": "a COMPLETED step was acknowledged by its service (a 2xx JSON answer / 2xx ack)",
    "never-ran": "steps after the failed one never reached their service",
    "headers": "each call carries X-Saga-Id <id> and Idempotency-Key <id>:<step>; "
               "each event envelope names its saga and carries its event id as key",
    "payload": "the request JSON reaches every step and envelope unchanged",
    "event-id": "one tokenizer_event per saga, one id on every delivery and restart",
    "compensation": "compensation COMPLETED exactly when due (step 3 failed; "
                    "never after step 1 or a completed saga), delivered at least once "
                    "(acknowledged), every delivery with the outbox row's id",
    "in-doubt-means-delivered": "a saga FAILED at step 2 whose tokenizer_event the "
                                "consumer acknowledged has its tokenizer_compensation delivered",
    "withdrawn": "a WITHDRAWN event is never delivered after it was withdrawn",
    "orphan": "no service saw a call for a saga that is not in the store",
    "answers": "every answer a client got agrees with the final record; one saga per "
               "Idempotency-Key",
    "store": "the database is intact and coherent (integrity_check, rows, outbox)",
}

# A delivery of a withdrawn event recorded this long after the step's
# finished_at is a late delivery, not one that was in flight when the step
# failed (the stub records a request once its whole body is in).
WITHDRAW_SLACK_US = 1_000_000


class Report:
    def __init__(self):
        self.violations = []  # (invariant, text)
        self.by_design = collections.defaultdict(collections.Counter)  # inv -> design -> n
        self.stats = collections.Counter()

    def add(self, inv, text, design="-"):
        assert inv in INVARIANTS, inv
        self.violations.append((inv, text))
        self.by_design[inv][design] += 1

    def failed(self):
        return sorted({inv for inv, _ in self.violations})

    def text(self, per_invariant=8):
        if not self.violations:
            return "all invariants hold"
        by = collections.defaultdict(list)
        for inv, t in self.violations:
            by[inv].append(t)
        out = ["%d violation(s) of %d invariant(s): %s"
               % (len(self.violations), len(by), ", ".join(sorted(by)))]
        for inv in sorted(by):
            designs = ", ".join("%s %d" % (d, n) for d, n in sorted(self.by_design[inv].items()))
            out.append("[%s] %s — %d violation(s) (by design: %s):"
                       % (inv, INVARIANTS[inv], len(by[inv]), designs))
            for t in by[inv][:per_invariant]:
                out.append("    " + t)
            if len(by[inv]) > per_invariant:
                out.append("    ... and %d more" % (len(by[inv]) - per_invariant))
        return "\n".join(out)


# ------------------------------------------------------------- injection

def body_for(tag, design, delays=None, step_timeout_ms=1500):
    """The request a run posts for design (see DESIGNS): tagged, with the
    `_stub` injection that makes it so. delays: optional extra per-service
    delays {"anonymizer": ms, "tokenizer_event": ms, "ai_model": ms} that
    keep sagas in flight without changing their outcome."""
    stub = {}
    for svc, ms in (delays or {}).items():
        if ms:
            stub[svc] = {"delay_ms": ms}
    if design == "fail1":
        stub["anonymizer"] = dict(stub.get("anonymizer", {}), status=500)
    elif design == "fail2":
        stub["tokenizer_event"] = dict(stub.get("tokenizer_event", {}), status=503)
    elif design == "late2":
        stub["tokenizer_event"] = {"delay_ms": step_timeout_ms + 900}
    elif design == "fail3":
        stub["ai_model"] = dict(stub.get("ai_model", {}), status=500)
    body = {"tag": tag, "image_id": "img-" + tag, "data": "datos de prueba \u00e9\u4e2d"}
    if stub:
        body["_stub"] = stub
    return body


# ---------------------------------------------------------------- settle

def settle(sagad, timeout=40.0):
    """Waits until no saga is IN_PROGRESS and no compensation is PENDING;
    returns whether that happened (the 'final' check reports what is left)."""
    def done():
        return sagad.unsettled_count() == 0
    try:
        harness.wait_until(done, timeout, 0.2, "every saga final")
        return True
    except AssertionError:
        return False


# ----------------------------------------------------------------- input

def all_sagas(sagad):
    """Every saga record through GET /sagas (paged), by id."""
    out, after = {}, None
    while True:
        q = "/sagas?limit=1000" + ("&after=" + after if after else "")
        st, _, b = sagad.http("GET", q)
        assert st == 200, "GET %s -> %d %r" % (q, st, b[:200])
        page = harness.jbody(b)
        for r in page["sagas"]:
            out[r["id"]] = r
        after = page.get("next")
        if not after:
            return out


def _tag_of(rec):
    """The tag of a recorded request (from its body, or the envelope's
    payload), the parsed envelope for /events, and the parsed body."""
    try:
        body = json.loads(rec["body"])
    except ValueError:
        return None, None, None
    if rec["path"] == "/events":
        payload = body.get("payload") if isinstance(body, dict) else None
        tag = payload.get("tag") if isinstance(payload, dict) else None
        return tag, body, payload
    return (body.get("tag") if isinstance(body, dict) else None), None, body


def _acked(rec):
    return rec["status"] is not None and 200 <= rec["status"] <= 299


def _ok_answer(rec):
    return _acked(rec) and rec["mode"] == "json"


def _fmt_req(rec, t0_us):
    st = "no answer (%s)" % rec["mode"] if rec["status"] is None else "%d %s" % (
        rec["status"], rec["mode"])
    delay = " after %d ms" % rec["delay_ms"] if rec["delay_ms"] else ""
    return "%s at +%.2fs -> %s%s" % (rec["path"], (rec["time_us"] - t0_us) / 1e6, st, delay)


def _us(iso):
    """Microseconds since the epoch of a record timestamp (…Z)."""
    if not iso:
        return None
    import datetime
    base, frac = iso[:-1].split(".") if "." in iso else (iso[:-1], "0")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 1_000_000 + int((frac + "000000")[:6])


# ----------------------------------------------------------------- check

def check(sagad, records, designs, answers=None, keys=None, strict=True):
    """Checks every invariant over the whole store.

    records: the stubs' recorded requests (Stubs.recorded()).
    designs: {tag: design} for every tag the run posted (design may be None).
    answers: {tag: [(http status | None, parsed body | error text), ...]}.
    keys:    {tag: Idempotency-Key} for the tags posted with one.
    strict:  the services failed only as the injections say (crash test):
             every saga ends exactly as designed. Otherwise (chaos broke
             services at random too) a designed failure still may not
             complete or fail at a later step, but anything may fail."""
    rep = Report()
    answers = answers or {}
    keys = keys or {}
    sagas = all_sagas(sagad)
    by_tag = collections.defaultdict(list)
    for sid, r in sagas.items():
        tag = r["request_data"].get("tag") if isinstance(r["request_data"], dict) else None
        by_tag[tag].append(sid)
    outbox = collections.defaultdict(list)
    for row in sagad.all_outbox():
        outbox[row["saga_id"]].append(row)
    reqs = collections.defaultdict(list)  # tag -> [(rec, envelope, parsed body)]
    t0 = min((r["time_us"] for r in records), default=0)
    for rec in records:
        tag, env, body = _tag_of(rec)
        reqs[tag].append((rec, env, body))
        if tag is None or tag not in by_tag:
            rep.add("orphan", "%s with saga_id %s and tag %r: no such saga in the store"
                    % (_fmt_req(rec, t0), rec["saga_id"], tag))
    for sid_seen in {rec["saga_id"] for rec in records} - set(sagas) - {None}:
        rep.add("orphan", "the stubs saw X-Saga-Id %s, which is not in the store" % sid_seen)

    for tag, ids in by_tag.items():
        if tag not in designs:
            rep.add("orphan", "saga(s) %s carry tag %r, which the run never posted" % (ids, tag))
        if len(ids) > 1 and tag in keys:
            rep.add("answers", "tag %r (Idempotency-Key %s) has %d sagas: %s"
                    % (tag, keys[tag], len(ids), ids))

    for tag, design in designs.items():
        ids = by_tag.get(tag, [])
        if not ids:
            # Never stored: then it must never have called anything, and
            # no client may have been told it exists.
            for st, b in answers.get(tag, []):
                if st in (200, 202) or (st == 400 and isinstance(b, dict)
                                        and isinstance(b.get("detail"), dict)):
                    rep.add("answers", "tag %r was answered %s %s but no saga has it"
                            % (tag, st, json.dumps(b)[:200]))
            if design in DESIGNS and not any(st is None or st >= 500
                                             for st, _ in answers.get(tag, [])):
                rep.add("answers", "tag %r (design %s) got no failed answer yet no saga has it: %r"
                        % (tag, design, answers.get(tag)))
            continue
        for sid in ids:
            _check_saga(rep, sagas[sid], tag, design, reqs.get(tag, []), outbox.get(sid, []),
                        answers.get(tag, []), t0, strict)
            rep.stats["sagas"] += 1
    _check_store(rep, sagad)
    return rep


def _check_saga(rep, r, tag, design, reqs, rows, answers, t0, strict):
    sid = r["id"]
    who = "saga %s (tag %s, design %s)" % (sid, tag, design)

    def bad(inv, text):
        rep.add(inv, text, str(design))

    steps = r["steps"]
    overall = r["overall_status"]
    comp = r["compensation_status"]
    rep.stats[overall] += 1

    # final
    if overall == "IN_PROGRESS":
        bad("final", "%s still IN_PROGRESS: steps %s" % (
            who, [(s["name"], s["status"], s["attempts"]) for s in steps]))
        return
    if comp not in ("NONE", "COMPLETED"):
        bad("final", "%s %s with compensation_status %s" % (who, overall, comp))

    # record
    failed_at = None
    names = [s["name"] for s in steps]
    if names != list(STEP_NAMES):
        bad("record", "%s steps are %s" % (who, names))
        return
    st = [s["status"] for s in steps]
    if overall == "COMPLETED":
        if st != ["COMPLETED"] * 3 or r.get("error") is not None:
            bad("record", "%s COMPLETED with steps %s, error %r" % (who, st, r.get("error")))
        if set(r["processed_data"]) != {"anonymized", "tokenizer_event", "ai_result"}:
            bad("record", "%s COMPLETED with processed_data keys %s"
                    % (who, sorted(r["processed_data"])))
    else:
        if "FAILED" in st:
            failed_at = st.index("FAILED") + 1
        want = ["COMPLETED"] * ((failed_at or 1) - 1) + ["FAILED"] + ["PENDING"] * (
            3 - (failed_at or 1))
        if failed_at is None or st != want:
            bad("record", "%s FAILED with steps %s" % (who, st))
        elif not (r.get("error") or "").startswith(
                "Error en Step %d (%s): " % (failed_at, SERVICES[failed_at - 1])):
            bad("record", "%s FAILED at step %d with error %r" % (who, failed_at,
                                                                    r.get("error")))
        for s in steps[failed_at or 3:]:
            if s["attempts"] != 0 or s["started_at"] is not None:
                bad("record", "%s step %s after the failed one has attempts %d, started %s"
                        % (who, s["name"], s["attempts"], s["started_at"]))
    for i, s in enumerate(steps):
        if s["status"] in ("COMPLETED", "FAILED") and s["attempts"] < 1:
            bad("record", "%s step %s %s with %d attempts" % (who, s["name"], s["status"],
                                                                 s["attempts"]))

    # design
    if design is not None:
        want = "COMPLETED" if design == "ok" else "FAILED at step %s" % design[-1]
        got = "COMPLETED" if overall == "COMPLETED" else "FAILED at step %s" % failed_at
        wrong = got != want
        if not strict and design in ("fail1", "fail2", "fail3"):
            wrong = overall == "COMPLETED" or (failed_at or 0) > int(design[-1])
        elif not strict:
            # "ok" may fail anywhere when chaos breaks a service; "late2"
            # may even complete: a stopped sta-stubs answers a delayed
            # request at once.
            wrong = False
        if wrong:
            bad("design", "%s should be %s, is %s: %s; the stubs saw: %s"
                    % (who, want if strict else "FAILED at step %s at the latest" % design[-1],
                       got, r.get("error"),
                       "; ".join(_fmt_req(q, t0) for q, _, _ in reqs) or "nothing"))

    # what the stubs saw, per step
    anon = [q for q, _, _ in reqs if q["path"] == "/anonymize"]
    proc = [q for q, _, _ in reqs if q["path"] == "/process"]
    events = [(q, env) for q, env, _ in reqs if q["path"] == "/events"]
    step_ev = [(q, env) for q, env in events if isinstance(env, dict)
               and env.get("topic") == "tokenizer_event"]
    comp_ev = [(q, env) for q, env in events if isinstance(env, dict)
               and env.get("topic") == "tokenizer_compensation"]
    other_ev = [(q, env) for q, env in events if (q, env) not in step_ev + comp_ev]
    for q, env in other_ev:
        bad("headers", "%s: an event that is no envelope of ours: %s %r"
                % (who, _fmt_req(q, t0), q["body"][:200]))

    # acked
    seen = {1: anon, 2: [q for q, _ in step_ev], 3: proc}
    for k in (1, 2, 3):
        if steps[k - 1]["status"] != "COMPLETED":
            continue
        ok = [q for q in seen[k] if (_acked(q) if k == 2 else _ok_answer(q))]
        if not ok:
            bad("acked", "%s step %d COMPLETED but its service never acknowledged it: %s"
                    % (who, k, "; ".join(_fmt_req(q, t0) for q in seen[k]) or "no request"))

    # never-ran
    if failed_at is not None:
        later = {1: anon, 2: [q for q, _ in step_ev], 3: proc}
        for k in range(failed_at + 1, 4):
            if later[k]:
                bad("never-ran", "%s FAILED at step %d but step %d reached its service: %s"
                        % (who, failed_at, k, "; ".join(_fmt_req(q, t0) for q in later[k])))

    # headers and payload
    request = r["request_data"]
    for q, name in [(q, "anonymizer") for q in anon] + [(q, "ai_model") for q in proc]:
        if q["saga_id"] != sid or q["idempotency_key"] != "%s:%s" % (sid, name):
            bad("headers", "%s: %s carried X-Saga-Id %r, Idempotency-Key %r"
                    % (who, _fmt_req(q, t0), q["saga_id"], q["idempotency_key"]))
        if json.loads(q["body"]) != request:
            bad("payload", "%s: %s body %r differs from the request"
                    % (who, _fmt_req(q, t0), q["body"][:200]))
    for q, env in step_ev + comp_ev:
        if env.get("saga_id") != sid or q["saga_id"] != sid or q["idempotency_key"] != env.get("id"):
            bad("headers", "%s: %s envelope saga_id %r, X-Saga-Id %r, Idempotency-Key %r, "
                    "event id %r" % (who, _fmt_req(q, t0), env.get("saga_id"), q["saga_id"],
                                     q["idempotency_key"], env.get("id")))
        if env.get("payload") != request:
            bad("payload", "%s: %s envelope payload differs from the request"
                    % (who, _fmt_req(q, t0)))

    # event-id
    step_rows = [o for o in rows if not o["compensation"]]
    comp_rows = [o for o in rows if o["compensation"]]
    step_ids = {env.get("id") for _, env in step_ev}
    if len(step_rows) > 1:
        bad("event-id", "%s has %d tokenizer_event outbox rows: %s"
                % (who, len(step_rows), [(o["id"], EVENT_STATUS.get(o["status"], o["status"]))
                                         for o in step_rows]))
    if len(step_ids) > 1 or (step_ids and step_ids != {o["id"] for o in step_rows}):
        bad("event-id", "%s: tokenizer_event deliveries carry ids %s, outbox rows %s"
                % (who, sorted(step_ids), [o["id"] for o in step_rows]))
    if steps[1]["status"] == "COMPLETED" and [o["status"] for o in step_rows] != [1]:
        bad("event-id", "%s step 2 COMPLETED but its event rows are %s"
                % (who, [EVENT_STATUS.get(o["status"], o["status"]) for o in step_rows]))

    # compensation
    acked_step_ev = [q for q, _ in step_ev if _acked(q)]
    if failed_at == 3:
        due = "step 3 failed"
    elif failed_at == 2 and acked_step_ev:
        due = "in doubt"
    elif failed_at == 2:
        due = None  # refused or never seen by the consumer: the contract allows either
    else:
        due = False
    if due == "in doubt" and comp != "COMPLETED":
        bad("in-doubt-means-delivered",
                "%s FAILED at step 2 (%s); the consumer acknowledged its tokenizer_event %s "
                "(%s) yet compensation_status is %s, %d tokenizer_compensation row(s), "
                "%d delivered to the stub; event row(s): %s"
                % (who, r.get("error"), sorted({env.get("id") for _, env in step_ev}),
                   "; ".join(_fmt_req(q, t0) for q in acked_step_ev), comp, len(comp_rows),
                   len(comp_ev), [EVENT_STATUS.get(o["status"], o["status"]) for o in step_rows]))
    elif due and comp != "COMPLETED":
        bad("compensation", "%s FAILED at step %d: compensation due, status %s"
                % (who, failed_at, comp))
    if due is False and (comp != "NONE" or comp_rows or comp_ev):
        bad("compensation", "%s %s%s: no compensation may exist, yet status %s, %d row(s), "
                "%d delivered" % (who, overall, " at step %d" % failed_at if failed_at else "",
                                  comp, len(comp_rows), len(comp_ev)))
    if comp == "COMPLETED" or due:
        if len(comp_rows) != 1 or comp_rows[0]["status"] != 1 or comp_rows[0]["topic"] != \
                "tokenizer_compensation":
            if comp == "COMPLETED":
                bad("compensation", "%s compensation COMPLETED but its outbox rows are %s"
                        % (who, [(o["topic"], EVENT_STATUS.get(o["status"], o["status"]))
                                 for o in comp_rows]))
        else:
            rep.stats["compensations"] += 1
            cid = comp_rows[0]["id"]
            ids = {env.get("id") for _, env in comp_ev}
            if ids != {cid}:
                bad("compensation", "%s compensation %s: the stub saw ids %s"
                        % (who, cid, sorted(ids)))
            if not any(_acked(q) for q, _ in comp_ev):
                bad("compensation", "%s compensation %s DELIVERED but never acknowledged "
                        "by the stub: %s" % (who, cid, "; ".join(_fmt_req(q, t0)
                                                                for q, _ in comp_ev) or "none"))
    if overall == "COMPLETED" and (comp_rows or comp_ev):
        bad("compensation", "%s COMPLETED yet has %d compensation row(s), %d delivered"
                % (who, len(comp_rows), len(comp_ev)))

    # withdrawn
    fin = _us(steps[1]["finished_at"])
    for o in step_rows:
        if o["status"] != 2:
            continue
        late = [q for q, env in step_ev if env.get("id") == o["id"]
                and (fin is None or q["time_us"] > fin + WITHDRAW_SLACK_US)]
        if late:
            bad("withdrawn", "%s event %s WITHDRAWN (step 2 finished %s) but delivered "
                    "later: %s" % (who, o["id"], steps[1]["finished_at"],
                                   "; ".join(_fmt_req(q, t0) for q in late)))

    # answers
    for st, b in answers:
        if st == 200:
            if b.get("id") != sid or overall != "COMPLETED":
                bad("answers", "%s is %s but a client was answered 200 %s"
                        % (who, overall, json.dumps(b)[:200]))
        elif st == 400 and isinstance(b, dict) and isinstance(b.get("detail"), dict):
            d = b["detail"]
            if d.get("id") != sid or overall != "FAILED" or d.get("error") != r.get("error"):
                bad("answers", "%s is %s (%r) but a client was answered 400 %s"
                        % (who, overall, r.get("error"), json.dumps(b)[:300]))
        elif st == 202:
            if b.get("id") != sid:
                bad("answers", "%s: a client was answered 202 for %s" % (who, b.get("id")))


def _check_store_redis(rep, sagad):
    """The Redis layout's coherence (docs/store.md): every saga has its
    steps and sits in its status index alone; every event's saga exists;
    no step event of a finished saga is PENDING."""
    with sagad._redis() as c:
        status = {}
        for st in (0, 1, 2):
            for m in c.command("ZRANGE", "sagad:sagas:st:%d" % st, 0, -1):
                sid = m[21:].decode()
                if sid in status:
                    rep.add("store", "saga %s is in two status indexes" % sid)
                status[sid] = st
        if len(status) != c.command("ZCARD", "sagad:sagas"):
            rep.add("store", "%d sagas in the status indexes, %d in sagad:sagas"
                    % (len(status), c.command("ZCARD", "sagad:sagas")))
        for sid, st in status.items():
            h = c.command("HGETALL", "sagad:saga:" + sid)
            h = dict(zip(h[0::2], h[1::2]))
            if int(h.get(b"status", -1)) != st:
                rep.add("store", "saga %s has status %s but is in index %d"
                        % (sid, h.get(b"status"), st))
            n = int(h.get(b"nsteps", 0))
            for i in range(n):
                if b"s%d.status" % i not in h:
                    rep.add("store", "saga %s lacks step %d of %d" % (sid, i, n))
        for row in sagad.all_outbox():
            if row["saga_id"] not in status:
                rep.add("store", "event %s belongs to no saga (%s)" % (row["id"], row["saga_id"]))
            elif row["status"] == 0 and not row["compensation"] and status[row["saga_id"]] != 0:
                rep.add("store", "event %s (%s) of finished saga %s is still PENDING"
                        % (row["id"], row["topic"], row["saga_id"]))


def _check_store(rep, sagad):
    if sagad.db.startswith("redis://"):
        return _check_store_redis(rep, sagad)
    q = sagad.db_query
    # SQLite's own check of its file; PostgreSQL has no such statement
    # (its pages are checksummed by the server): the checks below apply
    # to both.
    ic = q("PRAGMA integrity_check") if not sagad.db.startswith("postgres") else [("ok",)]
    if ic != [("ok",)]:
        rep.add("store", "integrity_check: %s" % ic[:5])
    for sid, n, have in q("SELECT s.id, s.nsteps, (SELECT count(*) FROM steps t "
                          "WHERE t.saga_id = s.id) FROM sagas s WHERE (SELECT count(*) "
                          "FROM steps t WHERE t.saga_id = s.id) <> s.nsteps"):
        rep.add("store", "saga %s has %d step rows for %d steps" % (sid, have, n))
    for eid, sid in q("SELECT id, saga_id FROM outbox o WHERE NOT EXISTS "
                      "(SELECT 1 FROM sagas s WHERE s.id = o.saga_id)"):
        rep.add("store", "outbox row %s belongs to no saga (%s)" % (eid, sid))
    for (sid,) in q("SELECT saga_id FROM steps t WHERE NOT EXISTS "
                    "(SELECT 1 FROM sagas s WHERE s.id = t.saga_id) GROUP BY saga_id"):
        rep.add("store", "step rows of saga %s, which does not exist" % sid)
    for eid, sid, topic in q("SELECT o.id, o.saga_id, o.topic FROM outbox o JOIN sagas s "
                             "ON s.id = o.saga_id WHERE o.status = 0 AND s.status <> 0"):
        rep.add("store", "event %s (%s) of finished saga %s is still PENDING" % (eid, topic, sid))
