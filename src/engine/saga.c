/* The saga state machine. A saga runs its definition's steps in order; each
 * transition is one store write, and the next action starts only once that
 * write is durable, so a crash at any point resumes from committed state.
 * A saga has at most one write in flight, so one continuation suffices. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/crash.h"
#include "sg/json.h"
#include "sg/metrics.h"
#include "sg/util.h"

/* The continuation of a saga's one write in flight. */
typedef struct pending_write {
    saga *s;
    size_t bytes; /* what the queued write holds, counted in held_bytes */
    sg__then_fn then;
    outbox_ev *comps; /* compensations to deliver once committed */
    int guarded;      /* the saga's first write after a resume (resume_guard) */
} pending_write;

/* ---- lifetime ---------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

saga *sg__saga_new(sg_engine *e, const sg_def *def)
{
    saga *s = sg_xcalloc(1, sizeof *s);
    s->eng = e;
    s->def = def;
    /* Only fails for a bad loop or handle: a programming error. */
    if (uv_timer_init(e->loop, &s->timer) != 0) abort();
    s->timer.data = s;
    e->nsagas++;
    sg_metrics_inflight_add(1);
    return s;
}

void sg__saga_index(saga *s)
{
    sg_engine *e = s->eng;
    s->held = s->rec.request_len;
    for (size_t i = 0; i < s->rec.nsteps; i++)
        s->held += s->rec.steps[i].response_len;
    e->held_bytes += s->held;
    HASH_ADD(hh, e->sagas, rec.id, strlen(s->rec.id), s);
    if (s->rec.idem_key)
        HASH_ADD_KEYPTR(hh_idem, e->by_idem, s->rec.idem_key, strlen(s->rec.idem_key), s);
}

void sg__saga_free(saga *s)
{
    sg_engine *e = s->eng;
    saga *found = NULL;
    HASH_FIND(hh, e->sagas, s->rec.id, strlen(s->rec.id), found);
    if (found == s) {
        HASH_DELETE(hh, e->sagas, s);
        if (s->rec.idem_key) HASH_DELETE(hh_idem, e->by_idem, s);
        e->held_bytes -= s->held;
    }
    sg__saga_fail_waiters(s, SG_ECLOSED, "sagad is shutting down");
    if (s->pub) sg__ev_free(s->pub);
    s->pub = NULL;
    free(s->pub_error);
    free(s->body);
    sg_saga_rec_free(&s->rec);
    e->nsagas--;
    sg_metrics_inflight_add(-1);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    if (!e->halted) sg__recover_more(e); /* room for a saga still in the store */
}

void sg__saga_halt(saga *s)
{
    if (s->call) sg_http_cancel(s->eng->http, s->call);
    s->call = NULL;
    free(s->body);
    s->body = NULL;
    if (s->pub && s->pub->pub) sg_bus_cancel(s->eng->bus, s->pub->pub);
    if (s->pub) s->pub->pub = NULL;
    uv_timer_stop(&s->timer);
    sg__saga_fail_waiters(s, SG_ECLOSED,
                          "sagad is shutting down; the saga resumes at the next start");
}

/* ---- store writes ------------------------------------------------------ */

static void on_committed(void *arg, sg_status st)
{
    pending_write *pw = arg;
    saga *s = pw->s;
    assert(s->writing);
    s->writing = 0;
    s->eng->held_bytes -= pw->bytes;
    if (pw->guarded && st == SG_ECONFLICT && !s->eng->halted) {
        /* The store has it past the state it was resumed from: this copy
         * is stale (another pass resumed and ended it). */
        sg_log(SG_LOG_INFO, "saga %s: resumed twice; this copy stops", s->rec.id);
        outbox_ev *ev, *tmp;
        DL_FOREACH_SAFE(pw->comps, ev, tmp)
        {
            DL_DELETE(pw->comps, ev);
            sg__ev_free(ev);
        }
        free(pw);
        sg__saga_free(s);
        return;
    }
    if (pw->comps && st == SG_OK) sg_crash_point("commit_before_delivery");
    if (s->eng->halted) {
        /* Not delivered now; still PENDING in the store if committed, so the
         * next start delivers it. */
        outbox_ev *ev, *tmp;
        DL_FOREACH_SAFE(pw->comps, ev, tmp)
        {
            DL_DELETE(pw->comps, ev);
            sg__ev_free(ev);
        }
        free(pw);
        return;
    }
    outbox_ev *ev, *tmp;
    DL_FOREACH_SAFE(pw->comps, ev, tmp)
    {
        DL_DELETE(pw->comps, ev);
        if (st == SG_OK)
            sg__comp_deliver(s->eng, ev);
        else
            sg__ev_free(ev);
    }
    sg__then_fn then = pw->then;
    free(pw);
    then(s, st);
}

void sg__saga_commit(saga *s, sg_write *w, outbox_ev *comps, sg__then_fn then)
{
    pending_write *pw = sg_xcalloc(1, sizeof *pw);
    pw->s = s;
    pw->then = then;
    pw->comps = comps;
    if (s->resume_guard) {
        s->resume_guard = 0;
        pw->guarded = 1;
        sg_write_saga_expect_first(w, s->rec.id, SG_SAGA_IN_PROGRESS, s->resume_comp);
    }
    pw->bytes = sg_write_size(w);
    s->eng->held_bytes += pw->bytes;
    assert(!s->writing); /* one write in flight per saga: one continuation */
    s->writing = 1;
    if (sg_store_submit(s->eng->store, w, on_committed, pw) != SG_OK) on_committed(pw, SG_ECLOSED);
}

/* A write failed: the store keeps the last committed state, from which the
 * next start resumes this saga; in memory we let it go. */
void sg__saga_store_failed(saga *s, sg_status st)
{
    char msg[160];
    snprintf(msg, sizeof msg, "could not store the saga state (%s); it resumes at the next start",
             sg_status_text(st));
    sg_log(SG_LOG_ERROR, "saga %s: %s", s->rec.id, msg);
    sg__saga_fail_waiters(s, SG_EIO, msg);
    sg__saga_free(s);
}

/* ---- steps ------------------------------------------------------------- */

static void after_advance(saga *s, sg_status st);

void sg__saga_log_step(saga *s, size_t i)
{
    const sg_step_rec *st = &s->rec.steps[i];
    if (s->done_unlogged) { /* one line for the transition: the step done and the next */
        size_t d = s->done_unlogged - 1;
        s->done_unlogged = 0;
        sg__saga_logf(s, SG_LOG_INFO, st->name, sg_step_status_name(st->status),
                      "saga %s step %zu/%zu %s COMPLETED; step %zu/%zu %s %s%s%s", s->rec.id, d + 1,
                      s->rec.nsteps, s->rec.steps[d].name, i + 1, s->rec.nsteps, st->name,
                      sg_step_status_name(st->status), st->error ? ": " : "",
                      st->error ? st->error : "");
        return;
    }
    sg__saga_logf(s, SG_LOG_INFO, st->name, sg_step_status_name(st->status),
                  "saga %s step %zu/%zu %s %s%s%s", s->rec.id, i + 1, s->rec.nsteps, st->name,
                  sg_step_status_name(st->status), st->error ? ": " : "",
                  st->error ? st->error : "");
}

/* Marks step i RUNNING in memory; a PUBLISH step also gets its outbox event,
 * inserted by the same write (or, when its payload cannot be built, the
 * reason, for sg__saga_act to fail the step with). */
void sg__saga_begin_step(saga *s, size_t i, sg_write *w)
{
    sg_step_rec *st = &s->rec.steps[i];
    st->status = SG_STEP_RUNNING;
    st->attempts++;
    st->started_us = sg_now_us();
    st->finished_us = 0;
    free(st->error);
    st->error = NULL;
    if (s->def->steps[i].action.kind != SG_ACTION_PUBLISH) return;
    char why[320];
    if (s->pub) sg__ev_free(s->pub);
    free(s->pub_error);
    s->pub_error = NULL;
    s->in_doubt = 0;
    s->pub = sg__event_step(s, i, why, sizeof why);
    if (s->pub)
        sg_write_event_insert(w, &s->pub->rec);
    else
        s->pub_error = sg_xstrdup(why);
}

void sg__saga_next_attempt(saga *s)
{
    sg_step_rec *st = &s->rec.steps[s->cur];
    st->status = SG_STEP_RUNNING;
    st->attempts++;
    st->next_us = 0;
    if (!st->started_us) st->started_us = sg_now_us();
    sg_write *w = sg_write_create();
    sg_write_step_update(w, s->rec.id, s->cur, st);
    sg__saga_commit(s, w, NULL, after_advance);
}

static void after_final(saga *s, sg_status st)
{
    if (st != SG_OK) {
        sg__saga_store_failed(s, st);
        return;
    }
    s->finished = 1;
    sg_metrics_saga_finished(s->def->name, s->rec.status == SG_SAGA_FAILED);
    if (s->done_unlogged) { /* the last step: one line for the step and the saga */
        size_t d = s->done_unlogged - 1;
        s->done_unlogged = 0;
        sg__saga_logf(s, SG_LOG_INFO, s->rec.steps[d].name, sg_saga_status_name(s->rec.status),
                      "saga %s step %zu/%zu %s COMPLETED; saga %s", s->rec.id, d + 1, s->rec.nsteps,
                      s->rec.steps[d].name, sg_saga_status_name(s->rec.status));
    } else if (s->failed_unlogged) { /* one line for the failed step and the saga */
        const sg_step_rec *f = &s->rec.steps[s->cur];
        s->failed_unlogged = 0;
        sg__saga_logf(s, SG_LOG_INFO, f->name, sg_saga_status_name(s->rec.status),
                      "saga %s step %zu/%zu %s FAILED: %s; saga %s%s", s->rec.id, s->cur + 1,
                      s->rec.nsteps, f->name, f->error ? f->error : "",
                      sg_saga_status_name(s->rec.status),
                      s->rec.comp_status == SG_COMP_PENDING ? " (compensation pending)" : "");
    } else {
        sg__saga_logf(s, SG_LOG_INFO, NULL, sg_saga_status_name(s->rec.status), "saga %s %s%s",
                      s->rec.id, sg_saga_status_name(s->rec.status),
                      s->rec.comp_status == SG_COMP_PENDING ? " (compensation pending)" : "");
    }
    sg__saga_answer(s);
    sg__saga_free(s);
}

static void after_advance(saga *s, sg_status st)
{
    if (st != SG_OK) {
        sg__saga_store_failed(s, st);
        return;
    }
    sg__saga_log_step(s, s->cur);
    sg__saga_act(s);
}

void sg__saga_step_done(saga *s, const char *resp, size_t len)
{
    sg_step_rec *st = &s->rec.steps[s->cur];
    st->status = SG_STEP_COMPLETED;
    st->finished_us = sg_now_us();
    st->next_us = 0;
    free(st->error);
    st->error = NULL;
    s->held -= st->response_len;
    s->eng->held_bytes -= st->response_len;
    free(st->response);
    st->response = resp ? sg_xmemdup(resp, len) : NULL;
    st->response_len = resp ? len : 0;
    s->held += st->response_len; /* kept for the final answer */
    s->eng->held_bytes += st->response_len;
    s->done_unlogged = s->cur + 1; /* logged with the transition, once durable */

    sg_write *w = sg_write_create();
    sg_write_step_update(w, s->rec.id, s->cur, st);
    if (s->pub) {
        s->pub->rec.status = SG_EVENT_DELIVERED;
        sg_write_event_update(w, s->pub->rec.id, SG_EVENT_DELIVERED, s->pub->rec.attempts, NULL,
                              st->finished_us);
        sg__ev_free(s->pub);
        s->pub = NULL;
    }
    s->rec.updated_us = st->finished_us;
    /* Moving on writes the two steps (and the event) only: the saga's row
     * stays as it is, and a reader takes updated_at from the steps
     * (sg_saga_rec_updated_us). Two statements and a row rewrite fewer per
     * step in the store writer, whose rounds bound the sagas/s. */
    if (s->cur + 1 < s->rec.nsteps) {
        s->cur++;
        sg__saga_begin_step(s, s->cur, w);
        sg_write_step_update(w, s->rec.id, s->cur, &s->rec.steps[s->cur]);
        sg__saga_commit(s, w, NULL, after_advance);
        return;
    }
    s->rec.status = SG_SAGA_COMPLETED;
    sg_write_saga_update(w, s->rec.id, s->rec.status, s->rec.comp_status, NULL, s->rec.updated_us);
    sg__saga_commit(s, w, NULL, after_final);
}

void sg__saga_step_failed(saga *s, const char *reason)
{
    sg_step_rec *st = &s->rec.steps[s->cur];
    const sg_step_def *d = &s->def->steps[s->cur];
    st->status = SG_STEP_FAILED;
    st->finished_us = sg_now_us();
    st->next_us = 0;
    free(st->error);
    st->error = sg_xstrdup(reason);
    s->failed_unlogged = 1; /* logged with the saga's end, once durable */

    size_t n = strlen(reason) + strlen(d->service) + 64;
    free(s->rec.error);
    s->rec.error = sg_xmalloc(n);
    snprintf(s->rec.error, n, "Error en Step %zu (%s): %s", s->cur + 1, d->service, reason);

    sg_write *w = sg_write_create();
    sg_write_step_update(w, s->rec.id, s->cur, st);
    if (s->pub) {
        /* Withdrawn in the same transaction: it can never go out later. If
         * it may have gone out already, its compensation is planned. */
        sg_write_event_update(w, s->pub->rec.id, SG_EVENT_WITHDRAWN, s->pub->rec.attempts, reason,
                              st->finished_us);
        sg__ev_free(s->pub);
        s->pub = NULL;
    }
    outbox_ev *comps = sg__event_plan_compensations(s, w);
    s->rec.status = SG_SAGA_FAILED;
    s->rec.comp_status = comps ? SG_COMP_PENDING : SG_COMP_NONE;
    s->rec.updated_us = st->finished_us;
    sg_write_saga_update(w, s->rec.id, s->rec.status, s->rec.comp_status, s->rec.error,
                         s->rec.updated_us);
    sg__saga_commit(s, w, comps, after_final);
}

/* ---- resume ------------------------------------------------------------ */

void sg__saga_resume(sg_engine *e, sg_saga_rec *rec, outbox_ev *pending)
{
    const sg_def *def = sg_def_find_version(rec->def_name, rec->def_version);
    if (!def || def->nsteps != rec->nsteps) {
        sg_log(SG_LOG_ERROR, "saga %s: definition '%s' version %d unknown or changed; left as is",
               rec->id, rec->def_name ? rec->def_name : "?", rec->def_version);
        sg_saga_rec_free(rec);
        if (pending) sg__ev_free(pending);
        return;
    }
    saga *s = sg__saga_new(e, def);
    s->rec = *rec; /* takes the members */
    memset(rec, 0, sizeof *rec);
    s->durable = 1;
    s->resume_guard = 1;
    s->resume_comp = s->rec.comp_status;
    sg__saga_index(s);
    while (s->cur < s->rec.nsteps && s->rec.steps[s->cur].status == SG_STEP_COMPLETED)
        s->cur++;

    sg__saga_logf(s, SG_LOG_INFO, s->rec.steps[s->cur].name, "RESUMED",
                  "saga %s resumed at step %zu/%zu", s->rec.id, s->cur + 1, s->rec.nsteps);
    sg_step_rec *cur = s->cur < s->rec.nsteps ? &s->rec.steps[s->cur] : NULL;
    int publish_step = cur && s->def->steps[s->cur].action.kind == SG_ACTION_PUBLISH;
    if (cur && cur->status == SG_STEP_RUNNING && (!publish_step || pending)) {
        if (pending && pending->rec.step_index == (int)s->cur) {
            /* Same event, same id, a new attempt: it may have gone out
             * before the restart, so it is in doubt (design §1). */
            s->pub = pending;
            pending = NULL;
            s->in_doubt = 1;
        }
        if (pending) sg__ev_free(pending);
        int64_t left_us = cur->next_us - sg_now_us();
        if (cur->next_us && left_us > 0) { /* still in its backoff */
            s->retry_due_ms = sg__mono_ms() + (uint64_t)left_us / 1000;
            sg__saga_wait(s);
        } else {
            sg__saga_next_attempt(s);
        }
        return;
    }
    if (pending) sg__ev_free(pending);
    if (s->cur == s->rec.nsteps) {
        sg_write *w = sg_write_create();
        s->rec.status = SG_SAGA_COMPLETED;
        s->rec.updated_us = sg_now_us();
        sg_write_saga_update(w, s->rec.id, s->rec.status, s->rec.comp_status, NULL,
                             s->rec.updated_us);
        sg__saga_commit(s, w, NULL, after_final);
        return;
    }
    if (s->rec.steps[s->cur].status == SG_STEP_FAILED) {
        sg__saga_step_failed(s, s->rec.steps[s->cur].error ? s->rec.steps[s->cur].error : "failed");
        return;
    }
    sg_write *w = sg_write_create();
    sg__saga_begin_step(s, s->cur, w);
    sg_write_step_update(w, s->rec.id, s->cur, &s->rec.steps[s->cur]);
    sg__saga_commit(s, w, NULL, after_advance); /* same as moving on to it */
}
