/* Schema 3's additions: stored definition versions (written once, a
 * changed text refused alone in its batch, loaded by name and version),
 * the saga type filter and the index it runs on, and each step's
 * compensation view. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"

/* ---- definitions ---------------------------------------------------------- */

typedef struct def_seen {
    char name[16];
    int version;
    char body[64];
} def_seen;

typedef struct defs {
    def_seen v[16];
    size_t n;
} defs;

static void keep_def(void *arg, const char *name, int version, const char *canonical)
{
    defs *d = arg;
    assert_true(d->n < 16);
    snprintf(d->v[d->n].name, sizeof d->v[d->n].name, "%s", name);
    d->v[d->n].version = version;
    snprintf(d->v[d->n].body, sizeof d->v[d->n].body, "%s", canonical);
    d->n++;
}

static void load_defs(sg_store *s, defs *d)
{
    sg_store_reader *r = NULL;
    memset(d, 0, sizeof *d);
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    assert_int_equal(sg_store_load_defs(r, keep_def, d), SG_OK);
    assert_string_equal(sg_store_reader_error(r), "");
    sg_store_reader_close(r);
}

static void assert_def(const def_seen *d, const char *name, int version, const char *body)
{
    assert_string_equal(d->name, name);
    assert_int_equal(d->version, version);
    assert_string_equal(d->body, body);
}

static sg_status put_def(sg_store *s, const char *name, int version, const char *body, int64_t us)
{
    sg_write *w = sg_write_create();
    sg_write_def_insert(w, name, version, body, us);
    return sg_store_commit_sync(s, w);
}

/* Versions come back by name, then version, whatever the order written;
 * the same text again is a no-op; another text under a stored (name,
 * version) is SG_ECONFLICT and changes nothing. */
static void test_defs_store_and_load(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    defs d;
    load_defs(s, &d);
    assert_int_equal(d.n, 0);

    assert_int_equal(put_def(s, "order", 2, "{\"v\":2}", 20), SG_OK);
    assert_int_equal(put_def(s, "billing", 1, "{\"b\":1}", 30), SG_OK);
    assert_int_equal(put_def(s, "order", 1, "{\"v\":1}", 10), SG_OK);
    assert_int_equal(put_def(s, "order", 10, "{\"v\":10}", 40), SG_OK);
    load_defs(s, &d);
    assert_int_equal(d.n, 4);
    assert_def(&d.v[0], "billing", 1, "{\"b\":1}");
    assert_def(&d.v[1], "order", 1, "{\"v\":1}");
    assert_def(&d.v[2], "order", 2, "{\"v\":2}");
    assert_def(&d.v[3], "order", 10, "{\"v\":10}");

    /* Same text: nothing to do, and the first write's time stays. */
    assert_int_equal(put_def(s, "order", 2, "{\"v\":2}", 99), SG_OK);
    /* A changed definition that keeps its version number. */
    assert_int_equal(put_def(s, "order", 2, "{\"v\":3}", 99), SG_ECONFLICT);
    /* Texts compare byte for byte. */
    assert_int_equal(put_def(s, "order", 2, "{\"v\": 2}", 99), SG_ECONFLICT);
    load_defs(s, &d);
    assert_int_equal(d.n, 4);
    assert_def(&d.v[2], "order", 2, "{\"v\":2}");
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
    sg_store_close(s);

    if (pg_path(t.path)) {
        assert_int_equal(pg_exec_url(t.path, "SELECT created_us FROM definitions WHERE "
                                             "name='order' AND version=2"),
                         20);
        tmpdb_remove(&t);
        return;
    }
    if (test_store_url()) { /* Redis: no read returns it */
        tmpdb_remove(&t);
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT created_us FROM definitions WHERE name='order' "
                                        "AND version=2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 20);
    sqlite3_finalize(st);
    sqlite3_close(db);
    tmpdb_remove(&t);
}

/* One exact batch: a write whose definition conflicts is undone alone
 * (the saga it also inserts included); the writes around it commit, one
 * of them repeating a stored version and one adding a version that a
 * later write of the same batch repeats. */
static void test_defs_conflict_in_batch(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    assert_int_equal(put_def(s, "order", 1, "{\"v\":1}", 1), SG_OK);
    sg_store_close(s);

    /* The backend of the store under test (SG_TEST_STORE_URL). */
    const struct sg_store_ops *ops = test_pg_url()      ? &sg_store_postgres_ops
                                     : test_store_url() ? &sg_store_redis_ops
                                                        : &sg_store_sqlite_ops;
    sg_store_backend *b = NULL;
    char err[256] = "";
    assert_int_equal(ops->open(&b, t.path, store_target(t.path), NULL, err, sizeof err), SG_OK);
    sg_saga_rec a, bad, c;
    make_saga(&a, "{}", 2, NULL, 1);
    make_saga(&bad, "{}", 2, NULL, 2);
    make_saga(&c, "{}", 2, NULL, 3);
    sg_write *w[4] = {sg_write_create(), sg_write_create(), sg_write_create(), sg_write_create()};
    sg_write_def_insert(w[0], "order", 1, "{\"v\":1}", 5);
    sg_write_saga_insert(w[0], &a);
    sg_write_saga_insert(w[1], &bad); /* first, so that the conflict must undo it */
    sg_write_def_insert(w[1], "order", 1, "{\"v\":\"changed\"}", 5);
    sg_write_def_insert(w[2], "order", 2, "{\"v\":2}", 5);
    sg_write_saga_insert(w[2], &c);
    sg_write_def_insert(w[3], "order", 2, "{\"v\":2}", 6);
    assert_true(sg_write_size(w[1]) > strlen("{\"v\":\"changed\"}"));
    sg_status res[4];
    assert_int_equal(ops->exec_batch(b, w, 4, res, err, sizeof err), SG_OK);
    assert_int_equal(res[0], SG_OK);
    assert_int_equal(res[1], SG_ECONFLICT);
    assert_int_equal(res[2], SG_OK);
    assert_int_equal(res[3], SG_OK);
    for (int i = 0; i < 4; i++)
        sg_write_destroy(w[i]);
    ops->close(b);

    s = open_sync(t.path);
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    sg_saga_rec_free(&got);
    assert_int_equal(sg_store_get(r, bad.id, &got), SG_ENOTFOUND);
    assert_int_equal(sg_store_get(r, c.id, &got), SG_OK);
    sg_saga_rec_free(&got);
    sg_store_reader_close(r);
    defs d;
    load_defs(s, &d);
    assert_int_equal(d.n, 2);
    assert_def(&d.v[0], "order", 1, "{\"v\":1}");
    assert_def(&d.v[1], "order", 2, "{\"v\":2}");
    sg_store_close(s);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&bad);
    sg_saga_rec_free(&c);
    tmpdb_remove(&t);
}

/* ---- the type filter ---------------------------------------------------------- */

#define NT 30
static const char *const types[3] = {"order", "billing", "sta"};

static void free_list(sg_saga_rec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_saga_rec_free(&v[i]);
    free(v);
}

/* Pages through type (and status, -1 = any) by pages of 4: newest first,
 * each matching saga once, the version read back with it. */
static void page_type(sg_store_reader *r, const char *type, int status, int expect)
{
    char cursor[SG_CURSOR_MAX] = "";
    int seen = 0;
    int64_t last = INT64_MAX;
    for (;;) {
        sg_list_query q = {status, 4, cursor[0] ? cursor : NULL, type};
        sg_saga_rec *v = NULL;
        size_t n = 0;
        char next[SG_CURSOR_MAX];
        assert_int_equal(sg_store_list(r, &q, &v, &n, next), SG_OK);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(v[i].def_name, type);
            if (status >= 0) assert_int_equal(v[i].status, status);
            assert_true(v[i].created_us < last);
            last = v[i].created_us;
            assert_int_equal(v[i].def_version, (int)(v[i].created_us % 3) + 1);
            seen++;
        }
        free_list(v, n);
        if (!next[0]) break;
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    assert_int_equal(seen, expect);
}

static void test_type_filter(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_write *w = sg_write_create();
    int count[3] = {0}, failed[3] = {0};
    for (int i = 0; i < NT; i++) {
        sg_saga_rec rec;
        make_saga(&rec, "{}", 2, NULL, 1000 + i);
        free(rec.def_name);
        rec.def_name = sg_xstrdup(types[i % 3]);
        rec.def_version = (1000 + i) % 3 + 1;
        rec.status = (sg_saga_status)(i / 3 % 3);
        count[i % 3]++;
        failed[i % 3] += rec.status == SG_SAGA_FAILED;
        sg_write_saga_insert(w, &rec);
        sg_saga_rec_free(&rec);
    }
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    for (int k = 0; k < 3; k++) {
        page_type(r, types[k], -1, count[k]);
        page_type(r, types[k], SG_SAGA_FAILED, failed[k]);
    }
    page_type(r, "nope", -1, 0);
    page_type(r, "nope", SG_SAGA_COMPLETED, 0);
    sg_store_reader_close(r);
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* The plans of the listing's statements, as the reader prepares them: a
 * type filter seeks in sagas_type, and no variant sorts (newest first is
 * the order of the index it walks). With both a status and a type either
 * index serves. The statements for a status other than the settled one,
 * and recovery's, use the partial status indexes (schema 6). */
static void test_type_filter_plan(void **state)
{
    (void)state;
    if (test_store_url()) skip(); /* SQLite's query plans */
    static const struct {
        int q;
        const char *index; /* NULL: sagas_type or sagas_status */
    } plans[] = {
        {Q_LIST, "sagas_created"},
        {Q_LIST_AFTER, "sagas_created"},
        {Q_LIST_T, "sagas_type"},
        {Q_LIST_T_AFTER, "sagas_type"},
        {Q_LIST_ST_T, NULL},
        {Q_LIST_ST_T_AFTER, NULL},
        {Q_EVENTS, "outbox_created"},
        /* The settled status (most rows) walks the keyset index, every
         * other seeks in the partial status index (schema 6). */
        {Q_LIST_ST, "sagas_created"},
        {Q_LIST_ST_AFTER, "sagas_created"},
        {Q_LIST_OPEN, "sagas_status"},
        {Q_LIST_OPEN_AFTER, "sagas_status"},
        {Q_LIST_OPEN_T, NULL},
        {Q_LIST_OPEN_T_AFTER, NULL},
        {Q_EVENTS_ST, "outbox_created"},
        {Q_EVENTS_ST_AFTER, "outbox_created"},
        {Q_EVENTS_OPEN, "outbox_status"},
        {Q_EVENTS_OPEN_AFTER, "outbox_status"},
        {Q_UNFINISHED, "sagas_status"},
        {Q_UNFINISHED_PAGE, "sagas_status"},
        {Q_PENDING_EVENTS, "outbox_status"},
        {Q_COMPENSATIONS, "outbox_status"},
    };
    tmpdb t;
    tmpdb_make(&t);
    sg_store_close(open_sync(t.path));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        char sql[2048], plan[1024] = "";
        snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", sg__sq_sql(plans[i].q));
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            size_t len = strlen(plan);
            snprintf(plan + len, sizeof plan - len, "%s; ", sqlite3_column_text(st, 3));
        }
        sqlite3_finalize(st);
        /* Recovery's two status ranges are merged by a sort. */
        int may_sort = plans[i].q == Q_PENDING_EVENTS || plans[i].q == Q_COMPENSATIONS;
        if ((strstr(plan, "TEMP B-TREE") && !may_sort) || strstr(plan, "SCAN sagas; ") ||
            strstr(plan, "SCAN outbox; ") || (plans[i].index && !strstr(plan, plans[i].index)) ||
            (!plans[i].index && !strstr(plan, "sagas_type") && !strstr(plan, "sagas_status")))
            fail_msg("%s: %s", sg__sq_sql(plans[i].q), plan);
        /* A filter seeks (SEARCH), it does not walk the whole index. */
        if (plans[i].q == Q_LIST_T || plans[i].q == Q_LIST_T_AFTER)
            assert_non_null(strstr(plan, "SEARCH sagas USING INDEX sagas_type (def_name=?"));
    }
    /* A saga's compensation view is found through outbox_saga (its few
     * rows are then sorted by step and age). */
    char sql[1024];
    snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", sg__sq_sql(Q_COMPS));
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_non_null(strstr((const char *)sqlite3_column_text(st, 3),
                           "SEARCH outbox USING INDEX outbox_saga (saga_id=?)"));
    sqlite3_finalize(st);
    sqlite3_close(db);
    tmpdb_remove(&t);
}

/* ---- compensation views ------------------------------------------------------------ */

static void add_comp(sg_write *w, sg_event_rec *e, const char *saga_id, int step, int64_t us)
{
    make_event(e, saga_id, "comp", 1, us);
    e->step_index = step;
    sg_write_event_insert(w, e);
}

/* Steps 0 and 2 of a 3-step saga have compensations: step 2's DELIVERED
 * after 2 attempts; step 0's PARKED with its error, planned twice (the
 * newer one is shown). A step event of step 1 is no compensation. Every
 * saga reader the API uses shows them; another saga shows none. */
static void test_comp_view(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec rec, other;
    make_saga(&rec, "{}", 2, "comp-key", 100);
    make_saga(&other, "{}", 2, NULL, 50);
    insert_sync(s, &rec);
    insert_sync(s, &other);

    sg_event_rec e2, e0old, e0, step1;
    sg_write *w = sg_write_create();
    add_comp(w, &e2, rec.id, 2, 200);
    add_comp(w, &e0old, rec.id, 0, 150);
    add_comp(w, &e0, rec.id, 0, 300);
    make_event(&step1, rec.id, "tokenizer_event", 0, 120);
    sg_write_event_insert(w, &step1);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    w = sg_write_create();
    sg_write_event_update(w, e2.id, SG_EVENT_DELIVERED, 2, NULL, 250);
    sg_write_event_update(w, e0old.id, SG_EVENT_DELIVERED, 1, NULL, 160);
    sg_write_event_update(w, e0.id, SG_EVENT_PARKED, 5, "HTTP 403 from stock", 400);
    sg_write_event_tried(w, e2.id, 210);
    sg_write_event_tried(w, e0.id, 310);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    /* Only the first attempt's start is kept. */
    w = sg_write_create();
    sg_write_event_tried(w, e0.id, 390);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    sg_comp_rec want[3] = {
        {.present = 1,
         .status = SG_EVENT_PARKED,
         .attempts = 5,
         .created_us = 300,
         .started_us = 310,
         .updated_us = 400,
         .error = "HTTP 403 from stock"},
        {.status = SG_EVENT_PENDING},
        {.present = 1,
         .status = SG_EVENT_DELIVERED,
         .attempts = 2,
         .created_us = 200,
         .started_us = 210,
         .updated_us = 250},
    };
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    sg_saga_rec got[4];
    assert_int_equal(sg_store_get(r, rec.id, &got[0]), SG_OK);
    assert_int_equal(sg_store_get_by_idem(r, "comp-key", &got[1]), SG_OK);
    sg_list_query q = {-1, 10, NULL, NULL};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(r, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].id, rec.id); /* newest first */
    for (size_t i = 0; i < other.nsteps; i++)
        assert_int_equal(v[1].steps[i].comp.present, 0);
    sg_saga_rec_copy(&got[2], &v[0]); /* and the copy keeps the views */
    free_list(v, n);
    q.type = "sta";
    q.status = SG_SAGA_IN_PROGRESS;
    assert_int_equal(sg_store_list(r, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 2);
    got[3] = v[0];
    sg_saga_rec_free(&v[1]);
    free(v);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(got[k].nsteps, 3);
        for (int i = 0; i < 3; i++) {
            const sg_comp_rec *c = &got[k].steps[i].comp;
            assert_int_equal(c->present, want[i].present);
            if (!c->present) {
                assert_null(c->error);
                continue;
            }
            assert_int_equal(c->status, want[i].status);
            assert_int_equal(c->attempts, want[i].attempts);
            assert_int_equal(c->created_us, want[i].created_us);
            assert_int_equal(c->started_us, want[i].started_us);
            assert_int_equal(c->updated_us, want[i].updated_us);
            assert_str_eq_or_null(c->error, want[i].error);
        }
        sg_saga_rec_free(&got[k]);
    }
    /* The step view stays the steps' own: the compensation rule moved the
     * saga's comp_status (one parked), nothing else. */
    assert_int_equal(sg_store_get(r, rec.id, &got[0]), SG_OK);
    assert_int_equal(got[0].comp_status, SG_COMP_PARKED);
    assert_int_equal(got[0].steps[0].status, SG_STEP_PENDING);
    sg_saga_rec_free(&got[0]);
    sg_store_reader_close(r);
    sg_store_close(s);
    sg_saga_rec_free(&rec);
    sg_saga_rec_free(&other);
    sg_event_rec_free(&e2);
    sg_event_rec_free(&e0old);
    sg_event_rec_free(&e0);
    sg_event_rec_free(&step1);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defs_store_and_load), cmocka_unit_test(test_defs_conflict_in_batch),
        cmocka_unit_test(test_type_filter),         cmocka_unit_test(test_type_filter_plan),
        cmocka_unit_test(test_comp_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
