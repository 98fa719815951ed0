/* Several sagad on one shared store (design §7): the lease gate and the
 * takeover of dead processes' sagas.
 *
 * The gate: an action with effects outside (a downstream call, a publish,
 * a compensation) starts only while this process holds its store lease
 * (sg_store_lease_until, measured from the start of the last renewal, so
 * never later than the database's own expiry). Once it is lost, another
 * process may own these sagas: the engine reports it once through
 * opt.on_fenced and starts nothing more.
 *
 * The takeover: every lease_ms / 4 a tick checks the gate (an idle process
 * notices too) and, on libuv's threadpool, asks the store to adopt the
 * sagas of processes whose lease expired; those it took resume as crash
 * recovery resumes them, and their undelivered compensations go back to
 * delivery. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define TICK_MIN_MS 50

/* One adoption at a time; owned by the engine, or by its own work item
 * once the engine is gone (like recover.c's pages). */
struct sg_adopter {
    sg_engine *e;            /* NULL once the engine is gone */
    sg_store_reader *reader; /* owned; the work function's while busy */
    uv_timer_t tick;
    uv_work_t work;
    int busy;   /* a work item is queued: after_adopt has not run */
    int resync; /* read the compensations even if nothing was adopted */
    int again;  /* a resync was asked for while busy */
    /* What the work found, handed to the loop in after_adopt. */
    size_t taken;
    sg_status st;
    char err[256];
    /* Undelivered compensations of this process's sagas, as read: records
     * (outbox events own a loop handle, so they are made on the loop). */
    sg_event_rec *comps;
    size_t ncomps, capcomps;
    pthread_mutex_t mu; /* guards reading, for halt */
    pthread_cond_t cv;
    int reading; /* the work function is running */
};

int sg__lease_held(sg_engine *e)
{
    if (!sg_store_shared(e->store)) return 1;
    uint64_t until = sg_store_lease_until(e->store);
    if (!e->fenced && until == 0) { /* the store says another process took over */
        e->fenced = 1;
        sg_log(SG_LOG_ERROR,
               "lease %s lost: another sagad may own these sagas now; this one starts "
               "nothing more",
               e->owner);
        if (e->opt.on_fenced) e->opt.on_fenced(e->opt.fenced_arg);
    }
    if (e->fenced) return 0;
    if (sg__mono_ms() < until) return 1;
    if (!e->lease_lapsed)
        sg_log(SG_LOG_WARN,
               "lease %s not renewed in time (is the store out of reach?): no call, publish "
               "or compensation starts until it is",
               e->owner);
    e->lease_lapsed = 1;
    return 0;
}

/* ---- adoption (threadpool) ------------------------------------------------ */

static void on_comp(void *arg, sg_event_rec *rec)
{
    sg_adopter *a = arg;
    if (a->ncomps == a->capcomps) {
        a->capcomps = a->capcomps ? 2 * a->capcomps : 16;
        a->comps = sg_xrealloc(a->comps, a->capcomps * sizeof *a->comps);
    }
    a->comps[a->ncomps++] = *rec; /* takes the members */
    free(rec);
}

static void adopt_work(uv_work_t *w)
{
    sg_adopter *a = w->data;
    a->st = sg_store_adopt(a->reader, &a->taken);
    if (a->st == SG_OK && (a->taken || a->resync))
        a->st = sg_store_load_compensations(a->reader, on_comp, a);
    if (a->st != SG_OK) snprintf(a->err, sizeof a->err, "%s", sg_store_reader_error(a->reader));
    pthread_mutex_lock(&a->mu);
    a->reading = 0;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void drop_comps(sg_adopter *a)
{
    for (size_t i = 0; i < a->ncomps; i++)
        sg_event_rec_free(&a->comps[i]);
    free(a->comps);
    a->comps = NULL;
    a->ncomps = a->capcomps = 0;
}

static void adopter_free(sg_adopter *a)
{
    drop_comps(a);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static void after_adopt(uv_work_t *w, int status)
{
    sg_adopter *a = w->data;
    sg_engine *e = a->e;
    (void)status;
    a->busy = 0;
    if (!e) { /* the engine is gone: the tick's close callback ran already */
        adopter_free(a);
        return;
    }
    if (e->halted || !sg__lease_held(e)) {
        drop_comps(a);
        return;
    }
    if (a->st != SG_OK) {
        sg_log(SG_LOG_WARN, "takeover: %s; trying again in %llu ms", a->err,
               (unsigned long long)sg_store_lease_ms(e->store) / 4);
        drop_comps(a);
        return;
    }
    if (a->taken)
        sg_log(SG_LOG_WARN,
               "takeover: adopted %zu saga(s) and event(s) of sagad whose lease expired", a->taken);
    for (size_t i = 0; i < a->ncomps; i++) {
        if (sg__comp_known(e, &a->comps[i])) continue; /* ours already, being delivered */
        sg__comp_deliver(e, sg__ev_create(e, &a->comps[i]));
        memset(&a->comps[i], 0, sizeof a->comps[i]); /* taken */
    }
    drop_comps(a);
    if (a->taken) sg__recover_again(e);
    if (a->again) {
        a->again = 0;
        sg__lease_resync(e);
    }
}

static void run(sg_adopter *a, int resync)
{
    sg_engine *e = a->e;
    if (e->halted || !sg__lease_held(e)) return;
    if (a->busy) {
        a->again |= resync;
        return;
    }
    a->busy = a->reading = 1;
    a->resync = resync;
    a->taken = 0;
    a->err[0] = '\0';
    a->work.data = a;
    if (uv_queue_work(e->loop, &a->work, adopt_work, after_adopt) != 0)
        a->busy = a->reading = 0; /* the next tick tries again */
}

static void on_tick(uv_timer_t *t)
{
    sg_adopter *a = t->data;
    sg_engine *e = a->e;
    if (e->halted) return;
    int lapsed = e->lease_lapsed;
    if (!sg__lease_held(e)) return; /* also notices a loss while idle */
    if (lapsed) {
        e->lease_lapsed = 0;
        sg_log(SG_LOG_INFO, "lease %s renewed again: what waited for it starts", e->owner);
        sg__saga_lease_resume(e);
        sg__comp_lease_resume(e);
    }
    run(a, 0);
}

void sg__lease_resync(sg_engine *e)
{
    if (e->adopter) run(e->adopter, 1);
}

sg_status sg__lease_start(sg_engine *e, char *err, size_t errlen)
{
    if (!sg_store_shared(e->store)) return SG_OK;
    sg_store_owner(e->store, e->owner);
    snprintf(e->owner_header, sizeof e->owner_header, "X-Saga-Owner: %s", e->owner);
    sg_adopter *a = sg_xcalloc(1, sizeof *a);
    a->e = e;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    sg_status st = sg_store_reader_open(e->store, &a->reader, err, errlen);
    if (st != SG_OK) goto fail;
    if (uv_timer_init(e->loop, &a->tick) != 0) goto fail_reader;
    a->tick.data = a;
    uint64_t every = sg_store_lease_ms(e->store) / 4;
    if (every < TICK_MIN_MS) every = TICK_MIN_MS;
    /* The first tick at once: a process that starts after another died
     * takes its sagas over as soon as their lease has expired. */
    uv_timer_start(&a->tick, on_tick, 0, every);
    e->adopter = a;
    sg_log(SG_LOG_INFO, "store lease %s: %llu ms, renewed every %llu ms", e->owner,
           (unsigned long long)sg_store_lease_ms(e->store),
           (unsigned long long)sg_store_lease_ms(e->store) / 3);
    return SG_OK;
fail_reader:
    snprintf(err, errlen, "cannot start the lease timer");
    st = SG_EIO;
    sg_store_reader_close(a->reader);
fail:
    adopter_free(a);
    return st;
}

void sg__lease_halt(sg_engine *e)
{
    sg_adopter *a = e->adopter;
    if (!a) return;
    uv_timer_stop(&a->tick);
    /* The store closes next: a read in flight must end first. */
    pthread_mutex_lock(&a->mu);
    while (a->reading)
        pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    sg_store_reader_close(a->reader);
    a->reader = NULL;
}

static void on_tick_closed(uv_handle_t *h)
{
    sg_adopter *a = h->data;
    if (a->busy) { /* after_adopt still to come: it frees a */
        a->e = NULL;
        return;
    }
    adopter_free(a);
}

void sg__lease_free(sg_engine *e)
{
    sg_adopter *a = e->adopter;
    e->adopter = NULL;
    if (!a) return;
    uv_close((uv_handle_t *)&a->tick, on_tick_closed);
}
