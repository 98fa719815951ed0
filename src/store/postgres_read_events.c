/* The PostgreSQL backend's reads of the outbox (events and compensations:
 * recovery loads, the operator's listing, one event) and of the stored
 * definition versions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_int.h"
#include "sg/alloc.h"

static void row_to_event(const PGresult *res, int i, sg_event_rec *e)
{
    memset(e, 0, sizeof *e);
    sg__pg_id(res, i, 0, e->id);
    sg__pg_id(res, i, 1, e->saga_id);
    e->topic = sg__pg_bytes(res, i, 2, NULL);
    e->target = sg__pg_bytes(res, i, 3, NULL);
    e->payload = sg__pg_bytes(res, i, 4, &e->payload_len);
    e->created_us = sg__pg_int(res, i, 5);
    e->deadline_us = sg__pg_int(res, i, 6);
    e->compensation = (int)sg__pg_int(res, i, 7);
    e->step_index = (int)sg__pg_int(res, i, 8);
    e->status = (sg_event_status)sg__pg_int(res, i, 9);
    e->attempts = (int)sg__pg_int(res, i, 10);
    e->last_error = sg__pg_bytes(res, i, 11, NULL);
    e->updated_us = sg__pg_int(res, i, 12);
    e->method = sg__pg_bytes(res, i, 13, NULL);
    e->headers = sg__pg_bytes(res, i, 14, NULL);
    e->timeout_ms = (long)sg__pg_int(res, i, 15);
}

/* Runs event query q and appends up to max rows (0 = all) to *v, *n. */
sg_status sg__pg_collect_events(rd *k, int q, const params *p, size_t max, sg_event_rec **v,
                                size_t *n)
{
    PGresult *res = sg__pg_rd_exec(k, q, p);
    if (!res) return SG_EIO;
    size_t rows = (size_t)PQntuples(res);
    if (max && rows > max) rows = max;
    if (rows) *v = sg_xrealloc(*v, (*n + rows) * sizeof **v);
    for (size_t i = 0; i < rows; i++)
        row_to_event(res, (int)i, &(*v)[(*n)++]);
    PQclear(res);
    return SG_OK;
}

static sg_status load_events(sg_store_breader *r, int q, void (*cb)(void *arg, sg_event_rec *ev),
                             void *arg, char *err, size_t errlen)
{
    rd k = {r, err, errlen};
    sg_event_rec *v = NULL;
    size_t n = 0;
    params p = {0};
    sg__pg_p_text(&p, 1, r->be->owner, strlen(r->be->owner)); /* this process's sagas' */
    if (sg__pg_collect_events(&k, q, &p, 0, &v, &n) != SG_OK) {
        sg_store_free_events(v, n);
        return SG_EIO;
    }
    sg_store_hand_events(v, n, cb, arg);
    return SG_OK;
}

sg_status sg__pg_load_pending_events(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                     void *arg, char *err, size_t errlen)
{
    return load_events(r, P_PENDING_EVENTS, cb, arg, err, errlen);
}

sg_status sg__pg_load_compensations(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                    void *arg, char *err, size_t errlen)
{
    return load_events(r, P_COMPENSATIONS, cb, arg, err, errlen);
}

sg_status sg__pg_has_orphans(sg_store_breader *r, int *yes, char *err, size_t errlen)
{
    rd k = {r, err, errlen};
    params p = {0};
    sg__pg_p_text(&p, 1, r->be->owner, strlen(r->be->owner));
    PGresult *res = sg__pg_rd_exec(&k, P_ORPHANS_EXIST, &p);
    *yes = res && PQntuples(res) > 0;
    PQclear(res);
    return res ? SG_OK : SG_EIO;
}

sg_status sg__pg_list_events(sg_store_breader *r, const sg_list_query *q, sg_event_rec **out,
                             size_t *n, char next[SG_CURSOR_MAX], char *err, size_t errlen)
{
    static const int qs[4] = {P_EVENTS, P_EVENTS_AFTER, P_EVENTS_ST, P_EVENTS_ST_AFTER};
    rd k = {r, err, errlen};
    sg_event_rec *v = NULL;
    size_t got = 0;
    int qi;
    params p = {0};
    char cid[SG_ID_LEN + 1];
    sg_list_query eq = *q;
    eq.type = NULL; /* events have no type */
    sg_status res = sg__pg_page_params(&k, &eq, qs, &qi, &p, cid);
    if (res != SG_OK) return res;
    if (sg__pg_collect_events(&k, qi, &p, q->limit + 1, &v, &got) != SG_OK) {
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

sg_status sg__pg_get_event(sg_store_breader *r, const char *id, sg_event_rec *out, char *err,
                           size_t errlen)
{
    rd k = {r, err, errlen};
    params p = {0};
    sg__pg_p_text(&p, 1, id, strlen(id));
    PGresult *res = sg__pg_rd_exec(&k, P_GET_EVENT, &p);
    if (!res) return SG_EIO;
    sg_status st = SG_ENOTFOUND;
    if (PQntuples(res) > 0) {
        row_to_event(res, 0, out);
        st = SG_OK;
    }
    PQclear(res);
    return st;
}

sg_status sg__pg_load_defs(sg_store_breader *r, sg_def_row_cb cb, void *arg, char *err,
                           size_t errlen)
{
    rd k = {r, err, errlen};
    PGresult *res = sg__pg_rd_exec(&k, P_DEFS, NULL);
    if (!res) return SG_EIO;
    /* Copies first: the callback may use the reader (and so this result's
     * connection) itself. */
    int n = PQntuples(res);
    char **names = n ? sg_xcalloc((size_t)n, sizeof *names) : NULL;
    char **bodies = n ? sg_xcalloc((size_t)n, sizeof *bodies) : NULL;
    int *versions = n ? sg_xcalloc((size_t)n, sizeof *versions) : NULL;
    for (int i = 0; i < n; i++) {
        names[i] = sg__pg_bytes(res, i, 0, NULL);
        versions[i] = (int)sg__pg_int(res, i, 1);
        bodies[i] = sg__pg_bytes(res, i, 2, NULL);
    }
    PQclear(res);
    for (int i = 0; i < n; i++) {
        cb(arg, names[i] ? names[i] : "", versions[i], bodies[i] ? bodies[i] : "");
        free(names[i]);
        free(bodies[i]);
    }
    free(names);
    free(bodies);
    free(versions);
    return SG_OK;
}

sg_status sg__pg_count_events(sg_store_breader *r, uint64_t counts[SG_EVENT_STATUSES], char *err,
                              size_t errlen)
{
    rd k = {r, err, errlen};
    PGresult *res = sg__pg_rd_exec(&k, P_OUTBOX_COUNTS, NULL);
    if (!res) return SG_EIO;
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t status = sg__pg_int(res, i, 0);
        if (status >= 0 && status < SG_EVENT_STATUSES)
            counts[status] = (uint64_t)sg__pg_int(res, i, 1);
    }
    PQclear(res);
    return SG_OK;
}
