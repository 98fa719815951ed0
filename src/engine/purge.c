/* Retention (--retention S, design §7 operations): settled sagas whose
 * last change is more than S seconds old are deleted with their steps
 * and outbox rows (the rule: sg_write_purge in sg/store.h).
 *
 * A one-shot timer on the loop (which owns it) starts a round; a round is
 * a series of store writes of one chunk each (SG_PURGE_CHUNK sagas at
 * most), the next submitted when the last one committed full, so a purge
 * never holds the writer for long and the sagas' own writes are grouped
 * in between. A round that ends (a chunk not full, or a failure) arms the
 * timer for the next one, min(S / 10, 60 s) later. One write in flight at
 * a time. */
#include <stdio.h>
#include <stdlib.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/metrics.h"
#include "sg/util.h"

#define SG_PURGE_CHUNK 1000      /* sagas per transaction */
#define SG_PURGE_EVERY_MAX 60000 /* ms between rounds at most */
#define SG_PURGE_EVERY_MIN 100   /* ... and at least */

/* Owned by the engine, or by its write in flight once the engine is gone
 * (its completion then frees it, as lease.c's adopter). */
struct sg_purger {
    sg_engine *e; /* NULL once the engine is gone */
    uv_timer_t timer;
    int busy;      /* a purge write is in flight: on_done has not run */
    size_t purged; /* that write's count (sg_write_purge's out parameter) */
    size_t round;  /* sagas deleted in the round so far */
};

static uint64_t every_ms(const sg_engine *e)
{
    uint64_t ms = (uint64_t)e->opt.retention_s * 100; /* S / 10, in ms */
    if (ms > SG_PURGE_EVERY_MAX) ms = SG_PURGE_EVERY_MAX;
    return ms < SG_PURGE_EVERY_MIN ? SG_PURGE_EVERY_MIN : ms;
}

static void on_timer(uv_timer_t *t);

/* The round is over: its log line (only when it deleted something) and
 * the timer for the next. */
static void end_round(sg_purger *p)
{
    sg_engine *e = p->e;
    if (p->round)
        sg_log(SG_LOG_INFO, "retention: deleted %zu settled saga(s) last changed over %ld s ago",
               p->round, e->opt.retention_s);
    p->round = 0;
    if (!e->halted) uv_timer_start(&p->timer, on_timer, every_ms(e), 0);
}

static void submit_chunk(sg_purger *p);

static void on_done(void *arg, sg_status st)
{
    sg_purger *p = arg;
    p->busy = 0;
    if (!p->e) { /* the engine is gone: the timer's close callback ran already */
        free(p);
        return;
    }
    if (st != SG_OK) {
        sg_log(SG_LOG_WARN, "retention: purge failed (%s); trying again in %llu ms",
               sg_status_text(st), (unsigned long long)every_ms(p->e));
        end_round(p);
        return;
    }
    p->round += p->purged;
    sg_metrics_sagas_purged(p->purged);
    if (p->purged == SG_PURGE_CHUNK && !p->e->halted)
        submit_chunk(p); /* more may be due: the next chunk at once */
    else
        end_round(p);
}

static void submit_chunk(sg_purger *p)
{
    sg_engine *e = p->e;
    if (e->halted || e->fenced) return; /* a lost lease: the process stops */
    sg_write *w = sg_write_create();
    int64_t before = sg_now_us() - (int64_t)e->opt.retention_s * 1000000;
    sg_write_purge(w, before, SG_PURGE_CHUNK, &p->purged);
    p->busy = 1;
    if (sg_store_submit(e->store, w, on_done, p) != SG_OK) {
        p->busy = 0; /* the store is closing: cb will not run */
        p->round = 0;
    }
}

static void on_timer(uv_timer_t *t)
{
    sg_purger *p = t->data;
    if (!p->busy) submit_chunk(p);
}

sg_status sg__purge_start(sg_engine *e, char *err, size_t errlen)
{
    if (e->opt.retention_s <= 0) return SG_OK; /* keep everything */
    sg_purger *p = sg_xcalloc(1, sizeof *p);
    p->e = e;
    if (uv_timer_init(e->loop, &p->timer) != 0) {
        snprintf(err, errlen, "cannot start the retention timer");
        free(p);
        return SG_EIO;
    }
    p->timer.data = p;
    e->purger = p;
    /* The first round soon after start: a store that grew while sagad was
     * down (or ran without --retention) starts shrinking at once. */
    uv_timer_start(&p->timer, on_timer, SG_PURGE_EVERY_MIN, 0);
    sg_log(SG_LOG_INFO,
           "retention: settled sagas are deleted %ld s after their last change (checked every "
           "%llu ms); an Idempotency-Key is remembered that long",
           e->opt.retention_s, (unsigned long long)every_ms(e));
    return SG_OK;
}

void sg__purge_halt(sg_engine *e)
{
    if (e->purger) uv_timer_stop(&e->purger->timer);
}

static void on_timer_closed(uv_handle_t *h)
{
    sg_purger *p = h->data;
    if (p->busy) { /* on_done still to come (the store's close runs it): it frees p */
        p->e = NULL;
        return;
    }
    free(p);
}

void sg__purge_free(sg_engine *e)
{
    sg_purger *p = e->purger;
    e->purger = NULL;
    if (p) uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}
