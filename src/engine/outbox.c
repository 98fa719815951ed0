/* Compensation delivery from the outbox: every compensation event is retried
 * with capped exponential backoff until its transport acknowledges it, and
 * only then marked DELIVERED. It keeps its id on every attempt, so a
 * consumer that saw it twice can tell. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/crash.h"
#include "sg/util.h"

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

static void on_retry(uv_timer_t *t)
{
    attempt(t->data);
}

static void retry_later(outbox_ev *ev, const char *why)
{
    sg_engine *e = ev->eng;
    uint64_t delay = (uint64_t)e->opt.retry_min_ms;
    for (int i = 1; i < ev->rec.attempts && delay < (uint64_t)e->opt.retry_max_ms; i++)
        delay *= 2;
    if (delay > (uint64_t)e->opt.retry_max_ms) delay = (uint64_t)e->opt.retry_max_ms;
    sg_log(SG_LOG_WARN,
           "saga %s: compensation %s (event %s) attempt %d failed: %s; retry in %llu ms",
           ev->rec.saga_id, ev->rec.topic, ev->rec.id, ev->rec.attempts, why,
           (unsigned long long)delay);
    if (uv_timer_start(&ev->timer, on_retry, delay, 0) != 0) abort(); /* a live handle */
}

static void on_delivered_committed(void *arg, sg_status st)
{
    outbox_ev *ev = arg;
    sg_engine *e = ev->eng;
    if (e->halted) return; /* destroy frees it; still PENDING if not committed */
    if (st != SG_OK) {
        /* Delivered but not recorded: deliver again later (same id). */
        retry_later(ev, "could not record the delivery");
        return;
    }
    sg_log(SG_LOG_INFO, "saga %s compensation %s delivered (event %s)", ev->rec.saga_id,
           ev->rec.topic, ev->rec.id);
    DL_DELETE(e->comps, ev);
    e->held_bytes -= ev->rec.payload_len;
    sg__ev_free(ev);
}

static void delivered(outbox_ev *ev)
{
    sg_write *w = sg_write_create();
    ev->rec.status = SG_EVENT_DELIVERED;
    sg_write_event_update(w, ev->rec.id, SG_EVENT_DELIVERED, ev->rec.attempts);
    if (sg_store_submit(ev->eng->store, w, on_delivered_committed, ev) != SG_OK)
        on_delivered_committed(ev, SG_ECLOSED);
}

static void on_bus_ack(void *arg, sg_status st, const char *why)
{
    sg_crash_point("compensation_ack");
    outbox_ev *ev = arg;
    ev->pub = NULL;
    if (st == SG_OK)
        delivered(ev);
    else
        retry_later(ev, why ? why : sg_status_text(st));
}

static void on_http_ack(void *arg, const sg_http_result *res)
{
    sg_crash_point("compensation_ack");
    outbox_ev *ev = arg;
    ev->call = NULL;
    if (res->outcome == SG_HTTP_DONE && res->status >= 200 && res->status <= 299) {
        delivered(ev);
        return;
    }
    char why[256];
    if (res->outcome == SG_HTTP_DONE)
        snprintf(why, sizeof why, "HTTP %ld from %s", res->status, ev->rec.target);
    else
        snprintf(why, sizeof why, "%s", res->error ? res->error : "request failed");
    retry_later(ev, why);
}

static void attempt(outbox_ev *ev)
{
    sg_engine *e = ev->eng;
    if (e->halted) return;
    ev->rec.attempts++;
    sg_crash_point("compensation_send");
    sg_status st;
    if (ev->rec.target) {
        char h_saga[64], h_idem[256];
        snprintf(h_saga, sizeof h_saga, "X-Saga-Id: %s", ev->rec.saga_id);
        snprintf(h_idem, sizeof h_idem, "Idempotency-Key: %s:%s", ev->rec.saga_id, ev->rec.topic);
        const char *headers[] = {h_saga, h_idem, NULL};
        sg_http_request req = {.url = ev->rec.target,
                               .body = ev->rec.payload,
                               .body_len = ev->rec.payload_len,
                               .headers = headers,
                               .timeout_ms = e->opt.step_timeout_ms};
        st = sg_http_post(e->http, &req, on_http_ack, ev, &ev->call);
    } else {
        st = sg_bus_publish(e->bus, &ev->rec, e->opt.step_timeout_ms, on_bus_ack, ev, &ev->pub);
    }
    if (st != SG_OK) retry_later(ev, sg_status_text(st));
}

void sg__comp_deliver(sg_engine *e, outbox_ev *ev)
{
    DL_APPEND(e->comps, ev);
    e->held_bytes += ev->rec.payload_len;
    attempt(ev);
}

void sg__comp_halt(sg_engine *e)
{
    outbox_ev *ev;
    DL_FOREACH(e->comps, ev)
    {
        if (ev->pub) sg_bus_cancel(e->bus, ev->pub);
        if (ev->call) sg_http_cancel(e->http, ev->call);
        ev->pub = NULL;
        ev->call = NULL;
        uv_timer_stop(&ev->timer);
    }
}
