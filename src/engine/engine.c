/* Engine lifecycle, intake and recovery: API threads queue start requests
 * under a mutex and wake the loop with uv_async_send; only the loop touches
 * sagas. At start, unfinished sagas and pending events are resumed. */
#include <stdio.h>
#include <stdlib.h>
#include <utlist.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/crash.h"
#include "sg/util.h"

uint64_t sg__mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_intake(uv_async_t *h)
{
    sg_engine *e = h->data;
    pthread_mutex_lock(&e->lock);
    start_req *queue = e->intake;
    e->intake = NULL;
    pthread_mutex_unlock(&e->lock);
    start_req *req, *tmp;
    DL_FOREACH_SAFE(queue, req, tmp)
    {
        DL_DELETE(queue, req);
        e->nwaiting++;
        if (!e->accepting || e->halted)
            sg__answer_fail(e, req, SG_ECLOSED, "sagad is shutting down");
        else
            sg__start(e, req);
    }
}

sg_status sg_engine_create(sg_engine **out, uv_loop_t *loop, const sg_engine_options *opt,
                           sg_store *store, sg_bus *bus, sg_http_client *http, const sg_def *def)
{
    *out = NULL;
    sg_engine *e = sg_xcalloc(1, sizeof *e);
    e->loop = loop;
    e->opt.step_timeout_ms = 3000;
    e->opt.retry_min_ms = 100;
    e->opt.retry_max_ms = 30000;
    e->opt.max_inflight = 100000;
    e->opt.max_inflight_bytes = (size_t)1 << 30;
    if (opt) {
        if (opt->step_timeout_ms > 0) e->opt.step_timeout_ms = opt->step_timeout_ms;
        if (opt->retry_min_ms > 0) e->opt.retry_min_ms = opt->retry_min_ms;
        if (opt->retry_max_ms > 0) e->opt.retry_max_ms = opt->retry_max_ms;
        if (opt->max_inflight > 0) e->opt.max_inflight = opt->max_inflight;
        if (opt->max_inflight_bytes > 0) e->opt.max_inflight_bytes = opt->max_inflight_bytes;
    }
    e->store = store;
    e->bus = bus;
    e->http = http;
    e->def = def;
    e->accepting = 1;
    if (pthread_mutex_init(&e->lock, NULL) != 0) goto fail;
    if (uv_async_init(loop, &e->async, on_intake) != 0) {
        pthread_mutex_destroy(&e->lock);
        goto fail;
    }
    e->async.data = e;
    *out = e;
    return SG_OK;
fail:
    free(e);
    return SG_EIO;
}

typedef struct recovery {
    sg_engine *e;
    outbox_ev *step_events; /* PENDING events of publish steps, by saga id */
    outbox_ev *stale;       /* older step events of the same saga */
    size_t sagas, comps, orphans;
} recovery;

static void on_pending_event(void *arg, sg_event_rec *rec)
{
    sg_crash_point("recovery");
    recovery *r = arg;
    outbox_ev *ev = sg__ev_create(r->e, rec);
    free(rec);
    if (ev->rec.compensation) {
        r->comps++;
        sg__comp_deliver(r->e, ev);
        return;
    }
    outbox_ev *dup = NULL;
    HASH_FIND_STR(r->step_events, ev->rec.saga_id, dup);
    if (dup) { /* one publish step runs at a time; an older one is stale */
        HASH_DEL(r->step_events, dup);
        DL_APPEND(r->stale, dup);
    }
    HASH_ADD_STR(r->step_events, rec.saga_id, ev);
}

static void on_unfinished(void *arg, sg_saga_rec *rec)
{
    sg_crash_point("recovery");
    recovery *r = arg;
    outbox_ev *mine = NULL;
    HASH_FIND_STR(r->step_events, rec->id, mine);
    if (mine) HASH_DEL(r->step_events, mine);
    r->sagas++;
    sg__saga_resume(r->e, rec, mine);
    free(rec);
}

/* A step event whose saga is no longer running was settled with it (or is
 * stale): nothing may deliver it now, so it is withdrawn for good. */
static void withdraw_orphans(recovery *r)
{
    outbox_ev *ev, *tmp;
    sg_write *w = NULL;
    HASH_ITER(hh, r->step_events, ev, tmp)
    {
        HASH_DEL(r->step_events, ev);
        DL_APPEND(r->stale, ev);
    }
    DL_FOREACH_SAFE(r->stale, ev, tmp)
    {
        DL_DELETE(r->stale, ev);
        if (!w) w = sg_write_create();
        sg_write_event_update(w, ev->rec.id, SG_EVENT_WITHDRAWN, ev->rec.attempts);
        r->orphans++;
        sg__ev_free(ev);
    }
    if (w && sg_store_commit_sync(r->e->store, w) != SG_OK)
        sg_log(SG_LOG_WARN, "recovery: could not withdraw %zu stale event(s)", r->orphans);
}

sg_status sg_engine_start(sg_engine *e, char *err, size_t errlen)
{
    recovery r = {.e = e};
    sg_store_reader *reader = NULL; /* recovery's own, closed before the loop runs */
    sg_status st = sg_store_reader_open(e->store, &reader, err, errlen);
    if (st != SG_OK) return st;
    st = sg_store_load_pending_events(reader, on_pending_event, &r);
    if (st == SG_OK) st = sg_store_load_unfinished(reader, on_unfinished, &r);
    if (st != SG_OK) snprintf(err, errlen, "%s", sg_store_reader_error(reader));
    sg_store_reader_close(reader);
    withdraw_orphans(&r);
    if (st == SG_OK && (r.sagas || r.comps || r.orphans))
        sg_log(SG_LOG_INFO,
               "recovery: resumed %zu saga(s), %zu compensation event(s) pending, %zu stale "
               "event(s) withdrawn",
               r.sagas, r.comps, r.orphans);
    return st;
}

sg_status sg_engine_submit(sg_engine *e, sg_start *start, sg_start_cb cb, void *arg)
{
    start_req *req = sg_xcalloc(1, sizeof *req);
    req->in = *start;
    req->cb = cb;
    req->arg = arg;
    pthread_mutex_lock(&e->lock);
    /* Sent under the lock: halt sets closed under it before it closes the
     * handle, so the handle is alive here. */
    if (e->closed || uv_async_send(&e->async) != 0) {
        pthread_mutex_unlock(&e->lock);
        free(req);
        return SG_ECLOSED;
    }
    DL_APPEND(e->intake, req);
    pthread_mutex_unlock(&e->lock);
    start->body = start->idem_key = NULL; /* taken */
    return SG_OK;
}

void sg_engine_stop_accepting(sg_engine *e)
{
    e->accepting = 0;
}

size_t sg_engine_active(const sg_engine *e)
{
    return e->nsagas;
}

size_t sg_engine_waiting(const sg_engine *e)
{
    return e->nwaiting;
}

void sg_engine_halt(sg_engine *e)
{
    if (!e || e->halted) return;
    /* Halted first: what is still queued is refused, never started, so a
     * start-up that fails after the API opened commits nothing. */
    e->halted = 1;
    pthread_mutex_lock(&e->lock);
    e->closed = 1;
    pthread_mutex_unlock(&e->lock);
    on_intake(&e->async);
    saga *s, *tmp;
    HASH_ITER(hh, e->sagas, s, tmp) sg__saga_halt(s);
    sg__comp_halt(e);
}

static void on_async_closed(uv_handle_t *h)
{
    sg_engine *e = h->data;
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void sg_engine_destroy(sg_engine *e)
{
    if (!e) return;
    sg_engine_halt(e);
    saga *s, *tmp;
    HASH_ITER(hh, e->sagas, s, tmp) sg__saga_free(s);
    outbox_ev *ev, *etmp;
    DL_FOREACH_SAFE(e->comps, ev, etmp)
    {
        DL_DELETE(e->comps, ev);
        sg__ev_free(ev);
    }
    uv_close((uv_handle_t *)&e->async, on_async_closed);
}
