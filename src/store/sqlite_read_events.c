/* The SQLite backend's reads of the outbox (events and compensations:
 * recovery loads, the operator's listing, one event) and of the stored
 * definition versions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "sqlite_int.h"

static void row_to_event(sqlite3_stmt *st, sg_event_rec *e)
{
    memset(e, 0, sizeof *e);
    sg__sq_col_id(st, 0, e->id);
    sg__sq_col_id(st, 1, e->saga_id);
    e->topic = sg__sq_col_bytes(st, 2, NULL);
    e->target = sg__sq_col_bytes(st, 3, NULL);
    e->payload = sg__sq_col_bytes(st, 4, &e->payload_len);
    e->created_us = sqlite3_column_int64(st, 5);
    e->deadline_us = sqlite3_column_int64(st, 6);
    e->compensation = sqlite3_column_int(st, 7);
    e->step_index = sqlite3_column_int(st, 8);
    e->status = (sg_event_status)sqlite3_column_int(st, 9);
    e->attempts = sqlite3_column_int(st, 10);
    e->last_error = sg__sq_col_bytes(st, 11, NULL);
    e->updated_us = sqlite3_column_int64(st, 12);
    e->method = sg__sq_col_bytes(st, 13, NULL);
    e->headers = sg__sq_col_bytes(st, 14, NULL);
    e->timeout_ms = (long)sqlite3_column_int64(st, 15);
}

sg_status sg__sq_collect_events(rd *k, int q, sqlite3_stmt *st, int bind_rc, size_t max,
                                sg_event_rec **v, size_t *n)
{
    size_t cap = 0;
    int rc = bind_rc;
    while (rc == SQLITE_OK && (max == 0 || *n < max) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *v = sg_xrealloc(*v, cap * sizeof **v);
        }
        row_to_event(st, &(*v)[(*n)++]);
        rc = SQLITE_OK;
    }
    sg_status res = rc == SQLITE_OK || rc == SQLITE_DONE ? SG_OK : sg__sq_rd_fail(k, q);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

/* Runs event query q (no parameters) and hands each row to cb as a heap
 * record it owns. */
static sg_status load_events(sg_store_breader *r, int q, void (*cb)(void *arg, sg_event_rec *ev),
                             void *arg, char *err, size_t errlen)
{
    rd k = {&r->c, err, errlen};
    sg_event_rec *v = NULL;
    size_t n = 0;
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, q);
    if (!st) return SG_EIO;
    if (sg__sq_collect_events(&k, q, st, SQLITE_OK, 0, &v, &n) != SG_OK) {
        sg_store_free_events(v, n);
        return SG_EIO;
    }
    sg_store_hand_events(v, n, cb, arg);
    return SG_OK;
}

sg_status sg__sq_load_pending_events(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                     void *arg, char *err, size_t errlen)
{
    return load_events(r, Q_PENDING_EVENTS, cb, arg, err, errlen);
}

sg_status sg__sq_has_orphans(sg_store_breader *r, int *yes, char *err, size_t errlen)
{
    rd k = {&r->c, err, errlen};
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, Q_ORPHANS_EXIST);
    if (!st) return SG_EIO;
    int rc = sqlite3_step(st);
    sg_status res =
        rc == SQLITE_ROW || rc == SQLITE_DONE ? SG_OK : sg__sq_rd_fail(&k, Q_ORPHANS_EXIST);
    *yes = rc == SQLITE_ROW;
    sqlite3_reset(st);
    return res;
}

sg_status sg__sq_load_compensations(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                    void *arg, char *err, size_t errlen)
{
    return load_events(r, Q_COMPENSATIONS, cb, arg, err, errlen);
}

sg_status sg__sq_list_events(sg_store_breader *r, const sg_list_query *q, sg_event_rec **out,
                             size_t *n, char next[SG_CURSOR_MAX], char *err, size_t errlen)
{
    static const int qs[6] = {Q_EVENTS,          Q_EVENTS_AFTER, Q_EVENTS_ST,
                              Q_EVENTS_ST_AFTER, Q_EVENTS_OPEN,  Q_EVENTS_OPEN_AFTER};
    rd k = {&r->c, err, errlen};
    sg_event_rec *v = NULL;
    size_t got = 0;
    int qi, rc;
    sg_status res;
    sg_list_query eq = *q;
    eq.type = NULL; /* events have no type (and qs no type half) */
    sqlite3_stmt *st = sg__sq_page_stmt(&k, &eq, qs, &qi, &rc, &res);
    if (!st) return res;
    if (sg__sq_collect_events(&k, qi, st, rc, q->limit + 1, &v, &got) != SG_OK) {
        sg_store_free_events(v, got);
        return SG_EIO;
    }
    if (got > q->limit) {
        sg_event_rec_free(&v[q->limit]);
        got = q->limit;
        sg_store_cursor_format(next, v[got - 1].created_us, v[got - 1].id);
    }
    *out = v;
    *n = got;
    return SG_OK;
}

sg_status sg__sq_get_event(sg_store_breader *r, const char *id, sg_event_rec *out, char *err,
                           size_t errlen)
{
    rd k = {&r->c, err, errlen};
    sg_status res = SG_EIO;
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, Q_GET_EVENT);
    if (!st) return SG_EIO;
    int rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_to_event(st, out);
        res = SG_OK;
    } else if (rc == SQLITE_DONE) {
        res = SG_ENOTFOUND;
    } else {
        sg__sq_rd_fail(&k, Q_GET_EVENT);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

/* ---- definitions ------------------------------------------------------------ */

typedef struct def_row {
    char *name; /* owned */
    int version;
    char *body; /* owned */
} def_row;

sg_status sg__sq_load_defs(sg_store_breader *r, sg_def_row_cb cb, void *arg, char *err,
                           size_t errlen)
{
    rd k = {&r->c, err, errlen};
    def_row *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, Q_DEFS);
    if (!st) return SG_EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = sg_xrealloc(v, cap * sizeof *v);
        }
        /* Both columns are NOT NULL: never a NULL string for cb. */
        v[n].name = sg__sq_col_bytes(st, 0, NULL);
        v[n].version = sqlite3_column_int(st, 1);
        v[n].body = sg__sq_col_bytes(st, 2, NULL);
        n++;
    }
    sg_status res = rc == SQLITE_DONE ? SG_OK : sg__sq_rd_fail(&k, Q_DEFS);
    sqlite3_reset(st);
    /* Callbacks once the statement is done, so they may use the reader;
     * none on failure. */
    for (size_t i = 0; i < n; i++) {
        if (res == SG_OK) cb(arg, v[i].name, v[i].version, v[i].body);
        free(v[i].name);
        free(v[i].body);
    }
    free(v);
    return res;
}

sg_status sg__sq_count_events(sg_store_breader *r, uint64_t counts[SG_EVENT_STATUSES], char *err,
                              size_t errlen)
{
    rd k = {&r->c, err, errlen};
    sqlite3_stmt *st = sg__sq_rd_stmt(&k, Q_OUTBOX_COUNTS);
    if (!st) return SG_EIO;
    int rc;
    uint64_t all = 0, open = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int status = sqlite3_column_int(st, 0);
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 1);
        if (status == -1) {
            all = n;
        } else if (status >= 0 && status < SG_EVENT_STATUSES && status != SG_SQ_SETTLED) {
            counts[status] = n;
            open += n;
        }
    }
    counts[SG_SQ_SETTLED] = all > open ? all - open : 0;
    sg_status res = rc == SQLITE_DONE ? SG_OK : sg__sq_rd_fail(&k, Q_OUTBOX_COUNTS);
    sqlite3_reset(st);
    return res;
}
