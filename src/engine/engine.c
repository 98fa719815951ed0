/* Engine lifecycle and intake: API threads queue start requests under a
 * mutex and wake the loop with uv_async_send; only the loop touches sagas.
 * Recovery at start is recover.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
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
        if (req->kind == REQ_REDELIVER) {
            e->nwaiting--; /* answered by cmd_cb, not as a waiter */
            if (!e->accepting || e->halted)
                req->cmd_cb(req->arg, SG_ECLOSED, "sagad is shutting down");
            else
                sg__comp_redeliver(e, &req->event, req->cmd_cb, req->arg);
            sg_event_rec_free(&req->event);
            free(req);
        } else if (!e->accepting || e->halted) {
            sg__answer_fail(e, req, SG_ECLOSED, "sagad is shutting down");
        } else if (req->kind == REQ_REDRIVE) {
            sg__redrive(e, req);
        } else {
            sg__start(e, req);
        }
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
    e->opt.park_after_s = 86400;
    e->opt.max_inflight = 100000;
    e->opt.max_inflight_bytes = (size_t)1 << 30;
    if (opt) {
        if (opt->step_timeout_ms > 0) e->opt.step_timeout_ms = opt->step_timeout_ms;
        if (opt->retry_min_ms > 0) e->opt.retry_min_ms = opt->retry_min_ms;
        if (opt->retry_max_ms > 0) e->opt.retry_max_ms = opt->retry_max_ms;
        if (opt->park_after_s > 0) e->opt.park_after_s = opt->park_after_s;
        if (opt->retention_s > 0) e->opt.retention_s = opt->retention_s;
        if (opt->max_inflight > 0) e->opt.max_inflight = opt->max_inflight;
        if (opt->max_inflight_bytes > 0) e->opt.max_inflight_bytes = opt->max_inflight_bytes;
        e->opt.on_fenced = opt->on_fenced;
        e->opt.fenced_arg = opt->fenced_arg;
    }
    e->store = store;
    e->bus = bus;
    e->http = http;
    e->def = def;
    e->accepting = 1;
    e->rng = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1; /* never 0 for xorshift */
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

sg_status sg_engine_start(sg_engine *e, char *err, size_t errlen)
{
    sg_status st = sg__recover_start(e, err, errlen);
    if (st == SG_OK) st = sg__lease_start(e, err, errlen);
    return st == SG_OK ? sg__purge_start(e, err, errlen) : st;
}

/* Queues req for the loop; SG_ECLOSED (req not queued) once halted. */
static sg_status enqueue(sg_engine *e, start_req *req)
{
    pthread_mutex_lock(&e->lock);
    /* Sent under the lock: halt sets closed under it before it closes the
     * handle, so the handle is alive here. */
    if (e->closed || uv_async_send(&e->async) != 0) {
        pthread_mutex_unlock(&e->lock);
        return SG_ECLOSED;
    }
    DL_APPEND(e->intake, req);
    pthread_mutex_unlock(&e->lock);
    return SG_OK;
}

sg_status sg_engine_submit(sg_engine *e, sg_start *start, sg_start_cb cb, void *arg)
{
    start_req *req = sg_xcalloc(1, sizeof *req);
    req->kind = REQ_START;
    req->in = *start;
    req->cb = cb;
    req->arg = arg;
    if (enqueue(e, req) != SG_OK) {
        free(req);
        return SG_ECLOSED;
    }
    start->body = start->idem_key = start->tracestate = NULL; /* taken */
    return SG_OK;
}

sg_status sg_engine_redrive(sg_engine *e, sg_saga_rec *rec, int async, sg_start_cb cb, void *arg)
{
    start_req *req = sg_xcalloc(1, sizeof *req);
    req->kind = REQ_REDRIVE;
    req->in.async = async;
    req->cb = cb;
    req->arg = arg;
    req->saga = *rec;
    if (enqueue(e, req) != SG_OK) {
        free(req);
        return SG_ECLOSED;
    }
    memset(rec, 0, sizeof *rec); /* taken */
    return SG_OK;
}

sg_status sg_engine_redeliver(sg_engine *e, sg_event_rec *ev, sg_cmd_cb cb, void *arg)
{
    start_req *req = sg_xcalloc(1, sizeof *req);
    req->kind = REQ_REDELIVER;
    req->cmd_cb = cb;
    req->arg = arg;
    req->event = *ev;
    if (enqueue(e, req) != SG_OK) {
        free(req);
        return SG_ECLOSED;
    }
    memset(ev, 0, sizeof *ev); /* taken */
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
    sg__recover_halt(e);
    sg__lease_halt(e);
    sg__purge_halt(e);
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
    sg__comp_free_all(e);
    sg__recover_free(e);
    sg__lease_free(e);
    sg__purge_free(e);
    uv_close((uv_handle_t *)&e->async, on_async_closed);
}
