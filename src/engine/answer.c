/* From start request to saga and back: a new start becomes a saga (or joins
 * the one its Idempotency-Key names), and every request waiting on a saga is
 * answered with a typed sg_outcome once what it reports has committed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/metrics.h"
#include "sg/util.h"

void sg__answer(sg_engine *e, start_req *req, const sg_outcome *o)
{
    req->cb(req->arg, o);
    free(req->in.body);
    free(req->in.idem_key);
    free(req->in.tracestate);
    sg_saga_rec_free(&req->saga);
    free(req);
    e->nwaiting--;
}

void sg__answer_fail(sg_engine *e, start_req *req, sg_status st, const char *detail)
{
    sg_outcome o;
    sg_outcome_fail(&o, st, detail);
    sg__answer(e, req, &o);
}

void sg__saga_answer(saga *s)
{
    if (!s->waiters) return; /* most sagas: answered already */
    sg_outcome done, running;
    int have_done = 0;
    sg_outcome_running(&running, s->rec.id);
    start_req *w, *tmp;
    DL_FOREACH_SAFE(s->waiters, w, tmp)
    {
        if (!(w->in.async ? s->durable : s->finished)) continue;
        DL_DELETE(s->waiters, w);
        if (!s->finished) {
            sg__answer(s->eng, w, &running);
            continue;
        }
        /* Final: the record in memory is exactly what committed. */
        if (!have_done) sg_outcome_of(&done, &s->rec, s->def);
        have_done = 1;
        sg__answer(s->eng, w, &done);
    }
    if (have_done) sg_outcome_clear(&done);
}

void sg__saga_fail_waiters(saga *s, sg_status st, const char *detail)
{
    start_req *w, *tmp;
    DL_FOREACH_SAFE(s->waiters, w, tmp)
    {
        DL_DELETE(s->waiters, w);
        sg__answer_fail(s->eng, w, st, detail);
    }
}

static void after_insert(saga *s, sg_status st)
{
    if (st == SG_ECONFLICT && s->rec.idem_key) {
        /* Another saga took this key between the API's lookup and ours and
         * has already left memory (else the lookup below would have found
         * it): the API reads it from the store, off the loop thread. */
        sg_outcome o;
        sg_outcome_fail(&o, SG_EEXIST, "the Idempotency-Key belongs to a stored saga");
        o.request = s->rec.request; /* every waiter's body: they joined by it */
        o.request_len = s->rec.request_len;
        start_req *w, *tmp;
        DL_FOREACH_SAFE(s->waiters, w, tmp)
        {
            DL_DELETE(s->waiters, w);
            sg__answer(s->eng, w, &o);
        }
        sg__saga_free(s);
        return;
    }
    if (st != SG_OK) {
        sg__saga_fail_waiters(s, SG_EIO, "could not store the saga");
        sg__saga_free(s);
        return;
    }
    s->durable = 1;
    sg_metrics_saga_started(s->def->name);
    sg__saga_log_step(s, s->cur);
    sg__saga_answer(s);
    sg__saga_act(s);
}

/* A start whose key a saga in memory holds: the same start joins it,
 * another body is refused. */
static void join(saga *holder, start_req *req)
{
    if (sg_idem_check(&holder->rec, req->in.body, req->in.body_len) != SG_OK) {
        sg__answer_fail(holder->eng, req, SG_ECONFLICT, NULL);
        return;
    }
    DL_APPEND(holder->waiters, req);
    sg__saga_answer(holder);
}

void sg__start(sg_engine *e, start_req *req)
{
    if (req->in.idem_key) {
        saga *holder = NULL;
        HASH_FIND(hh_idem, e->by_idem, req->in.idem_key, strlen(req->in.idem_key), holder);
        if (holder) {
            join(holder, req);
            return;
        }
    }
    if (e->nsagas >= e->opt.max_inflight ||
        e->held_bytes + req->in.body_len > e->opt.max_inflight_bytes) {
        /* Backpressure: memory stays bounded whatever clients send. */
        sg__answer_fail(e, req, SG_EBUSY, "too many sagas in flight; retry later");
        return;
    }
    const sg_def *def = req->in.def ? req->in.def : sg_def_default();
    if (!def) def = e->def;
    saga *s = sg__saga_new(e, def);
    sg_saga_rec *r = &s->rec;
    sg_uuid_v7(r->id);
    r->def_name = sg_xstrdup(def->name);
    r->def_version = def->version;
    r->request = req->in.body; /* taken: the request is done with it */
    r->request_len = req->in.body_len;
    req->in.body = NULL;
    r->idem_key = sg_xstrdup(req->in.idem_key);
    /* The client's trace goes on (design §7), else the saga starts one. */
    if (req->in.trace.trace_id[0]) {
        r->trace = req->in.trace;
        r->tracestate = req->in.tracestate; /* taken */
        req->in.tracestate = NULL;
    } else {
        sg_trace_new(&r->trace);
    }
    r->status = SG_SAGA_IN_PROGRESS;
    r->comp_status = SG_COMP_NONE;
    r->created_us = r->updated_us = sg_now_us();
    r->nsteps = def->nsteps;
    r->steps = sg_xcalloc(r->nsteps, sizeof *r->steps);
    for (size_t i = 0; i < r->nsteps; i++)
        r->steps[i].name = sg_xstrdup(def->steps[i].name);
    sg__saga_index(s);
    DL_APPEND(s->waiters, req);

    sg_write *w = sg_write_create();
    sg__saga_begin_step(s, 0, w);
    sg_write_saga_insert(w, r); /* with step 0 RUNNING */
    sg__saga_commit(s, w, NULL, after_insert);
}

/* ---- redrive ------------------------------------------------------------ */

static void after_redrive(saga *s, sg_status st)
{
    if (st == SG_ECONFLICT) {
        /* The store says it is no longer FAILED without compensation. */
        sg__saga_fail_waiters(s, SG_ECONFLICT,
                              "the saga changed meanwhile: it is no longer FAILED without a "
                              "published compensation");
        sg__saga_free(s);
        return;
    }
    if (st != SG_OK) {
        sg__saga_store_failed(s, st);
        return;
    }
    sg__saga_log_step(s, s->cur);
    sg__saga_answer(s);
    sg__saga_act(s);
}

void sg__redrive(sg_engine *e, start_req *req)
{
    sg_saga_rec *rec = &req->saga;
    saga *running = NULL;
    HASH_FIND(hh, e->sagas, rec->id, strlen(rec->id), running);
    if (running && running->redriven) { /* a concurrent redrive started it: join that run */
        DL_APPEND(running->waiters, req);
        sg__saga_answer(running);
        return;
    }
    if (running || rec->status != SG_SAGA_FAILED) {
        char why[96];
        snprintf(why, sizeof why, "the saga is %s: only a FAILED saga can be retried",
                 sg_saga_status_name(running ? running->rec.status : rec->status));
        sg__answer_fail(e, req, SG_ECONFLICT, why);
        return;
    }
    /* On the version it started with, whatever the file says now. */
    const sg_def *def = sg_def_find_version(rec->def_name, rec->def_version);
    size_t f = 0;
    while (f < rec->nsteps && rec->steps[f].status != SG_STEP_FAILED)
        f++;
    if (!def || def->nsteps != rec->nsteps || f == rec->nsteps) {
        sg__answer_fail(e, req, SG_ECONFLICT,
                        "its definition is unknown or changed, or no step failed");
        return;
    }
    if (e->nsagas >= e->opt.max_inflight ||
        e->held_bytes + rec->request_len > e->opt.max_inflight_bytes) {
        sg__answer_fail(e, req, SG_EBUSY, "too many sagas in flight; retry later");
        return;
    }
    saga *s = sg__saga_new(e, def);
    s->rec = *rec; /* takes the members */
    memset(rec, 0, sizeof *rec);
    s->durable = 1;
    s->redriven = 1;
    s->cur = f;
    s->rec.status = SG_SAGA_IN_PROGRESS;
    free(s->rec.error);
    s->rec.error = NULL;
    s->rec.updated_us = sg_now_us();
    /* A saga stored before sagad traced: this run gets a trace (the
     * API's, or a new one), kept in memory only. */
    if (!s->rec.trace.trace_id[0]) sg_trace_new(&s->rec.trace);
    sg__saga_index(s);
    DL_APPEND(s->waiters, req);

    sg_write *w = sg_write_create();
    /* Only from the state the API saw; the store decides any race. */
    sg_write_saga_expect(w, s->rec.id, SG_SAGA_FAILED, SG_COMP_NONE);
    /* Another sagad may have run it: it is no one's until this commits. */
    if (sg_store_shared(e->store)) sg_write_saga_claim(w, s->rec.id);
    sg__saga_begin_step(s, f, w); /* a new attempt, a new event for a publish */
    sg_write_step_update(w, s->rec.id, f, &s->rec.steps[f]);
    sg_write_saga_update(w, s->rec.id, s->rec.status, s->rec.comp_status, NULL, s->rec.updated_us);
    sg__saga_logf(s, SG_LOG_INFO, s->rec.steps[f].name, "REDRIVEN",
                  "saga %s redriven from step %zu/%zu", s->rec.id, f + 1, s->rec.nsteps);
    sg__saga_commit(s, w, NULL, after_redrive);
}
