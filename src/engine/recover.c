/* Start-up recovery: compensations go back to delivery, step events of
 * ended sagas are withdrawn, and unfinished sagas resume a page at a time,
 * at most as many as --max-inflight leaves room for, the next page read
 * off the loop (libuv's threadpool) as sagas end: any number of them
 * resumes in bounded memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/crash.h"
#include "sg/util.h"

#define PAGE_MAX 1000

typedef struct page_item {
    sg_saga_rec *rec;  /* owned */
    sg_event_rec *evs; /* owned array of nevs */
    size_t nevs;
    struct page_item *prev, *next;
} page_item;

struct sg_recovery {
    sg_engine *e;            /* NULL once the engine is gone */
    sg_store_reader *reader; /* owned; one user at a time: the loop or the work */
    char cursor[SG_CURSOR_MAX];
    char next[SG_CURSOR_MAX];
    int64_t start_us; /* sagas created since are not recovery's */
    size_t limit;
    int done;
    int busy; /* a page read is queued: after_page has not run */
    uv_work_t work;
    page_item *items; /* what the last read found */
    sg_status st;
    char err[256];
    pthread_mutex_t mu; /* guards reading, for halt */
    pthread_cond_t cv;
    int reading; /* the work function is running */
    size_t sagas, comps;
};

static void on_item(void *arg, sg_saga_rec *rec, sg_event_rec *evs, size_t nevs)
{
    sg_recovery *r = arg;
    page_item *it = sg_xcalloc(1, sizeof *it);
    it->rec = rec;
    it->evs = evs;
    it->nevs = nevs;
    DL_APPEND(r->items, it);
}

static void item_free(page_item *it)
{
    if (it->rec) sg_saga_rec_free(it->rec);
    free(it->rec);
    for (size_t i = 0; i < it->nevs; i++)
        sg_event_rec_free(&it->evs[i]);
    free(it->evs);
    free(it);
}

static void drop_items(sg_recovery *r)
{
    page_item *it, *tmp;
    DL_FOREACH_SAFE(r->items, it, tmp)
    {
        DL_DELETE(r->items, it);
        item_free(it);
    }
}

static void finish(sg_recovery *r)
{
    r->done = 1;
    sg_store_reader_close(r->reader);
    r->reader = NULL;
    if (r->e && (r->sagas || r->comps))
        sg_log(SG_LOG_INFO, "recovery: resumed %zu saga(s); %zu compensation event(s) pending",
               r->sagas, r->comps);
}

/* How many more sagas memory has room for now. */
static size_t room(sg_engine *e)
{
    if (e->nsagas >= e->opt.max_inflight || e->held_bytes >= e->opt.max_inflight_bytes) return 0;
    size_t n = e->opt.max_inflight - e->nsagas;
    return n > PAGE_MAX ? PAGE_MAX : n;
}

/* Resumes what the last read found; the step event of its running publish
 * step goes with each saga, and any older one is withdrawn. */
static void resume_items(sg_recovery *r)
{
    sg_engine *e = r->e;
    page_item *it, *tmp;
    DL_FOREACH_SAFE(r->items, it, tmp)
    {
        DL_DELETE(r->items, it);
        saga *live = NULL;
        HASH_FIND(hh, e->sagas, it->rec->id, strlen(it->rec->id), live);
        if (it->rec->created_us > r->start_us) r->done = 1; /* started here: not ours */
        if (live || r->done) {
            item_free(it);
            continue;
        }
        outbox_ev *pending = NULL;
        sg_write *w = NULL;
        for (size_t i = 0; i < it->nevs; i++) {
            if (i + 1 == it->nevs) {
                pending = sg__ev_create(e, &it->evs[i]); /* takes the members */
                continue;
            }
            if (!w) w = sg_write_create();
            sg_write_event_update(w, it->evs[i].id, SG_EVENT_WITHDRAWN, it->evs[i].attempts,
                                  "stale: a newer event of the same saga", sg_now_us());
            sg_event_rec_free(&it->evs[i]);
        }
        if (w) sg_store_submit(e->store, w, NULL, NULL);
        free(it->evs);
        it->evs = NULL;
        it->nevs = 0;
        sg_crash_point("recovery");
        r->sagas++;
        sg__saga_resume(e, it->rec, pending);
        free(it->rec);
        it->rec = NULL;
        item_free(it);
    }
}

static void read_page(uv_work_t *w)
{
    sg_recovery *r = w->data;
    r->st = sg_store_load_unfinished_page(r->reader, r->cursor, r->limit, on_item, r, r->next);
    if (r->st != SG_OK) snprintf(r->err, sizeof r->err, "%s", sg_store_reader_error(r->reader));
    pthread_mutex_lock(&r->mu);
    r->reading = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Takes up what one read returned. */
static void take_page(sg_recovery *r)
{
    if (r->st != SG_OK) {
        sg_log(SG_LOG_ERROR, "recovery: %s; the sagas not resumed yet resume at the next start",
               r->err);
        drop_items(r);
        finish(r);
        return;
    }
    memcpy(r->cursor, r->next, sizeof r->cursor);
    resume_items(r);
    if (!r->cursor[0]) r->done = 1;
    if (r->done) finish(r);
}

static void after_page(uv_work_t *w, int status)
{
    sg_recovery *r = w->data;
    (void)status;
    r->busy = 0;
    if (!r->e || r->e->halted) { /* halt closed the reader; destroy may be done */
        drop_items(r);
        if (!r->e) {
            pthread_cond_destroy(&r->cv);
            pthread_mutex_destroy(&r->mu);
            free(r);
        }
        return;
    }
    take_page(r);
    sg_engine *e = r->e;
    sg__recover_more(e);
    if (e->recover_again && r->done) sg__recover_again(e); /* frees r */
}

void sg__recover_more(sg_engine *e)
{
    sg_recovery *r = e->recovery;
    if (!r || r->done || r->busy || e->halted) return;
    size_t n = room(e);
    if (!n) return;
    r->limit = n;
    r->busy = r->reading = 1;
    r->work.data = r;
    if (uv_queue_work(e->loop, &r->work, read_page, after_page) != 0) {
        r->busy = r->reading = 0;
        sg_log(SG_LOG_ERROR, "recovery: cannot queue a read; the rest resumes at the next start");
        finish(r);
    }
}

static sg_recovery *recovery_new(sg_engine *e)
{
    sg_recovery *r = sg_xcalloc(1, sizeof *r);
    r->e = e;
    r->start_us = sg_now_us();
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    return r;
}

static void recovery_free(sg_recovery *r)
{
    drop_items(r);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void sg__recover_again(sg_engine *e)
{
    sg_recovery *r = e->recovery;
    e->recover_again = 1;
    if (e->halted || (r && (!r->done || r->busy))) return; /* after_page calls again */
    e->recover_again = 0;
    if (r) recovery_free(r);
    r = e->recovery = recovery_new(e);
    char err[256];
    if (sg_store_reader_open(e->store, &r->reader, err, sizeof err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "takeover: %s; the adopted sagas resume at the next start", err);
        finish(r);
        return;
    }
    sg__recover_more(e); /* pages are read off the loop, as room frees up */
}

static void on_compensation(void *arg, sg_event_rec *rec)
{
    sg_recovery *r = arg;
    outbox_ev *ev = sg__ev_create(r->e, rec);
    free(rec);
    r->comps++;
    sg__comp_deliver(r->e, ev);
}

sg_status sg__recover_start(sg_engine *e, char *err, size_t errlen)
{
    sg_recovery *r = recovery_new(e);
    e->recovery = r;
    sg_status st = sg_store_reader_open(e->store, &r->reader, err, errlen);
    if (st != SG_OK) goto fail;
    st = sg_store_load_compensations(r->reader, on_compensation, r);
    if (st != SG_OK) goto fail_read;
    /* Settled with their sagas: nothing may deliver them any more. Written
     * only when there are some: a start-up that finds nothing to fix
     * writes nothing. */
    int orphans = 0;
    st = sg_store_has_orphans(r->reader, &orphans);
    if (st != SG_OK) goto fail_read;
    if (orphans) {
        sg_write *w = sg_write_create();
        sg_write_withdraw_orphans(w);
        if (sg_store_commit_sync(e->store, w) != SG_OK)
            sg_log(SG_LOG_WARN, "recovery: could not withdraw the step events of ended sagas");
    }
    /* The first page now, before the loop runs; the rest as room frees. */
    r->limit = room(e) ? room(e) : 1;
    st = sg_store_load_unfinished_page(r->reader, NULL, r->limit, on_item, r, r->next);
    if (st != SG_OK) goto fail_read;
    take_page(r);
    return SG_OK;
fail_read:
    snprintf(err, errlen, "%s", sg_store_reader_error(r->reader));
fail:
    drop_items(r);
    finish(r);
    return st;
}

void sg__recover_halt(sg_engine *e)
{
    sg_recovery *r = e->recovery;
    if (!r) return;
    /* The store closes next: a read in flight must end first. */
    pthread_mutex_lock(&r->mu);
    while (r->reading)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    if (!r->done) {
        sg_store_reader_close(r->reader);
        r->reader = NULL;
        r->done = 1;
    }
}

void sg__recover_free(sg_engine *e)
{
    sg_recovery *r = e->recovery;
    e->recovery = NULL;
    if (!r) return;
    if (r->busy) { /* after_page still to come: it frees r */
        r->e = NULL;
        return;
    }
    recovery_free(r);
}
