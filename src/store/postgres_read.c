/* The PostgreSQL backend's readers: each its own connection (made again on
 * the call after one was lost), prepared statements, binary results
 * decoded into the same records SQLite's reader gives. A saga is read with
 * its steps in one REPEATABLE READ READ ONLY transaction, so the row and
 * its steps are one snapshot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_int.h"
#include "sg/alloc.h"

/* ---- columns (binary) -------------------------------------------------- */

int64_t sg__pg_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) return 0;
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
    int n = PQgetlength(res, row, col);
    uint64_t u = 0;
    for (int i = 0; i < n && i < 8; i++)
        u = (u << 8) | p[i];
    if (n == 4) return (int32_t)(uint32_t)u; /* an INTEGER (SELECT 1) */
    return (int64_t)u;
}

char *sg__pg_bytes(const PGresult *res, int row, int col, size_t *len)
{
    size_t n = 0;
    char *out = NULL;
    if (!PQgetisnull(res, row, col)) {
        n = (size_t)PQgetlength(res, row, col);
        out = sg_xmemdup(PQgetvalue(res, row, col), n);
    }
    if (len) *len = n;
    return out;
}

void sg__pg_id(const PGresult *res, int row, int col, char out[SG_ID_LEN + 1])
{
    size_t n = PQgetisnull(res, row, col) ? 0 : (size_t)PQgetlength(res, row, col);
    if (n > SG_ID_LEN) n = SG_ID_LEN;
    if (n) memcpy(out, PQgetvalue(res, row, col), n);
    out[n] = '\0';
}

static void row_to_saga(const PGresult *res, int i, sg_saga_rec *r)
{
    memset(r, 0, sizeof *r);
    sg__pg_id(res, i, 0, r->id);
    r->def_name = sg__pg_bytes(res, i, 1, NULL);
    r->request = sg__pg_bytes(res, i, 2, &r->request_len);
    r->idem_key = sg__pg_bytes(res, i, 3, NULL);
    r->status = (sg_saga_status)sg__pg_int(res, i, 4);
    r->comp_status = (sg_comp_status)sg__pg_int(res, i, 5);
    r->error = sg__pg_bytes(res, i, 6, NULL);
    r->created_us = sg__pg_int(res, i, 7);
    r->updated_us = sg__pg_int(res, i, 8);
    int64_t n = sg__pg_int(res, i, 9);
    r->nsteps = n > 0 && n < 100000 ? (size_t)n : 0; /* a sane bound on a corrupt row */
    r->def_version = (int)sg__pg_int(res, i, 10);
    size_t idn = 0, stn = 0;
    char *id = sg__pg_bytes(res, i, 11, &idn), *state = sg__pg_bytes(res, i, 13, &stn);
    sg_store_set_trace(r, id, idn, sg__pg_int(res, i, 12), state, stn);
    free(id);
    free(state);
}

/* ---- statements ---------------------------------------------------------- */

/* Runs statement q with p (NULL: none); the result (rows or a command's
 * status) is the caller's to PQclear. NULL on failure, with err set; a
 * lost connection is dropped, and the next call connects again. */
PGresult *sg__pg_rd_exec(rd *k, int q, const params *p)
{
    pgc *c = &k->r->c;
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        if (sg__pg_connect(c, k->r->be, 0, k->err, k->errlen) != SG_OK) return NULL;
    }
    if (sg__pg_prepare(c, q, k->err, k->errlen) != 0) {
        if (PQstatus(c->pg) != CONNECTION_OK) sg__pg_disconnect(c);
        return NULL;
    }
    char name[16];
    snprintf(name, sizeof name, "q%d", q);
    int n = (int)strlen(sg__pg_params(q));
    PGresult *res =
        PQexecPrepared(c->pg, name, n, p ? p->v : NULL, p ? p->len : NULL, p ? p->fmt : NULL, 1);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return res;
    char m[200];
    sg__pg_msg(m, sizeof m, c->pg, res);
    snprintf(k->err, k->errlen, "PostgreSQL %s: %s", sg__pg_name(q), m);
    PQclear(res);
    if (PQstatus(c->pg) != CONNECTION_OK) sg__pg_disconnect(c);
    return NULL;
}

static sg_status rd_begin(rd *k)
{
    PGresult *res = sg__pg_rd_exec(k, P_BEGIN_R, NULL);
    PQclear(res);
    return res ? SG_OK : SG_EIO;
}

/* Ends the read transaction, whatever happened inside. */
static void rd_end(rd *k)
{
    PGconn *pg = k->r->c.pg;
    if (!pg || PQstatus(pg) != CONNECTION_OK || PQtransactionStatus(pg) == PQTRANS_IDLE) return;
    PGresult *res = PQexec(pg, PQtransactionStatus(pg) == PQTRANS_INTRANS ? "COMMIT" : "ROLLBACK");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) sg__pg_disconnect(&k->r->c);
    PQclear(res);
}

/* ---- sagas ------------------------------------------------------------------ */

static sg_status load_steps(rd *k, sg_saga_rec *r, int comps)
{
    params p = {0};
    sg__pg_p_text(&p, 1, r->id, strlen(r->id));
    PGresult *res = sg__pg_rd_exec(k, P_STEPS, &p);
    if (!res) return SG_EIO;
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t idx = sg__pg_int(res, i, 0);
        if (idx < 0 || (uint64_t)idx >= r->nsteps) continue; /* not part of this saga's shape */
        sg_step_rec *s = &r->steps[idx];
        sg_step_rec_free(s);
        s->name = sg__pg_bytes(res, i, 1, NULL);
        s->status = (sg_step_status)sg__pg_int(res, i, 2);
        s->attempts = (int)sg__pg_int(res, i, 3);
        s->started_us = sg__pg_int(res, i, 4);
        s->finished_us = sg__pg_int(res, i, 5);
        s->next_us = sg__pg_int(res, i, 6);
        s->error = sg__pg_bytes(res, i, 7, NULL);
        s->response = sg__pg_bytes(res, i, 8, &s->response_len);
    }
    PQclear(res);
    if (!comps) return SG_OK;
    /* Rows come by step, oldest first: a step with several keeps its newest. */
    res = sg__pg_rd_exec(k, P_COMPS, &p);
    if (!res) return SG_EIO;
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t idx = sg__pg_int(res, i, 0);
        if (idx < 0 || (uint64_t)idx >= r->nsteps) continue;
        sg_comp_rec *c = &r->steps[idx].comp;
        free(c->error);
        c->present = 1;
        c->status = (sg_event_status)sg__pg_int(res, i, 1);
        c->attempts = (int)sg__pg_int(res, i, 2);
        c->created_us = sg__pg_int(res, i, 3);
        c->updated_us = sg__pg_int(res, i, 4);
        c->error = sg__pg_bytes(res, i, 5, NULL);
        c->started_us = sg__pg_int(res, i, 6);
    }
    PQclear(res);
    return SG_OK;
}

/* Runs saga query q and appends up to max rows (0 = all), with their steps
 * (and compensation views if comps), to *v and *n, which the caller frees
 * even on failure. Inside the caller's read transaction. */
static sg_status collect_sagas(rd *k, int q, const params *p, int comps, sg_saga_rec **v, size_t *n,
                               size_t max)
{
    PGresult *res = sg__pg_rd_exec(k, q, p);
    if (!res) return SG_EIO;
    size_t rows = (size_t)PQntuples(res);
    if (max && rows > max) rows = max;
    if (rows) *v = sg_xrealloc(*v, (*n + rows) * sizeof **v);
    for (size_t i = 0; i < rows; i++) {
        sg_saga_rec *r = &(*v)[(*n)++];
        row_to_saga(res, (int)i, r);
        /* Now: sg_saga_rec_free expects nsteps of them, even on failure. */
        r->steps = r->nsteps ? sg_xcalloc(r->nsteps, sizeof *r->steps) : NULL;
    }
    PQclear(res);
    for (size_t i = *n - rows; i < *n; i++) {
        if (load_steps(k, &(*v)[i], comps) != SG_OK) return SG_EIO;
    }
    return SG_OK;
}

static sg_status read_sagas(rd *k, int q, const params *p, int comps, sg_saga_rec **v, size_t *n,
                            size_t max)
{
    if (rd_begin(k) != SG_OK) return SG_EIO;
    sg_status res = collect_sagas(k, q, p, comps, v, n, max);
    rd_end(k);
    return res;
}

/* ---- the backend's read methods ------------------------------------------------ */

sg_status sg__pg_reader_open(sg_store_backend *be, sg_store_breader **out, char *err, size_t errlen)
{
    *out = NULL;
    sg_store_breader *r = sg_xcalloc(1, sizeof *r);
    r->be = be;
    if (sg__pg_connect(&r->c, be, 0, err, errlen) != SG_OK) {
        free(r);
        return SG_EIO;
    }
    *out = r;
    return SG_OK;
}

void sg__pg_reader_close(sg_store_breader *r)
{
    if (!r) return;
    sg__pg_disconnect(&r->c);
    free(r);
}

static sg_status get_one(sg_store_breader *r, int q, const char *key, sg_saga_rec *out, char *err,
                         size_t errlen)
{
    rd k = {r, err, errlen};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    params p = {0};
    sg__pg_p_text(&p, 1, key, strlen(key));
    sg_status res = read_sagas(&k, q, &p, 1, &v, &n, 1);
    if (res != SG_OK || n == 0) {
        sg_store_free_sagas(v, n);
        return res != SG_OK ? res : SG_ENOTFOUND;
    }
    *out = v[0];
    free(v);
    return SG_OK;
}

sg_status sg__pg_get(sg_store_breader *r, const char *id, sg_saga_rec *out, char *err,
                     size_t errlen)
{
    return get_one(r, P_GET, id, out, err, errlen);
}

sg_status sg__pg_get_by_idem(sg_store_breader *r, const char *key, sg_saga_rec *out, char *err,
                             size_t errlen)
{
    return get_one(r, P_GET_IDEM, key, out, err, errlen);
}

/* The parameters of one keyset page ($1 limit + 1, $2 and $3 the cursor,
 * $4 status, $5 type) and the query of qs (see sqlite's page_stmt) for
 * them. SG_EINVAL for a malformed cursor. */
sg_status sg__pg_page_params(rd *k, const sg_list_query *q, const int *qs, int *qi, params *p,
                             char cid[SG_ID_LEN + 1])
{
    int64_t cus = 0;
    int after = q->after != NULL;
    if (after && sg_store_cursor_parse(q->after, &cus, cid) != SG_OK) {
        snprintf(k->err, k->errlen, "malformed list cursor");
        return SG_EINVAL;
    }
    *qi = qs[(q->type != NULL) * 4 + (q->status >= 0) * 2 + after];
    sg__pg_p_int(p, 1, (int64_t)q->limit + 1);
    if (after) {
        sg__pg_p_int(p, 2, cus);
        sg__pg_p_text(p, 3, cid, strlen(cid));
    }
    if (q->status >= 0) sg__pg_p_int(p, 4, q->status);
    if (q->type) sg__pg_p_text(p, 5, q->type, strlen(q->type));
    return SG_OK;
}

sg_status sg__pg_list(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                      char next[SG_CURSOR_MAX], char *err, size_t errlen)
{
    static const int qs[8] = {P_LIST,   P_LIST_AFTER,   P_LIST_ST,   P_LIST_ST_AFTER,
                              P_LIST_T, P_LIST_T_AFTER, P_LIST_ST_T, P_LIST_ST_T_AFTER};
    rd k = {r, err, errlen};
    sg_saga_rec *v = NULL;
    size_t got = 0;
    int qi;
    params p = {0};
    char cid[SG_ID_LEN + 1];
    sg_status res = sg__pg_page_params(&k, q, qs, &qi, &p, cid);
    if (res != SG_OK) return res;
    res = read_sagas(&k, qi, &p, 1, &v, &got, q->limit + 1);
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

sg_status sg__pg_load_unfinished(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                 void *arg, char *err, size_t errlen)
{
    rd k = {r, err, errlen};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    params p = {0};
    sg__pg_p_text(&p, 1, r->be->owner, strlen(r->be->owner)); /* this process's only */
    sg_status res = read_sagas(&k, P_UNFINISHED, &p, 0, &v, &n, 0);
    if (res != SG_OK) {
        sg_store_free_sagas(v, n);
        return res;
    }
    sg_store_hand_sagas(v, n, cb, arg);
    return SG_OK;
}

sg_status sg__pg_load_unfinished_page(sg_store_breader *r, const char *after, size_t limit,
                                      sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX],
                                      char *err, size_t errlen)
{
    rd k = {r, err, errlen};
    char cid[SG_ID_LEN + 1] = "";
    int64_t cus = INT64_MIN;
    if (after && sg_store_cursor_parse(after, &cus, cid) != SG_OK) {
        snprintf(err, errlen, "malformed recovery cursor");
        return SG_EINVAL;
    }
    params p = {0};
    sg__pg_p_int(&p, 1, cus);
    sg__pg_p_text(&p, 2, cid, strlen(cid));
    sg__pg_p_int(&p, 3, (int64_t)limit);
    sg__pg_p_text(&p, 4, r->be->owner, strlen(r->be->owner)); /* this process's only */
    sg_saga_rec *v = NULL;
    size_t n = 0;
    sg_event_rec **evs = NULL;
    size_t *nevs = NULL;
    sg_status res = rd_begin(&k);
    if (res == SG_OK) res = collect_sagas(&k, P_UNFINISHED_PAGE, &p, 0, &v, &n, limit);
    if (n) {
        evs = sg_xcalloc(n, sizeof *evs);
        nevs = sg_xcalloc(n, sizeof *nevs);
    }
    for (size_t i = 0; i < n && res == SG_OK; i++) {
        params ep = {0};
        sg__pg_p_text(&ep, 1, v[i].id, strlen(v[i].id));
        res = sg__pg_collect_events(&k, P_STEP_EVENTS, &ep, 0, &evs[i], &nevs[i]);
    }
    rd_end(&k);
    if (res == SG_OK && n == limit) sg_store_cursor_format(next, v[n - 1].created_us, v[n - 1].id);
    return sg_store_hand_page(res, v, evs, nevs, n, cb, arg);
}
