/* The PostgreSQL backend: connections (session settings, prepared
 * statements), the schema and its version, open and close, and the
 * backend's table of methods (leases: postgres_lease.c). libpq takes the URL as given
 * (postgres://user:pass@host:port/db?params, or postgresql://). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "postgres_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

/* Two sagad starting on a new database at once may collide creating the
 * same tables: the loser tries again and finds them. */
#define SCHEMA_TRIES 5

/* Parameter types in libpq's terms (pg_type OIDs). */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

void sg__pg_msg(char *out, size_t n, PGconn *pg, const PGresult *res)
{
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    if (!m || !m[0]) m = pg ? PQerrorMessage(pg) : "no connection";
    if (!m || !m[0]) m = "unknown error";
    /* libpq's messages end in a newline and may span lines (DETAIL,
     * HINT): one line for logs and health. */
    size_t k = 0;
    for (const char *p = m; *p && k + 1 < n; p++)
        out[k++] = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
    while (k > 0 && out[k - 1] == ' ')
        k--;
    if (n) out[k] = '\0';
}

/* The URL for messages: a password in it ("scheme://user:pass@") shows as
 * "***". Writes into out (n bytes). */
static void redact(char *out, size_t n, const char *url)
{
    const char *s = strstr(url, "://");
    const char *at = s ? strchr(s + 3, '@') : NULL;
    const char *colon = s ? strchr(s + 3, ':') : NULL;
    if (at && colon && colon < at)
        snprintf(out, n, "%.*s***%s", (int)(colon + 1 - url), url, at);
    else
        snprintf(out, n, "%s", url);
}

void sg__pg_p_text(params *p, int i, const void *s, size_t n)
{
    p->v[i - 1] = s ? (n ? s : "") : NULL;
    p->len[i - 1] = (int)n;
    p->fmt[i - 1] = 1;
}

void sg__pg_p_int(params *p, int i, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int k = 7; k >= 0; k--, u >>= 8)
        p->ib[i - 1][k] = (unsigned char)u;
    p->v[i - 1] = (const char *)p->ib[i - 1];
    p->len[i - 1] = 8;
    p->fmt[i - 1] = 1;
}

void sg__pg_disconnect(pgc *c)
{
    if (c->pg) PQfinish(c->pg);
    memset(c, 0, sizeof *c);
}

/* Runs sql (no parameters, possibly several statements) on pg. 0 on
 * success; else -1 with "PostgreSQL <what>: <why>" in err. */
static int exec_simple(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        char m[200];
        sg__pg_msg(m, sizeof m, pg, res);
        snprintf(err, errlen, "PostgreSQL %s: %s", what, m);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int sg__pg_prepare(pgc *c, int q, char *err, size_t errlen)
{
    if (c->ready[q]) return 0;
    const char *ps = sg__pg_params(q);
    Oid types[16];
    int np = (int)strlen(ps);
    for (int i = 0; i < np && i < 16; i++)
        types[i] = ps[i] == 'i' ? OID_INT8 : ps[i] == 'b' ? OID_BYTEA : OID_TEXT;
    char name[16];
    snprintf(name, sizeof name, "q%d", q);
    PGresult *res = PQprepare(c->pg, name, sg__pg_sql(q), np, types);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok && err) {
        char m[200];
        sg__pg_msg(m, sizeof m, c->pg, res);
        snprintf(err, errlen, "PostgreSQL prepare %s: %s", sg__pg_name(q), m);
    }
    PQclear(res);
    if (ok) c->ready[q] = 1;
    return ok ? 0 : -1;
}

/* Server notices (WARNING, NOTICE) would go to stderr: the backend never
 * logs; what matters comes back as errors. */
static void no_notices(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

sg_status sg__pg_connect(pgc *c, const sg_store_backend *be, int writer, char *err, size_t errlen)
{
    char shown[256], sql[192];
    sg_status res = SG_EIO;
    sg__pg_disconnect(c);
    redact(shown, sizeof shown, be->url);
    /* connect_timeout first: a timeout in the URL itself overrides it. */
    const char *keys[] = {"connect_timeout", "dbname", "application_name", NULL};
    const char *vals[] = {"10", be->url, "sagad", NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        char m[200];
        sg__pg_msg(m, sizeof m, c->pg, NULL);
        snprintf(err, errlen, "cannot connect to PostgreSQL '%s': %s", shown, m);
        goto fail;
    }
    PQsetNoticeProcessor(c->pg, no_notices, NULL);
    /* lock_timeout plays SQLite's busy timeout: a lock held by another
     * session fails the statement after that long rather than never. A
     * writer's transaction left idle for a lease (its process paused
     * mid-batch) is ended by the server, so its lease row is free for the
     * process taking its sagas over. */
    snprintf(sql, sizeof sql,
             "SET lock_timeout=%d; SET synchronous_commit=%s; SET client_min_messages=warning; "
             "SET idle_in_transaction_session_timeout=%lld",
             be->busy_ms, be->sync_commit ? "on" : "off",
             writer && be->lease_ms > 0 ? (long long)be->lease_ms : 0LL);
    if (exec_simple(c->pg, sql, "session settings", err, errlen) != 0) goto fail;
    return SG_OK;
fail:
    sg__pg_disconnect(c);
    return res;
}

/* Connects the writer if it has no live connection, prepares the write
 * statements and enters pipeline mode. */
sg_status sg__pg_writer_ready(sg_store_backend *be, char *err, size_t errlen)
{
    if (!be->w.pg || PQstatus(be->w.pg) != CONNECTION_OK) {
        if (sg__pg_connect(&be->w, be, 1, err, errlen) != SG_OK) return SG_EIO;
    }
    for (int q = P_BEGIN; q <= P_PROBE; q++) {
        if (sg__pg_prepare(&be->w, q, err, errlen) != 0) {
            if (PQstatus(be->w.pg) != CONNECTION_OK) sg__pg_disconnect(&be->w);
            return SG_EIO;
        }
    }
    if (be->pipeline && !PQenterPipelineMode(be->w.pg)) {
        char m[200];
        sg__pg_msg(m, sizeof m, be->w.pg, NULL);
        snprintf(err, errlen, "PostgreSQL pipeline mode: %s", m);
        sg__pg_disconnect(&be->w);
        return SG_EIO;
    }
    return SG_OK;
}

int sg__pg_commit_landed(sg_store_backend *be, int64_t seq, unsigned wait_ms, char *err,
                         size_t errlen)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)wait_ms * 1000000u;
    char why[256] = "";
    for (;;) {
        if (sg__pg_connect(&be->w, be, 1, why, sizeof why) == SG_OK) {
            char sql[128];
            /* The owner id is a UUID: safe in a literal. */
            snprintf(sql, sizeof sql, "SELECT seq FROM sg_leases WHERE owner='%s'", be->owner);
            PGresult *r = PQexec(be->w.pg, sql);
            /* No row: the lease was taken over, so nothing of it landed
             * after that (every batch renews it first). */
            int known = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) <= 1;
            long long v = known && PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
            if (!known) sg__pg_msg(why, sizeof why, be->w.pg, r);
            PQclear(r);
            if (known) return v == seq;
        }
        if (uv_hrtime() >= deadline) break;
        uv_sleep(100);
    }
    snprintf(err, errlen,
             "PostgreSQL commit in doubt: the connection was lost before COMMIT was answered, "
             "and the server could not be asked since (%s)",
             why);
    return -1;
}

/* Creates the schema in a new database, or checks an existing one's
 * version: one from a newer sagad is refused untouched (SG_EINVAL). All
 * in one transaction. */
static sg_status create_schema(pgc *c, const char *shown, char *err, size_t errlen)
{
    sg_status res = SG_EIO;
    PGresult *r = NULL;
    if (exec_simple(c->pg,
                    "BEGIN; CREATE TABLE IF NOT EXISTS sg_schema(id BIGINT PRIMARY KEY, version "
                    "BIGINT NOT NULL)",
                    "creating schema", err, errlen) != 0)
        goto fail;
    r = PQexec(c->pg, "SELECT version FROM sg_schema WHERE id=1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char m[200];
        sg__pg_msg(m, sizeof m, c->pg, r);
        snprintf(err, errlen, "PostgreSQL reading schema version: %s", m);
        goto fail;
    }
    long long version = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    r = NULL;
    if (version > SG_PG_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "database '%s' has schema version %lld, newer than this sagad supports (%d): "
                 "it was written by a newer sagad; run that one, or point this one at another "
                 "database",
                 shown, version, SG_PG_SCHEMA_VERSION);
        res = SG_EINVAL;
        goto fail;
    }
    if (version < 0) {
        snprintf(err, errlen, "database '%s' has schema version %lld, which no sagad writes", shown,
                 version);
        res = SG_EINVAL;
        goto fail;
    }
    if (version == 0) {
        char sql[96];
        if (exec_simple(c->pg, sg__pg_schema, "creating schema", err, errlen) != 0) goto fail;
        snprintf(sql, sizeof sql, "INSERT INTO sg_schema(id, version) VALUES(1, %d)",
                 SG_PG_SCHEMA_VERSION);
        if (exec_simple(c->pg, sql, "setting schema version", err, errlen) != 0) goto fail;
    }
    /* Upgrades from older versions, one step at a time. */
    if (version == 1) {
        if (exec_simple(c->pg, sg__pg_upgrade_v2, "upgrading schema from version 1", err, errlen) !=
                0 ||
            exec_simple(c->pg, "UPDATE sg_schema SET version=2 WHERE id=1",
                        "setting schema version", err, errlen) != 0)
            goto fail;
    }
    if (exec_simple(c->pg, "COMMIT", "commit", err, errlen) != 0) goto fail;
    return SG_OK;
fail:
    PQclear(r);
    if (c->pg && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        PGresult *rb = PQexec(c->pg, "ROLLBACK");
        PQclear(rb);
    }
    return res;
}

static sg_status pg_open(sg_store_backend **out, const char *url, const char *target,
                         const sg_store_options *opt, char *err, size_t errlen)
{
    sg_store_backend *b = NULL;
    sg_status res = SG_EINVAL;
    char shown[256];
    *out = NULL;
    redact(shown, sizeof shown, url);
    /* An empty target ("postgres://") is libpq's defaults (PGHOST...). */
    (void)target;
    b = sg_xcalloc(1, sizeof *b);
    b->url = sg_xstrdup(url);
    b->busy_ms = opt && opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : SG_STORE_BUSY_TIMEOUT_MS;
    b->sync_commit = !opt || opt->synchronous_full;
    /* SAGAD_PG_PIPELINE=0 sends a batch a statement at a time, for
     * measuring what pipelining gains. */
    const char *pl = getenv("SAGAD_PG_PIPELINE");
    b->pipeline = !(pl && strcmp(pl, "0") == 0);
    b->lease_ms = opt && opt->lease_ms > 0 ? opt->lease_ms : SG_STORE_LEASE_MS;
    res = sg__pg_connect(&b->w, b, 1, err, errlen);
    if (res != SG_OK) goto fail;
    res = SG_EIO;
    for (int i = 0; i < SCHEMA_TRIES && res == SG_EIO; i++) {
        if (i) uv_sleep(20 * (unsigned)i);
        res = create_schema(&b->w, shown, err, errlen);
    }
    if (res != SG_OK) goto fail;
    /* Several sagad may share the database: each runs its own sagas under
     * a lease (postgres_lease.c). */
    res = sg__pg_lease_take(b, err, errlen);
    if (res == SG_OK) res = sg__pg_adopt_at_open(b, err, errlen);
    if (res != SG_OK) goto fail;
    *out = b;
    return SG_OK;
fail:
    if (b) {
        sg__pg_disconnect(&b->w);
        free(b->url);
        free(b);
    }
    return res;
}

static void pg_close(sg_store_backend *b)
{
    if (!b) return;
    if (b->w.pg && PQstatus(b->w.pg) == CONNECTION_OK &&
        PQpipelineStatus(b->w.pg) != PQ_PIPELINE_OFF)
        PQexitPipelineMode(b->w.pg);
    sg__pg_lease_drop(b); /* its unfinished sagas go to the others at once */
    sg__pg_disconnect(&b->w);
    sg__pg_doubt_clear(b);
    free(b->url);
    free(b);
}

static const char *const postgres_schemes[] = {"postgres", "postgresql", NULL};

const struct sg_store_ops sg_store_postgres_ops = {
    .schemes = postgres_schemes,
    .plain_paths = 0,
    .shared = 1,
    .open = pg_open,
    .close = pg_close,
    .exec_batch = sg__pg_exec_batch,
    .reader_open = sg__pg_reader_open,
    .reader_close = sg__pg_reader_close,
    .get = sg__pg_get,
    .get_by_idem = sg__pg_get_by_idem,
    .list = sg__pg_list,
    .load_unfinished = sg__pg_load_unfinished,
    .load_pending_events = sg__pg_load_pending_events,
    .load_unfinished_page = sg__pg_load_unfinished_page,
    .load_compensations = sg__pg_load_compensations,
    .has_orphans = sg__pg_has_orphans,
    .get_event = sg__pg_get_event,
    .list_events = sg__pg_list_events,
    .count_events = sg__pg_count_events,
    .load_defs = sg__pg_load_defs,
    .counts = sg__pg_counts,
    .owner = sg__pg_owner,
    .adopt = sg__pg_adopt,
};
