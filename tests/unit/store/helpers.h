/* Shared helpers for the store unit tests: temporary directories, record
 * builders and comparisons. Header-only (static functions) so every test
 * executable stays a single translation unit. Include after cmocka.h. */
#ifndef SG_TEST_STORE_HELPERS_H
#define SG_TEST_STORE_HELPERS_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sg/alloc.h"
#include "sg/records.h"
#include "sg/store.h"
#include "sg/util.h"

/* ---- temporary database ------------------------------------------------- */

/* SG_TEST_STORE_URL names a server to test instead of SQLite files:
 * - postgres://user@host:port (no database: the @postgres CTest entries
 *   run the tests under tests/integration/pgserver.py run): each tmpdb is a
 *   fresh PostgreSQL database and path its URL;
 * - redis://host:port (by with_redis.sh): each tmpdb is the next database
 *   number of that server.
 * Otherwise a tmpdb is an SQLite file in a temporary directory. */
typedef struct tmpdb {
    char dir[64];
    char path[256]; /* dir/saga.db, or the database's URL */
    char db[64];    /* the PostgreSQL database's name; "" otherwise */
} tmpdb;

/* The server's URL (either kind), or NULL when testing SQLite. */
static inline const char *test_store_url(void)
{
    const char *u = getenv("SG_TEST_STORE_URL");
    return u && u[0] ? u : NULL;
}

/* The PostgreSQL server's URL, or NULL when testing another store. */
static inline const char *test_pg_url(void)
{
    const char *u = test_store_url();
    return u && strncmp(u, "postgres", 8) == 0 ? u : NULL;
}

/* What a backend's open() gets as its target: what follows "scheme://". */
static inline const char *store_target(const char *path)
{
    const char *p = strstr(path, "://");
    return p ? p + 3 : path;
}

/* Tests that need a PostgreSQL server skip themselves without one; name
 * is the test's, as ctest runs it with a server (name@postgres). */
#define NEED_PG_SERVER(name)                                                                       \
    do {                                                                                           \
        if (!test_pg_url()) {                                                                      \
            fprintf(stderr, "skipped: no SG_TEST_STORE_URL (run as %s@postgres)\n", name);         \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Tests about SQLite files skip themselves on PostgreSQL. */
#define SKIP_ON_POSTGRES()                                                                         \
    do {                                                                                           \
        if (test_pg_url()) {                                                                       \
            fprintf(stderr, "skipped: about SQLite files\n");                                      \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* The backend's name as its messages start ("SQLite get steps: ..."). */
#define STORE_NAME (test_pg_url() ? "PostgreSQL" : "SQLite")

/* 1 if path is a PostgreSQL URL (a tmpdb's path in PostgreSQL mode). */
static inline int pg_path(const char *path)
{
    return strncmp(path, "postgres", 8) == 0;
}

/* Runs sql on the database at url; fails the test on error. The first
 * column of the first row as an integer (text result), 0 without rows. */
static inline long long pg_exec_url(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    long long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0
                      ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                      : 0;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* The same on the server's database db ("postgres" for the catalog). */
static inline void pg_exec(const char *db, const char *sql)
{
    char url[320];
    snprintf(url, sizeof url, "%s/%s", test_pg_url(), db);
    (void)pg_exec_url(url, sql);
}

/* Rows in table of the PostgreSQL database at url. */
static inline int pg_count(const char *url, const char *table)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    return (int)pg_exec_url(url, sql);
}

static inline void tmpdb_make(tmpdb *t)
{
    static int next_db = 1;
    snprintf(t->dir, sizeof t->dir, "/tmp/sg-store-test-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/saga.db", t->dir);
    t->db[0] = '\0';
    if (test_store_url() && !test_pg_url()) {
        snprintf(t->path, sizeof t->path, "%s/%d", test_store_url(), next_db++);
    } else if (test_pg_url()) {
        char id[SG_ID_LEN + 1], sql[128];
        sg_uuid_v4(id);
        snprintf(t->db, sizeof t->db, "sgt_%.8s%.4s", id, id + 9);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", t->db);
        pg_exec("postgres", sql);
        snprintf(t->path, sizeof t->path, "%s/%s", test_pg_url(), t->db);
    }
}

static inline int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void tmpdb_remove(tmpdb *t)
{
    nftw(t->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (t->db[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", t->db);
        pg_exec("postgres", sql);
    }
}

/* ---- records -------------------------------------------------------------- */

/* Fills r (caller frees with sg_saga_rec_free) with a 3-step saga. */
static inline void make_saga(sg_saga_rec *r, const char *request, size_t request_len,
                             const char *idem_key, int64_t created_us)
{
    static const char *names[] = {"anonymizer", "tokenizer", "ai_model"};
    memset(r, 0, sizeof *r);
    sg_uuid_v4(r->id);
    r->def_name = sg_xstrdup("sta");
    r->request = sg_xmemdup(request, request_len);
    r->request_len = request_len;
    r->idem_key = sg_xstrdup(idem_key);
    r->status = SG_SAGA_IN_PROGRESS;
    r->comp_status = SG_COMP_NONE;
    r->created_us = created_us;
    r->updated_us = created_us;
    r->nsteps = 3;
    r->steps = sg_xcalloc(3, sizeof *r->steps);
    for (int i = 0; i < 3; i++) {
        r->steps[i].name = sg_xstrdup(names[i]);
        r->steps[i].status = SG_STEP_PENDING;
    }
}

/* Fills e (caller frees with sg_event_rec_free). */
static inline void make_event(sg_event_rec *e, const char *saga_id, const char *topic,
                              int compensation, int64_t created_us)
{
    memset(e, 0, sizeof *e);
    sg_uuid_v4(e->id);
    snprintf(e->saga_id, sizeof e->saga_id, "%.36s", saga_id);
    e->topic = sg_xstrdup(topic);
    e->payload = sg_xstrdup("{\"image_id\":\"img_123\"}");
    e->payload_len = strlen(e->payload);
    e->created_us = created_us;
    e->compensation = compensation;
    e->step_index = compensation ? -1 : 1;
    e->status = SG_EVENT_PENDING;
}

static inline void assert_str_eq_or_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static inline void assert_bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    assert_int_equal(alen, blen);
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_memory_equal(a, b, alen);
}

static inline void assert_step_eq(const sg_step_rec *a, const sg_step_rec *b)
{
    assert_str_eq_or_null(a->name, b->name);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->attempts, b->attempts);
    assert_int_equal(a->started_us, b->started_us);
    assert_int_equal(a->finished_us, b->finished_us);
    assert_str_eq_or_null(a->error, b->error);
    assert_bytes_eq(a->response, a->response_len, b->response, b->response_len);
    assert_int_equal(a->comp.present, b->comp.present);
    if (a->comp.present) {
        assert_int_equal(a->comp.status, b->comp.status);
        assert_int_equal(a->comp.attempts, b->comp.attempts);
        assert_int_equal(a->comp.created_us, b->comp.created_us);
        assert_int_equal(a->comp.updated_us, b->comp.updated_us);
        assert_str_eq_or_null(a->comp.error, b->comp.error);
    }
}

static inline void assert_saga_eq(const sg_saga_rec *a, const sg_saga_rec *b)
{
    assert_string_equal(a->id, b->id);
    assert_str_eq_or_null(a->def_name, b->def_name);
    assert_int_equal(a->def_version, b->def_version);
    assert_bytes_eq(a->request, a->request_len, b->request, b->request_len);
    assert_str_eq_or_null(a->idem_key, b->idem_key);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->comp_status, b->comp_status);
    assert_str_eq_or_null(a->error, b->error);
    assert_int_equal(a->created_us, b->created_us);
    assert_int_equal(a->updated_us, b->updated_us);
    assert_int_equal(a->nsteps, b->nsteps);
    for (size_t i = 0; i < a->nsteps; i++)
        assert_step_eq(&a->steps[i], &b->steps[i]);
}

static inline void assert_event_eq(const sg_event_rec *a, const sg_event_rec *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->saga_id, b->saga_id);
    assert_str_eq_or_null(a->topic, b->topic);
    assert_str_eq_or_null(a->target, b->target);
    assert_bytes_eq(a->payload, a->payload_len, b->payload, b->payload_len);
    assert_int_equal(a->created_us, b->created_us);
    assert_int_equal(a->deadline_us, b->deadline_us);
    assert_int_equal(a->compensation, b->compensation);
    assert_int_equal(a->step_index, b->step_index);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->attempts, b->attempts);
    assert_str_eq_or_null(a->last_error, b->last_error);
    assert_int_equal(a->updated_us, b->updated_us);
    assert_str_eq_or_null(a->method, b->method);
    assert_str_eq_or_null(a->headers, b->headers);
    assert_int_equal(a->timeout_ms, b->timeout_ms);
}

/* Opens the store at path without a loop; fails the test on error. */
static inline sg_store *open_sync(const char *path)
{
    sg_store *s = NULL;
    char err[256] = "";
    sg_status st = sg_store_open(&s, path, NULL, NULL, err, sizeof err);
    if (st != SG_OK) fprintf(stderr, "open %s: %s\n", path, err);
    assert_int_equal(st, SG_OK);
    assert_non_null(s);
    return s;
}

/* Opens the store at path as sagad does (retry_failed, completions on
 * loop); fails the test on error. */
static inline sg_store *open_retrying(const char *path, uv_loop_t *loop)
{
    sg_store_options o = {.retry_failed = 1, .synchronous_full = 1};
    sg_store *s = NULL;
    char err[512] = "";
    sg_status st = sg_store_open(&s, path, loop, &o, err, sizeof err);
    if (st != SG_OK) fprintf(stderr, "open %s: %s\n", path, err);
    assert_int_equal(st, SG_OK);
    return s;
}

/* Inserts r through commit_sync. */
static inline void insert_sync(sg_store *s, const sg_saga_rec *r)
{
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, r);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
}

/* Rows in table, through a raw connection (tests that look under the
 * store). Needs <cmocka.h> and <sqlite3.h> included before this header. */
#ifdef SQLITE_OK
static inline int count_rows(sqlite3 *db, const char *table)
{
    char sql[64];
    sqlite3_stmt *st = NULL;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The first column of sql's first row, as an int. */
static inline int query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Fails the test unless SQLite finds db intact (PRAGMA integrity_check). */
static inline void assert_intact(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}
#endif

/* A write's completion, for tests that submit on a loop: counts into
 * *counter and remembers the status. */
typedef struct done_rec {
    int ran;
    sg_status st;
    int *counter;
} done_rec;

static inline void on_done(void *arg, sg_status st)
{
    done_rec *d = arg;
    d->ran++;
    d->st = st;
    (*d->counter)++;
}

/* ---- shared stores (leases) ---------------------------------------------- */

/* Commits a new 3-step saga made by make_saga (r: the caller frees). */
static inline sg_status insert_one(sg_store *s, sg_saga_rec *r, int64_t created)
{
    make_saga(r, "{}", 2, NULL, created);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, r);
    return sg_store_commit_sync(s, w);
}

/* An sg_unfinished_cb that counts into *(int *)arg and frees. */
static inline void count_cb(void *arg, sg_saga_rec *rec, sg_event_rec *evs, size_t nevs)
{
    (*(int *)arg)++;
    sg_saga_rec_free(rec);
    free(rec);
    for (size_t i = 0; i < nevs; i++)
        sg_event_rec_free(&evs[i]);
    free(evs);
}

/* sg_store_adopt on a reader of its own: how many changed hands. */
static inline size_t adopt(sg_store *s)
{
    sg_store_reader *r = NULL;
    size_t taken = 0;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    assert_int_equal(sg_store_adopt(r, &taken), SG_OK);
    sg_store_reader_close(r);
    return taken;
}

#endif
