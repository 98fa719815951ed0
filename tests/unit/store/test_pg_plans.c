/* The plans of the PostgreSQL writer's statements that find one row by its
 * primary key (issue 10: a single sagad ran at a quarter of its speed).
 *
 * The writer prepares its statements once per connection, and PostgreSQL
 * keeps the generic plan it makes at a statement's sixth run until the
 * table's statistics change. On a new database that plan is made on a
 * near-empty, never analyzed table, where any index holding the key costs
 * as little as the primary key: "id=$1 AND owner=$6" took sagas_owner
 * (owner, status, created_us, id) and then scanned every entry of this
 * process's sagas for each update, slower with every saga stored. Each
 * statement here must reach its row through the primary key, on an empty
 * table and on one with rows but no statistics yet. Runs on a throwaway
 * server (unit/store/test_pg_plans@postgres); without SG_TEST_STORE_URL
 * every case skips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/helpers.h"
#include "store/postgres_int.h"

#define NEED_SERVER() NEED_PG_SERVER("test_pg_plans")

/* The writer's statements that find their row by key, and that key's index. */
static const struct {
    int q;
    const char *index;
} keyed[] = {
    {P_SAGA_UPDATE, "sagas_pkey"},   {P_SAGA_EXPECT, "sagas_pkey"},
    {P_SAGA_CLAIM, "sagas_pkey"},    {P_STEP_UPDATE, "steps_pkey"},
    {P_EVENT_UPDATE, "outbox_pkey"}, {P_EVENT_EXPECT, "outbox_pkey"},
    {P_EVENT_TRIED, "outbox_pkey"},  {P_LEASE, "sg_leases_pkey"},
};

static void run_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
}

/* The generic plan of statement q on c, as EXPLAIN prints it (one string,
 * lines joined by '\n'; the caller frees it). */
static char *generic_plan(PGconn *c, int q)
{
    char name[16], sql[256];
    snprintf(name, sizeof name, "t%d", q);
    const char *ps = sg__pg_params(q);
    size_t np = strlen(ps);
    Oid types[16];
    for (size_t i = 0; i < np; i++)
        types[i] = ps[i] == 'i' ? 20 : ps[i] == 'b' ? 17 : 25; /* int8, bytea, text */
    PGresult *r = PQprepare(c, name, sg__pg_sql(q), (int)np, types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fprintf(stderr, "%s", PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    /* Any values: a generic plan does not look at them. */
    int k = snprintf(sql, sizeof sql, "EXPLAIN EXECUTE %s(", name);
    for (size_t i = 0; i < np; i++)
        k += snprintf(sql + k, sizeof sql - (size_t)k, "%s%s", i ? "," : "",
                      ps[i] == 'i' ? "1" : "'x'");
    snprintf(sql + k, sizeof sql - (size_t)k, ")");
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    size_t len = 1;
    for (int i = 0; i < PQntuples(r); i++)
        len += strlen(PQgetvalue(r, i, 0)) + 1;
    char *plan = sg_xcalloc(1, len);
    for (int i = 0; i < PQntuples(r); i++) {
        strcat(plan, PQgetvalue(r, i, 0));
        strcat(plan, "\n");
    }
    PQclear(r);
    snprintf(sql, sizeof sql, "DEALLOCATE %s", name);
    run_ok(c, sql);
    return plan;
}

/* Every keyed statement's generic plan on t's database reaches its row
 * through the primary key and through no other index. */
static void check_plans(const tmpdb *t)
{
    PGconn *c = PQconnectdb(t->path);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    run_ok(c, "SET plan_cache_mode=force_generic_plan");
    for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) {
        char *plan = generic_plan(c, keyed[i].q);
        char want[64];
        snprintf(want, sizeof want, "using %s on", keyed[i].index);
        int ok = strstr(plan, want) && !strstr(plan, "Seq Scan");
        /* Exactly one index scan: the key's. */
        const char *p = strstr(plan, " using ");
        ok = ok && p && !strstr(p + 1, " using ");
        if (!ok) fprintf(stderr, "%s: not through %s:\n%s", sg__pg_name(keyed[i].q), want, plan);
        free(plan);
        assert_true(ok);
    }
    PQfinish(c);
}

static void test_plans_empty(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path); /* the schema, and this process's lease */
    check_plans(&t);
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* Rows written through the store, none analyzed yet (a new database in
 * its first minute, before autovacuum's first pass). */
static void test_plans_unanalyzed(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    pg_exec_url(t.path, "ALTER TABLE sagas SET (autovacuum_enabled=false)");
    pg_exec_url(t.path, "ALTER TABLE outbox SET (autovacuum_enabled=false)");
    pg_exec_url(t.path, "ALTER TABLE steps SET (autovacuum_enabled=false)");
    for (int i = 0; i < 300; i++) {
        sg_saga_rec r;
        assert_int_equal(insert_one(s, &r, 1000 + i), SG_OK);
        sg_saga_rec_free(&r);
    }
    assert_int_equal(pg_count(t.path, "sagas"), 300);
    check_plans(&t);
    sg_store_close(s);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plans_empty),
        cmocka_unit_test(test_plans_unanalyzed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
