/* Compensation delivery from the outbox (design §1): a saga's compensations
 * go out one at a time, latest step first, each retried with capped
 * backoff under its own id until acknowledged. One the transport refuses
 * for good, or still undelivered after --park-after, is parked: kept, and
 * the ones behind it wait until an operator redelivers it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/crash.h"
#include "sg/util.h"

/* One saga's compensations not yet delivered, in delivery order; only the
 * head is ever in flight. */
struct comp_queue {
    char saga_id[SG_ID_LEN + 1];
    outbox_ev *list;
    UT_hash_handle hh; /* eng->cqueues */
};

static void attempt(outbox_ev *ev);

static void on_ev_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

outbox_ev *sg__ev_create(sg_engine *e, const sg_event_rec *rec)
{
    outbox_ev *ev = sg_xcalloc(1, sizeof *ev);
    ev->eng = e;
    ev->rec = *rec; /* takes the members */
    /* Only fails for a bad loop: a programming error, not a condition. */
    if (uv_timer_init(e->loop, &ev->timer) != 0) abort();
    ev->timer.data = ev;
    return ev;
}

void sg__ev_free(outbox_ev *ev)
{
    if (!ev) return;
    sg_event_rec_free(&ev->rec);
    uv_close((uv_handle_t *)&ev->timer, on_ev_timer_closed);
}

/* ---- the per-saga queues -------------------------------------------------- */

/* Later steps are compensated first; among equals, the older first. */
static int goes_before(const outbox_ev *a, const outbox_ev *b)
{
    if (a->rec.step_index != b->rec.step_index) return a->rec.step_index > b->rec.step_index;
    return a->rec.created_us < b->rec.created_us;
}

static void enqueue(sg_engine *e, outbox_ev *ev)
{
    comp_queue *q = NULL;
    HASH_FIND_STR(e->cqueues, ev->rec.saga_id, q);
    if (!q) {
        q = sg_xcalloc(1, sizeof *q);
        memcpy(q->saga_id, ev->rec.saga_id, sizeof q->saga_id);
        HASH_ADD_STR(e->cqueues, saga_id, q);
    }
    ev->q = q;
    outbox_ev *at = q->list;
    while (at && !goes_before(ev, at))
        at = at->next;
    if (at)
        DL_PREPEND_ELEM(q->list, at, ev);
    else
        DL_APPEND(q->list, ev);
    e->held_bytes += ev->rec.payload_len;
}

/* Takes ev out of its queue and frees it; starts the next one. */
static void dequeue(outbox_ev *ev)
{
    sg_engine *e = ev->eng;
    comp_queue *q = ev->q;
    DL_DELETE(q->list, ev);
    e->held_bytes -= ev->rec.payload_len;
    sg__ev_free(ev);
    if (!q->list) {
        HASH_DEL(e->cqueues, q);
        free(q);
        return;
    }
    if (q->list->rec.status == SG_EVENT_PENDING) attempt(q->list);
}

void sg__comp_deliver(sg_engine *e, outbox_ev *ev)
{
    enqueue(e, ev);
    if (ev->q->list == ev && ev->rec.status == SG_EVENT_PENDING) attempt(ev);
}

/* ---- outcomes --------------------------------------------------------------- */

static void on_retry(uv_timer_t *t)
{
    attempt(t->data);
}

static void on_delivered_committed(void *arg, sg_status st)
{
    outbox_ev *ev = arg;
    if (ev->eng->halted) return; /* destroy frees it; still PENDING if not committed */
    if (st != SG_OK) {
        /* Delivered but not recorded: deliver again later (same id). */
        ev->rec.status = SG_EVENT_PENDING;
        if (uv_timer_start(&ev->timer, on_retry, 0, 0) != 0) abort(); /* a live handle */
        return;
    }
    sg__ev_logf(&ev->rec, SG_LOG_INFO, "compensation_delivered",
                "saga %s compensation %s delivered (event %s)", ev->rec.saga_id, ev->rec.topic,
                ev->rec.id);
    dequeue(ev);
}

static void delivered(outbox_ev *ev)
{
    sg_write *w = sg_write_create();
    ev->rec.status = SG_EVENT_DELIVERED;
    sg_write_event_update(w, ev->rec.id, SG_EVENT_DELIVERED, ev->rec.attempts, NULL, sg_now_us());
    sg_write_event_tried(w, ev->rec.id, ev->first_try_us);
    if (sg_store_submit(ev->eng->store, w, on_delivered_committed, ev) != SG_OK)
        on_delivered_committed(ev, SG_ECLOSED);
}

static void park(outbox_ev *ev, const char *why)
{
    sg__ev_logf(&ev->rec, SG_LOG_ERROR, "compensation_parked",
                "saga %s: compensation %s (event %s) parked after %d attempt(s): %s",
                ev->rec.saga_id, ev->rec.topic, ev->rec.id, ev->rec.attempts, why);
    ev->rec.status = SG_EVENT_PARKED;
    /* The store sets the saga's compensation_status PARKED with it. */
    sg_write *w = sg_write_create();
    sg_write_event_update(w, ev->rec.id, SG_EVENT_PARKED, ev->rec.attempts, why, sg_now_us());
    sg_write_event_tried(w, ev->rec.id, ev->first_try_us);
    sg_store_submit(ev->eng->store, w, NULL, NULL); /* if lost, the next start parks it again */
}

static void failed(outbox_ev *ev, sg_status st, const char *why)
{
    sg_engine *e = ev->eng;
    int64_t age_s = (sg_now_us() - ev->rec.created_us) / 1000000;
    if (st == SG_EREFUSED || age_s >= e->opt.park_after_s) {
        park(ev, st == SG_EREFUSED ? why : "still undelivered after --park-after");
        return;
    }
    uint64_t delay = (uint64_t)e->opt.retry_min_ms;
    for (int i = 1; i < ev->rec.attempts && delay < (uint64_t)e->opt.retry_max_ms; i++)
        delay *= 2;
    if (delay > (uint64_t)e->opt.retry_max_ms) delay = (uint64_t)e->opt.retry_max_ms;
    sg__ev_logf(&ev->rec, SG_LOG_WARN, "compensation_failed",
                "saga %s: compensation %s (event %s) attempt %d failed: %s; retry in %llu ms",
                ev->rec.saga_id, ev->rec.topic, ev->rec.id, ev->rec.attempts, why,
                (unsigned long long)delay);
    /* What GET /events shows; the delivery never waits for it. */
    sg_write *w = sg_write_create();
    sg_write_event_update(w, ev->rec.id, SG_EVENT_PENDING, ev->rec.attempts, why, sg_now_us());
    sg_write_event_tried(w, ev->rec.id, ev->first_try_us);
    sg_store_submit(e->store, w, NULL, NULL);
    if (uv_timer_start(&ev->timer, on_retry, delay, 0) != 0) abort(); /* a live handle */
}

static void on_bus_ack(void *arg, sg_status st, const char *why)
{
    outbox_ev *ev = arg;
    ev->pub = NULL;
    sg_crash_point("compensation_ack");
    if (st == SG_OK)
        delivered(ev);
    else
        failed(ev, st, why ? why : sg_status_text(st));
}

static void on_http_ack(void *arg, const sg_http_result *res)
{
    outbox_ev *ev = arg;
    ev->call = NULL;
    sg_crash_point("compensation_ack");
    if (res->outcome == SG_HTTP_DONE && res->status >= 200 && res->status <= 299) {
        delivered(ev);
        return;
    }
    char why[256];
    sg_status st = SG_EUNAVAIL;
    if (res->outcome == SG_HTTP_DONE) {
        snprintf(why, sizeof why, "HTTP %ld from %s", res->status, ev->rec.target);
        long c = res->status;
        if (!(c == 408 || c == 429 || c >= 500)) st = SG_EREFUSED;
    } else {
        snprintf(why, sizeof why, "%s", res->error ? res->error : "request failed");
    }
    failed(ev, st, why);
}

/* An HTTP compensation: its topic holds its step's name; its extra
 * headers are stored one per line. */
static sg_status call(outbox_ev *ev, long timeout)
{
    char h_saga[64], h_idem[256];
    snprintf(h_saga, sizeof h_saga, "X-Saga-Id: %s", ev->rec.saga_id);
    snprintf(h_idem, sizeof h_idem, "Idempotency-Key: %s:%s:compensate", ev->rec.saga_id,
             ev->rec.topic ? ev->rec.topic : "");
    const char *headers[SG__CALL_HEADERS + 1] = {h_saga, h_idem, "X-Saga-Compensation: true"};
    size_t nh = 3;
    if (ev->eng->owner_header[0]) headers[nh++] = ev->eng->owner_header;
    char *lines = ev->rec.headers ? sg_xstrdup(ev->rec.headers) : NULL;
    char *save = NULL;
    for (char *h = lines ? strtok_r(lines, "\n", &save) : NULL; h && nh < SG__CALL_HEADERS;
         h = strtok_r(NULL, "\n", &save))
        headers[nh++] = h;
    headers[nh] = NULL;
    sg_http_request req = {.url = ev->rec.target,
                           .method = ev->rec.method,
                           .body = ev->rec.payload,
                           .body_len = ev->rec.payload_len,
                           .headers = headers,
                           .timeout_ms = timeout};
    sg_status st = sg_http_post(ev->eng->http, &req, on_http_ack, ev, &ev->call);
    free(lines); /* the client copied the headers */
    return st;
}

static void attempt(outbox_ev *ev)
{
    sg_engine *e = ev->eng;
    if (e->halted) return;
    if (!sg__lease_held(e)) {
        ev->lease_waiting = 1;
        return;
    }
    ev->rec.attempts++;
    if (!ev->first_try_us) ev->first_try_us = sg_now_us();
    sg_crash_point("compensation_send");
    sg_status st;
    long timeout = ev->rec.timeout_ms > 0 ? ev->rec.timeout_ms : e->opt.step_timeout_ms;
    if (ev->rec.target)
        st = call(ev, timeout);
    else
        st = sg_bus_publish(e->bus, &ev->rec, timeout, on_bus_ack, ev, &ev->pub);
    if (st != SG_OK) failed(ev, SG_EUNAVAIL, sg_status_text(st));
}

/* ---- redelivery ------------------------------------------------------------------ */

typedef struct redelivery {
    sg_engine *e;
    sg_event_rec rec; /* the parked event as the API read it; owned */
    sg_cmd_cb cb;
    void *arg;
} redelivery;

static outbox_ev *find(sg_engine *e, const sg_event_rec *rec)
{
    comp_queue *q = NULL;
    HASH_FIND_STR(e->cqueues, rec->saga_id, q);
    outbox_ev *ev;
    for (ev = q ? q->list : NULL; ev && strcmp(ev->rec.id, rec->id) != 0; ev = ev->next)
        continue;
    return ev;
}

int sg__comp_known(sg_engine *e, const sg_event_rec *rec)
{
    return find(e, rec) != NULL;
}

static void on_requeued(void *arg, sg_status st)
{
    redelivery *r = arg;
    sg_engine *e = r->e;
    if (st == SG_OK && !e->halted) {
        outbox_ev *ev = find(e, &r->rec);
        /* Not queued here: parked before this start, by a lost write, or
         * by another sagad on a shared store (then the claim made the saga
         * ours, and its other compensations are read again below; a saga
         * queued here has them queued already, and a read now could bring
         * back one delivered meanwhile). */
        int taken_up = !ev;
        if (!ev) {
            r->rec.status = SG_EVENT_PENDING;
            ev = sg__ev_create(e, &r->rec);
            memset(&r->rec, 0, sizeof r->rec);
            enqueue(e, ev);
        }
        ev->rec.status = SG_EVENT_PENDING;
        sg__ev_logf(&ev->rec, SG_LOG_INFO, "compensation_redelivered",
                    "saga %s compensation %s (event %s) redelivered by request", ev->rec.saga_id,
                    ev->rec.topic, ev->rec.id);
        if (ev->q->list == ev && !ev->pub && !ev->call) attempt(ev);
        if (taken_up && sg_store_shared(e->store)) sg__lease_resync(e);
    }
    r->cb(r->arg, st == SG_ECONFLICT ? SG_ECONFLICT : st,
          st == SG_ECONFLICT ? "the event is not parked" : NULL);
    sg_event_rec_free(&r->rec);
    free(r);
}

void sg__comp_redeliver(sg_engine *e, sg_event_rec *rec, sg_cmd_cb cb, void *arg)
{
    redelivery *r = sg_xcalloc(1, sizeof *r);
    r->e = e;
    r->rec = *rec; /* takes the members */
    memset(rec, 0, sizeof *rec);
    r->cb = cb;
    r->arg = arg;
    sg_write *w = sg_write_create();
    sg_write_event_expect(w, r->rec.id, SG_EVENT_PARKED);
    /* A parked compensation holds up its saga's: whoever ran them, this
     * process delivers them from now on (then picks up the rest). */
    if (sg_store_shared(e->store)) sg_write_saga_claim(w, r->rec.saga_id);
    sg_write_event_update(w, r->rec.id, SG_EVENT_PENDING, r->rec.attempts, r->rec.last_error,
                          sg_now_us());
    if (sg_store_submit(e->store, w, on_requeued, r) != SG_OK) on_requeued(r, SG_ECLOSED);
}

void sg__comp_lease_resume(sg_engine *e)
{
    comp_queue *q, *qtmp;
    HASH_ITER(hh, e->cqueues, q, qtmp)
    {
        outbox_ev *ev, *etmp;
        DL_FOREACH_SAFE(q->list, ev, etmp)
        {
            if (!ev->lease_waiting) continue;
            ev->lease_waiting = 0;
            attempt(ev);
        }
    }
}

/* ---- shutdown ------------------------------------------------------------------- */

void sg__comp_halt(sg_engine *e)
{
    comp_queue *q, *qtmp;
    HASH_ITER(hh, e->cqueues, q, qtmp)
    {
        outbox_ev *ev;
        DL_FOREACH(q->list, ev)
        {
            if (ev->pub) sg_bus_cancel(e->bus, ev->pub);
            if (ev->call) sg_http_cancel(e->http, ev->call);
            ev->pub = NULL;
            ev->call = NULL;
            uv_timer_stop(&ev->timer);
        }
    }
}

void sg__comp_free_all(sg_engine *e)
{
    comp_queue *q, *qtmp;
    HASH_ITER(hh, e->cqueues, q, qtmp)
    {
        outbox_ev *ev, *etmp;
        DL_FOREACH_SAFE(q->list, ev, etmp)
        {
            DL_DELETE(q->list, ev);
            sg__ev_free(ev);
        }
        HASH_DEL(e->cqueues, q);
        free(q);
    }
}
