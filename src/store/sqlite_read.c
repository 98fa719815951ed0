/* The SQLite backend's readers: their connections, the column and
 * statement helpers every read shares, and the saga reads (a saga with its
 * steps and their compensations, lists by keyset cursor, recovery loads).
 * The outbox and definitions reads are in sqlite_read_events.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sg/alloc.h"
#include "sqlite_int.h"

/* ---- reading columns -------------------------------------------------------- */

static void oom_abort(void)
{
    fprintf(stderr, "sagad: out of memory in SQLite\n");
    abort();
}

char *sg__sq_col_bytes(sqlite3_stmt *st, int i, size_t *len)
{
    size_t n = 0;
    char *out = NULL;
    int type = sqlite3_column_type(st, i);
    if (type != SQLITE_NULL) {
        /* Fetch the pointer first, then the size (SQLite's documented
         * order), as text and blob as the column was stored. */
        const void *p = type == SQLITE_BLOB ? sqlite3_column_blob(st, i)
                                            : (const void *)sqlite3_column_text(st, i);
        n = (size_t)sqlite3_column_bytes(st, i);
        if (!p && n) oom_abort();
        if (!p && sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM) oom_abort();
        out = sg_xmemdup(p, n);
    }
    if (len) *len = n;
    return out;
}

void sg__sq_col_id(sqlite3_stmt *st, int i, char out[SG_ID_LEN + 1])
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (n > SG_ID_LEN) n = SG_ID_LEN;
    if (n) memcpy(out, t, n);
    out[n] = '\0';
}

static void row_to_saga(sqlite3_stmt *st, sg_saga_rec *r)
{
    memset(r, 0, sizeof *r);
    sg__sq_col_id(st, 0, r->id);
    r->def_name = sg__sq_col_bytes(st, 1, NULL);
    r->request = sg__sq_col_bytes(st, 2, &r->request_len);
    r->idem_key = sg__sq_col_bytes(st, 3, NULL);
    r->status = (sg_saga_status)sqlite3_column_int(st, 4);
    r->comp_status = (sg_comp_status)sqlite3_column_int(st, 5);
    r->error = sg__sq_col_bytes(st, 6, NULL);
    r->created_us = sqlite3_column_int64(st, 7);
    r->updated_us = sqlite3_column_int64(st, 8);
    int64_t n = sqlite3_column_int64(st, 9);
    r->nsteps = n > 0 && n < 100000 ? (size_t)n : 0; /* a sane bound on a corrupt row */
    r->def_version = sqlite3_column_int(st, 10);
    /* Text before its length, as SQLite asks. */
    const char *tid = (const char *)sqlite3_column_text(st, 11);
    size_t tid_len = (size_t)sqlite3_column_bytes(st, 11);
    const char *tstate = (const char *)sqlite3_column_text(st, 13);
    size_t tstate_len = (size_t)sqlite3_column_bytes(st, 13);
    sg_store_set_trace(r, tid, tid_len, sqlite3_column_int64(st, 12), tstate, tstate_len);
}

/* ---- statements and read transactions ---------------------------------------- */

sg_status sg__sq_rd_fail(rd *k, int q)
{
    snprintf(k->err, k->errlen, "SQLite %s: %s", sg__sq_name(q), sqlite3_errmsg(k->c->db));
    return SG_EIO;
}

sqlite3_stmt *sg__sq_rd_stmt(rd *k, int q)
{
    return sg__sq_stmt(k->c, q, k->err, k->errlen);
}

/* Read transactions give the saga row and its steps one snapshot. */
static sg_status rd_begin(rd *k)
{
    if (sg__sq_run_simple(k->c, Q_BEGIN_R) == SQLITE_DONE) return SG_OK;
    return sg__sq_rd_fail(k, Q_BEGIN_R);
}

/* Ends the read transaction. Nothing was written and the rows are read,
 * so a failed COMMIT does not fail the call; but whatever happened, no
 * snapshot stays open: it would pin the WAL and stop checkpoints. */
static void rd_end(conn *c)
{
    if (sqlite3_get_autocommit(c->db)) return;
    (void)sg__sq_run_simple(c, Q_COMMIT);
    if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Fills r->steps from the steps table (r->nsteps already set). */
static sg_status load_steps(rd *k, sg_saga_rec *r)
{
    sqlite3_stmt *st = sg__sq_rd_stmt(k, Q_STEPS);
    sg_status res = SG_EIO;
    int rc;
    if (!st) return SG_EIO;
    r->steps = r->nsteps ? sg_xcalloc(r->nsteps, sizeof *r->steps) : NULL;
    rc = sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t idx = sqlite3_column_int64(st, 0);
        if (idx < 0 || (uint64_t)idx >= r->nsteps) continue; /* not part of this saga's shape */
        sg_step_rec *s = &r->steps[idx];
        sg_step_rec_free(s); /* (saga_id, idx) is unique, but be safe */
        s->name = sg__sq_col_bytes(st, 1, NULL);
        s->status = (sg_step_status)sqlite3_column_int(st, 2);
        s->attempts = sqlite3_column_int(st, 3);
        s->started_us = sqlite3_column_int64(st, 4);
        s->finished_us = sqlite3_column_int64(st, 5);
        s->next_us = sqlite3_column_int64(st, 6);
        s->error = sg__sq_col_bytes(st, 7, NULL);
        s->response = sg__sq_col_bytes(st, 8, &s->response_len);
    }
    if (rc == SQLITE_DONE) res = SG_OK;
out:
    if (res != SG_OK) sg__sq_rd_fail(k, Q_STEPS);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

/* Fills the compensation view of r's steps (r->steps loaded) from its
 * compensation events: rows come by step, oldest first, so a step with
 * several keeps its newest. One query per saga, through outbox_saga. */
static sg_status load_comps(rd *k, sg_saga_rec *r)
{
    sqlite3_stmt *st = sg__sq_rd_stmt(k, Q_COMPS);
    sg_status res = SG_EIO;
    int rc;
    if (!st) return SG_EIO;
    rc = sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t idx = sqlite3_column_int64(st, 0);
        if (idx < 0 || (uint64_t)idx >= r->nsteps) continue; /* no step of this saga */
        sg_comp_rec *c = &r->steps[idx].comp;
        free(c->error);
        c->present = 1;
        c->status = (sg_event_status)sqlite3_column_int(st, 1);
        c->attempts = sqlite3_column_int(st, 2);
        c->created_us = sqlite3_column_int64(st, 3);
        c->updated_us = sqlite3_column_int64(st, 4);
        c->error = sg__sq_col_bytes(st, 5, NULL);
        c->started_us = sqlite3_column_int64(st, 6);
    }
    if (rc == SQLITE_DONE) res = SG_OK;
out:
    if (res != SG_OK) sg__sq_rd_fail(k, Q_COMPS);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

/* Steps through saga query q and appends every row with its steps (and
 * with comps = 1 their compensation views) to *v (an owned, growing array
 * of *n). At most max rows; max 0 = all. */
static sg_status collect_sagas(rd *k, int q, sqlite3_stmt *st, int comps, sg_saga_rec **v,
                               size_t *n, size_t max)
{
    size_t cap = 0;
    sg_status res = SG_EIO;
    int rc = SQLITE_DONE;
    while ((max == 0 || *n < max) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *v = sg_xrealloc(*v, cap * sizeof **v);
        }
        row_to_saga(st, &(*v)[(*n)++]);
    }
    if (max != 0 && *n == max) rc = SQLITE_DONE;
    if (rc != SQLITE_DONE) {
        sg__sq_rd_fail(k, q);
        goto out;
    }
    /* Steps in a second pass: the saga statement is done by then. */
    sqlite3_reset(st);
    for (size_t i = 0; i < *n; i++) {
        if (load_steps(k, &(*v)[i]) != SG_OK) goto out;
        if (comps && load_comps(k, &(*v)[i]) != SG_OK) goto out;
    }
    res = SG_OK;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

/* Runs saga query q (st, its parameters bound by the caller; bind_rc is
 * the first bind failure) in one read transaction and collects up to max
 * rows (0 = all), with their compensation views if comps, into *v and
 * *n, which the caller frees even on failure. The bindings are cleared
 * either way. */
static sg_status read_sagas(rd *k, int q, sqlite3_stmt *st, int bind_rc, int comps, sg_saga_rec **v,
                            size_t *n, size_t max)
{
    sg_status res = SG_EIO;
    if (bind_rc != SQLITE_OK) {
        sg__sq_rd_fail(k, q);
    } else if (rd_begin(k) == SG_OK) {
        res = collect_sagas(k, q, st, comps, v, n, max);
        rd_end(k->c);
    }
    sqlite3_clear_bindings(st);
    return res;
}

/* ---- the backend's read methods ------------------------------------------------ */

sg_status sg__sq_reader_open(sg_store_backend *be, sg_store_breader **out, char *err, size_t errlen)
{
    *out = NULL;
    /* Not another file that took the database's path (a missing one fails
     * to open below). */
    struct stat sb;
    if (stat(be->path, &sb) == 0 && sg__sq_same_file(be, err, errlen) != SG_OK) return SG_EIO;
    sg_store_breader *r = sg_xcalloc(1, sizeof *r);
    if (sg__sq_conn_open(&r->c, be, 1, err, errlen) != SG_OK) {
        free(r);
        return SG_EIO;
    }
    *out = r;
    return SG_OK;
}

void sg__sq_reader_close(sg_store_breader *r)
{
    if (!r) return;
    sg__sq_conn_close(&r->c);
    free(r);
}

/* One saga by a text key (id or idem_key). */
static sg_status get_one(sg_store_breader *r, int q, const char *key, sg_saga_rec *out, char *err,
                         size_t errlen)
{
    rd k = {&r->c, err, errlen};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, q);
    if (!st) return SG_EIO;
    int rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sg_status res = read_sagas(&k, q, st, rc, 1, &v, &n, 1);
    if (res != SG_OK || n == 0) {
        sg_store_free_sagas(v, n);
        return res != SG_OK ? res : SG_ENOTFOUND;
    }
    *out = v[0]; /* the record's members move to the caller */
    free(v);
    return SG_OK;
}

sg_status sg__sq_get(sg_store_breader *r, const char *id, sg_saga_rec *out, char *err,
                     size_t errlen)
{
    return get_one(r, Q_GET, id, out, err, errlen);
}

sg_status sg__sq_get_by_idem(sg_store_breader *r, const char *key, sg_saga_rec *out, char *err,
                             size_t errlen)
{
    return get_one(r, Q_GET_IDEM, key, out, err, errlen);
}

sqlite3_stmt *sg__sq_page_stmt(rd *k, const sg_list_query *q, const int *qs, int *qi, int *rc,
                               sg_status *res)
{
    char cid[SG_ID_LEN + 1];
    int64_t cus = 0;
    int after = q->after != NULL;
    if (after && sg_store_cursor_parse(q->after, &cus, cid) != SG_OK) {
        snprintf(k->err, k->errlen, "malformed list cursor");
        *res = SG_EINVAL;
        return NULL;
    }
    int by = q->status < 0 ? 0 : q->status == SG_SQ_SETTLED ? 1 : 2;
    *qi = qs[(q->type != NULL) * 6 + by * 2 + after];
    sqlite3_stmt *st = sg__sq_rd_stmt(k, *qi);
    *res = SG_EIO;
    if (!st) return NULL;
    *rc = sqlite3_bind_int64(st, 1, (int64_t)q->limit + 1);
    if (*rc == SQLITE_OK && after) *rc = sqlite3_bind_int64(st, 2, cus);
    if (*rc == SQLITE_OK && after) *rc = sqlite3_bind_text(st, 3, cid, -1, SQLITE_TRANSIENT);
    if (*rc == SQLITE_OK && q->status >= 0) *rc = sqlite3_bind_int(st, 4, q->status);
    if (*rc == SQLITE_OK && q->type) *rc = sqlite3_bind_text(st, 5, q->type, -1, SQLITE_TRANSIENT);
    return st;
}

sg_status sg__sq_list(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                      char next[SG_CURSOR_MAX], char *err, size_t errlen)
{
    static const int qs[12] = {Q_LIST,      Q_LIST_AFTER,      Q_LIST_ST,     Q_LIST_ST_AFTER,
                               Q_LIST_OPEN, Q_LIST_OPEN_AFTER, Q_LIST_T,      Q_LIST_T_AFTER,
                               Q_LIST_ST_T, Q_LIST_ST_T_AFTER, Q_LIST_OPEN_T, Q_LIST_OPEN_T_AFTER};
    rd k = {&r->c, err, errlen};
    sg_saga_rec *v = NULL;
    size_t got = 0;
    int qi, rc;
    sg_status res;
    sqlite3_stmt *st = sg__sq_page_stmt(&k, q, qs, &qi, &rc, &res);
    if (!st) return res;
    res = read_sagas(&k, qi, st, rc, 1, &v, &got, q->limit + 1);
    if (res != SG_OK) {
        sg_store_free_sagas(v, got);
        return res;
    }
    if (got > q->limit) {
        sg_saga_rec_free(&v[q->limit]);
        got = q->limit;
        sg_store_cursor_format(next, v[got - 1].created_us, v[got - 1].id);
    }
    *out = v;
    *n = got;
    return SG_OK;
}

sg_status sg__sq_load_unfinished(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                 void *arg, char *err, size_t errlen)
{
    rd k = {&r->c, err, errlen};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, Q_UNFINISHED);
    if (!st) return SG_EIO;
    /* Recovery needs no compensation views: the outbox is loaded apart. */
    sg_status res = read_sagas(&k, Q_UNFINISHED, st, SQLITE_OK, 0, &v, &n, 0);
    if (res != SG_OK) {
        sg_store_free_sagas(v, n);
        return res;
    }
    /* Callbacks run outside the read transaction, so they may use the
     * reader themselves. Each takes a heap record it must free. */
    sg_store_hand_sagas(v, n, cb, arg);
    return SG_OK;
}

sg_status sg__sq_load_unfinished_page(sg_store_breader *r, const char *after, size_t limit,
                                      sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX],
                                      char *err, size_t errlen)
{
    rd k = {&r->c, err, errlen};
    char cid[SG_ID_LEN + 1] = "";
    int64_t cus = INT64_MIN;
    if (after && sg_store_cursor_parse(after, &cus, cid) != SG_OK) {
        snprintf(err, errlen, "malformed recovery cursor");
        return SG_EINVAL;
    }
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, Q_UNFINISHED_PAGE);
    sqlite3_stmt *es = sg__sq_rd_stmt(&k, Q_STEP_EVENTS);
    if (!st || !es) return SG_EIO;
    int rc = sqlite3_bind_int64(st, 1, cus);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 2, cid, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 3, (int64_t)limit);
    sg_saga_rec *v = NULL;
    size_t n = 0;
    sg_status res = read_sagas(&k, Q_UNFINISHED_PAGE, st, rc, 0, &v, &n, limit);
    /* Each saga's step events (few: one per publish step at most). */
    sg_event_rec **evs = n ? sg_xcalloc(n, sizeof *evs) : NULL;
    size_t *nevs = n ? sg_xcalloc(n, sizeof *nevs) : NULL;
    for (size_t i = 0; i < n && res == SG_OK; i++) {
        rc = sqlite3_bind_text(es, 1, v[i].id, -1, SQLITE_TRANSIENT);
        res = sg__sq_collect_events(&k, Q_STEP_EVENTS, es, rc, 0, &evs[i], &nevs[i]);
    }
    if (res == SG_OK && n == limit) sg_store_cursor_format(next, v[n - 1].created_us, v[n - 1].id);
    return sg_store_hand_page(res, v, evs, nevs, n, cb, arg);
}
