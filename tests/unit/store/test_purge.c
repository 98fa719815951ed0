/* Retention (sg_write_purge), against the store under test (SQLite by
 * default; the @redis and @postgres CTest entries run it on those):
 * - exactly the settled sagas last changed before the cut-off go, with
 *   their steps and outbox rows; sagas in flight, compensations PENDING or
 *   PARKED (and their events), newer sagas, sagas changed lately and
 *   sagas that still hold a PENDING event stay;
 * - a purge deletes at most its limit, oldest first;
 * - a purged saga's Idempotency-Key may be used again;
 * - a failed purge deletes nothing;
 * - SQLite: the statements seek in sagas_created and outbox_saga. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"

#define CUT 10000 /* the cut-off (us); "old" records are before it */

/* Stores a saga in the given state (times in us) with events of the
 * given statuses (compensation or not, one per entry of evst, -1 ends;
 * ev_ids gets their ids when not NULL). Its id goes to id. */
static void put(sg_store *s, char id[SG_ID_LEN + 1], sg_saga_status st, sg_comp_status comp,
                int64_t created, int64_t updated, const char *idem, int comp_events,
                const int *evst, char (*ev_ids)[SG_ID_LEN + 1])
{
    sg_saga_rec r;
    make_saga(&r, "{}", 2, idem, created);
    r.status = st;
    r.comp_status = comp;
    r.updated_us = updated;
    for (size_t i = 0; i < r.nsteps; i++) {
        r.steps[i].status = st == SG_SAGA_IN_PROGRESS ? SG_STEP_RUNNING : SG_STEP_COMPLETED;
        r.steps[i].started_us = created;
        r.steps[i].finished_us = created + 1;
    }
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &r);
    for (size_t i = 0; evst && evst[i] >= 0; i++) {
        sg_event_rec e;
        make_event(&e, r.id, comp_events ? "comp" : "tokenizer_event", comp_events, created + 2);
        e.status = (sg_event_status)evst[i];
        e.updated_us = created + 3;
        if (ev_ids) snprintf(ev_ids[i], SG_ID_LEN + 1, "%s", e.id);
        sg_write_event_insert(w, &e);
        sg_event_rec_free(&e);
    }
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    snprintf(id, SG_ID_LEN + 1, "%s", r.id);
    sg_saga_rec_free(&r);
}

static size_t purge(sg_store *s, int64_t before, size_t limit, sg_status want)
{
    size_t n = 12345;
    sg_write *w = sg_write_create();
    sg_write_purge(w, before, limit, &n);
    assert_int_equal(sg_store_commit_sync(s, w), want);
    return n;
}

static int exists(sg_store_reader *r, const char *id)
{
    sg_saga_rec rec = {0};
    sg_status st = sg_store_get(r, id, &rec);
    assert_true(st == SG_OK || st == SG_ENOTFOUND);
    sg_saga_rec_free(&rec);
    return st == SG_OK;
}

static int event_exists(sg_store_reader *r, const char *id)
{
    sg_event_rec e = {0};
    sg_status st = sg_store_get_event(r, id, &e);
    assert_true(st == SG_OK || st == SG_ENOTFOUND);
    sg_event_rec_free(&e);
    return st == SG_OK;
}

/* How many sagas and events the listings show (every index entry must
 * still lead to a record). */
static void count_all(sg_store_reader *r, size_t *nsagas, size_t *nevents)
{
    sg_list_query q = {.status = -1, .limit = 1000};
    char next[SG_CURSOR_MAX];
    sg_saga_rec *v = NULL;
    assert_int_equal(sg_store_list(r, &q, &v, nsagas, next), SG_OK);
    sg_store_free_sagas(v, *nsagas);
    sg_event_rec *ev = NULL;
    assert_int_equal(sg_store_list_events(r, &q, &ev, nevents, next), SG_OK);
    sg_store_free_events(ev, *nevents);
}

/* SQLite: rows left in table of saga id (steps, outbox). */
static int rows_of(const char *path, const char *table, const char *id)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE saga_id='%s'", table, id);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_purge_rule(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char err[256];
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, err, sizeof err), SG_OK);
    const int delivered[] = {SG_EVENT_DELIVERED, -1}, withdrawn[] = {SG_EVENT_WITHDRAWN, -1};
    const int pending[] = {SG_EVENT_PENDING, -1},
              parked[] = {SG_EVENT_DELIVERED, SG_EVENT_PARKED, -1};
    char gone[3][SG_ID_LEN + 1], kept[6][SG_ID_LEN + 1];
    char gone_ev[3][1][SG_ID_LEN + 1], pend_ev[1][SG_ID_LEN + 1], park_ev[2][SG_ID_LEN + 1];
    /* Settled and old: they go, with their events. */
    put(s, gone[0], SG_SAGA_COMPLETED, SG_COMP_NONE, 1000, 2000, NULL, 0, delivered, gone_ev[0]);
    put(s, gone[1], SG_SAGA_FAILED, SG_COMP_NONE, 1100, 2100, NULL, 0, withdrawn, gone_ev[1]);
    put(s, gone[2], SG_SAGA_FAILED, SG_COMP_COMPLETED, 1200, 2200, NULL, 1, delivered, gone_ev[2]);
    /* Old but not settled, or settled but not old: they stay. */
    put(s, kept[0], SG_SAGA_IN_PROGRESS, SG_COMP_NONE, 1300, 2300, NULL, 0, NULL, NULL);
    put(s, kept[1], SG_SAGA_FAILED, SG_COMP_PENDING, 1400, 2400, NULL, 1, pending, pend_ev);
    put(s, kept[2], SG_SAGA_FAILED, SG_COMP_PARKED, 1500, 2500, NULL, 1, parked, park_ev);
    put(s, kept[3], SG_SAGA_COMPLETED, SG_COMP_NONE, CUT + 1, CUT + 2, NULL, 0, delivered, NULL);
    put(s, kept[4], SG_SAGA_COMPLETED, SG_COMP_NONE, 1600, CUT + 5, NULL, 0, NULL, NULL);
    /* An ended saga that still holds a PENDING step event (withdrawn at
     * the next start): nothing PENDING is ever deleted. */
    put(s, kept[5], SG_SAGA_COMPLETED, SG_COMP_NONE, 1700, 2700, NULL, 0, pending, NULL);

    assert_int_equal(purge(s, CUT, 100, SG_OK), 3);
    for (int i = 0; i < 3; i++) {
        assert_false(exists(r, gone[i]));
        assert_false(event_exists(r, gone_ev[i][0]));
        if (!test_store_url()) {
            assert_int_equal(rows_of(t.path, "steps", gone[i]), 0);
            assert_int_equal(rows_of(t.path, "outbox", gone[i]), 0);
        }
    }
    for (int i = 0; i < 6; i++)
        assert_true(exists(r, kept[i]));
    assert_true(event_exists(r, pend_ev[0]));
    assert_true(event_exists(r, park_ev[0]));
    assert_true(event_exists(r, park_ev[1]));
    size_t ns, ne;
    count_all(r, &ns, &ne);
    assert_int_equal(ns, 6);
    assert_int_equal(ne, 5); /* pending, delivered + parked, delivered, pending */
    /* The parked compensation is still listed as such. */
    sg_list_query q = {.status = SG_EVENT_PARKED, .limit = 10};
    char next[SG_CURSOR_MAX];
    sg_event_rec *ev = NULL;
    size_t n = 0;
    assert_int_equal(sg_store_list_events(r, &q, &ev, &n, next), SG_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].id, park_ev[1]);
    sg_store_free_events(ev, n);
    /* Again: nothing more is due. */
    assert_int_equal(purge(s, CUT, 100, SG_OK), 0);
    count_all(r, &ns, &ne);
    assert_int_equal(ns, 6);
    sg_store_reader_close(r);
    sg_store_close(s);
    tmpdb_remove(&t);
}

static void test_purge_chunks(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char err[256];
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, err, sizeof err), SG_OK);
    char id[5][SG_ID_LEN + 1];
    for (int i = 0; i < 5; i++)
        put(s, id[i], SG_SAGA_COMPLETED, SG_COMP_NONE, 1000 + i, 2000 + i, NULL, 0, NULL, NULL);
    assert_int_equal(purge(s, CUT, 2, SG_OK), 2);
    /* Oldest first. */
    assert_false(exists(r, id[0]));
    assert_false(exists(r, id[1]));
    assert_true(exists(r, id[2]));
    assert_int_equal(purge(s, CUT, 2, SG_OK), 2);
    assert_true(exists(r, id[4]));
    assert_int_equal(purge(s, CUT, 2, SG_OK), 1);
    assert_int_equal(purge(s, CUT, 2, SG_OK), 0);
    assert_false(exists(r, id[4]));
    sg_store_reader_close(r);
    sg_store_close(s);
    tmpdb_remove(&t);
}

static void test_purge_frees_idem_key(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char err[256];
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, err, sizeof err), SG_OK);
    char old[SG_ID_LEN + 1], again[SG_ID_LEN + 1];
    put(s, old, SG_SAGA_COMPLETED, SG_COMP_NONE, 1000, 2000, "key-1", 0, NULL, NULL);
    /* The key is taken while its saga is kept. */
    sg_saga_rec dup;
    make_saga(&dup, "{}", 2, "key-1", CUT + 10);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &dup);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ECONFLICT);
    sg_saga_rec_free(&dup);
    assert_int_equal(purge(s, CUT, 10, SG_OK), 1);
    sg_saga_rec rec = {0};
    assert_int_equal(sg_store_get_by_idem(r, "key-1", &rec), SG_ENOTFOUND);
    put(s, again, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, CUT + 10, CUT + 10, "key-1", 0, NULL, NULL);
    assert_int_equal(sg_store_get_by_idem(r, "key-1", &rec), SG_OK);
    assert_string_equal(rec.id, again);
    sg_saga_rec_free(&rec);
    sg_store_reader_close(r);
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* A purge whose transaction fails deletes nothing. */
static void test_purge_failure(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char err[256];
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, err, sizeof err), SG_OK);
    char id[SG_ID_LEN + 1];
    put(s, id, SG_SAGA_COMPLETED, SG_COMP_NONE, 1000, 2000, NULL, 0, NULL, NULL);
    for (int n = 1; n <= 8; n++) {
        atomic_store(&sg_store_fail_countdown, n);
        sg_write *w = sg_write_create();
        size_t purged = 0;
        sg_write_purge(w, CUT, 10, &purged);
        sg_status st = sg_store_commit_sync(s, w);
        int left = atomic_load(&sg_store_fail_countdown);
        atomic_store(&sg_store_fail_countdown, 0);
        if (st == SG_OK) { /* the countdown went past the batch: done */
            assert_true(left > 0 || n > 1);
            assert_int_equal(purged, 1);
            assert_false(exists(r, id));
            break;
        }
        assert_int_equal(st, SG_EIO);
        assert_true(exists(r, id));
    }
    assert_false(exists(r, id));
    sg_store_reader_close(r);
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* SQLite: the chunk is found by a seek in sagas_created (oldest first,
 * no sort, no scan of the table), a saga's open events through
 * outbox_saga; steps and outbox rows by their saga's keys. */
static void test_purge_plan(void **state)
{
    (void)state;
    if (test_store_url()) skip(); /* SQLite's query plans */
    tmpdb t;
    tmpdb_make(&t);
    sg_store_close(open_sync(t.path));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    for (int q = Q_PURGE_STEPS; q <= Q_PURGE_SAGAS; q++) {
        char sql[2048], plan[2048] = "";
        snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", sg__sq_sql(q));
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            size_t len = strlen(plan);
            snprintf(plan + len, sizeof plan - len, "%s; ", sqlite3_column_text(st, 3));
        }
        sqlite3_finalize(st);
        if (!strstr(plan, "SEARCH sagas USING INDEX sagas_created (created_us<?)") ||
            !strstr(plan, "outbox_saga (saga_id=?)") || strstr(plan, "TEMP B-TREE") ||
            strstr(plan, "SCAN sagas") || strstr(plan, "SCAN outbox") || strstr(plan, "SCAN steps"))
            fail_msg("%s: %s", sg__sq_sql(q), plan);
    }
    sqlite3_close(db);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purge_rule),           cmocka_unit_test(test_purge_chunks),
        cmocka_unit_test(test_purge_frees_idem_key), cmocka_unit_test(test_purge_failure),
        cmocka_unit_test(test_purge_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
