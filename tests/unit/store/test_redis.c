/* The Redis store's own rules, against a real redis-server (run through
 * with_redis.sh, as unit/store/test_redis@redis; without SG_TEST_STORE_URL
 * every test is skipped): strict URLs whose messages never show the
 * password, the durability settings it requires, leases for several sagad
 * on one database,
 * a newer layout refused, connections lost and found again, and stored
 * data of the wrong shape failing a read rather than crashing it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "store/helpers.h"

/* A raw client on the test server's database db (the test looks under
 * the store through it). */
static redisContext *raw(int db)
{
    const char *port = getenv("SG_TEST_REDIS_PORT");
    assert_non_null(port);
    redisContext *c = redisConnect("127.0.0.1", atoi(port));
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = redisCommand(c, "SELECT %d", db);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    return c;
}

static void raw_ok(redisContext *c, const char *fmt, const char *a, const char *b)
{
    redisReply *r = redisCommand(c, fmt, a, b);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

/* The database number of a tmpdb's URL. */
static int db_of(const tmpdb *t)
{
    return atoi(strrchr(t->path, '/') + 1);
}

static sg_status try_open(const char *url, char *err, size_t n, sg_store **out)
{
    err[0] = '\0';
    *out = NULL;
    return sg_store_open(out, url, NULL, NULL, err, n);
}

static void skip_without_redis(void)
{
    if (!test_store_url()) skip();
}

static void test_url_errors(void **state)
{
    (void)state;
    skip_without_redis();
    static const char *const bad[] = {
        "redis://",          "redis://:1/0",          "redis://h:0/1",      "redis://h:70000/1",
        "redis://h:1/x",     "redis://h:1/1?foo=bar", "redis://user@h:1/1", "redis:h:1/1",
        "redis://h:1/1junk", "redis://h:1/99999999",  "redis://h h:1/1",    "redis://h:1/1?",
        "redis://:@h:1/1",   "redis://h:1x/1",        "redis://h:1/-1",
    };
    char err[256];
    sg_store *s;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(try_open(bad[i], err, sizeof err, &s), SG_EINVAL);
        assert_null(s);
        assert_non_null(strstr(err, "Redis"));
    }
    /* Nothing listens on port 1: the message names the server, not the
     * password. */
    assert_int_equal(try_open("redis://:s3cret@127.0.0.1:1/0", err, sizeof err, &s), SG_EIO);
    assert_non_null(strstr(err, "redis://127.0.0.1:1/0"));
    assert_null(strstr(err, "s3cret"));
    /* A password the server does not want: refused by AUTH, said so. */
    char url[128];
    snprintf(url, sizeof url, "redis://:nope@127.0.0.1:%s/0", getenv("SG_TEST_REDIS_PORT"));
    assert_int_equal(try_open(url, err, sizeof err, &s), SG_EIO);
    assert_non_null(strstr(err, "AUTH"));
    assert_null(strstr(err, "nope"));
}

/* appendonly yes and appendfsync always, or an explicit relaxed URL. */
static void test_durability_settings(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    redisContext *c = raw(0);
    char err[512], url[320];
    sg_store *s;
    raw_ok(c, "CONFIG SET %s %s", "appendfsync", "everysec");
    assert_int_equal(try_open(t.path, err, sizeof err, &s), SG_EUNAVAIL);
    assert_non_null(strstr(err, "appendfsync everysec"));
    assert_non_null(strstr(err, "appendonly yes and appendfsync always"));
    snprintf(url, sizeof url, "%s?durability=relaxed", t.path);
    assert_int_equal(try_open(url, err, sizeof err, &s), SG_OK);
    sg_store_close(s);
    raw_ok(c, "CONFIG SET %s %s", "appendfsync", "always");
    raw_ok(c, "CONFIG SET %s %s", "appendonly", "no");
    assert_int_equal(try_open(t.path, err, sizeof err, &s), SG_EUNAVAIL);
    assert_non_null(strstr(err, "appendonly no"));
    raw_ok(c, "CONFIG SET %s %s", "appendonly", "yes");
    assert_int_equal(try_open(t.path, err, sizeof err, &s), SG_OK);
    sg_store_close(s);
    redisFree(c);
    tmpdb_remove(&t);
}

static void count_event(void *arg, sg_event_rec *ev)
{
    (*(int *)arg)++;
    sg_event_rec_free(ev);
    free(ev);
}

/* What s's recovery would resume: unfinished sagas (*comps gets the
 * compensations to deliver, *pending the events PENDING or PARKED):
 * its own only. */
static void count_event_saga(void *arg, sg_saga_rec *rec)
{
    (*(int *)arg)++;
    sg_saga_rec_free(rec);
    free(rec);
}

static int count_unfinished3(sg_store *s, int *comps, int *pending)
{
    sg_store_reader *r = NULL;
    char next[SG_CURSOR_MAX];
    int n = 0, all = 0, c = 0, p = 0;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    assert_int_equal(sg_store_load_unfinished_page(r, NULL, 1000, count_cb, &n, next), SG_OK);
    assert_int_equal(sg_store_load_unfinished(r, count_event_saga, &all), SG_OK);
    assert_int_equal(all, n);
    assert_int_equal(sg_store_load_compensations(r, count_event, &c), SG_OK);
    assert_int_equal(sg_store_load_pending_events(r, count_event, &p), SG_OK);
    sg_store_reader_close(r);
    if (comps) *comps = c;
    if (pending) *pending = p;
    return n;
}

static int count_unfinished(sg_store *s)
{
    return count_unfinished3(s, NULL, NULL);
}

static long long epoch_of(sg_store *s, char id[SG_ID_LEN + 1])
{
    char o[SG_OWNER_MAX];
    sg_store_owner(s, o);
    const char *slash = strchr(o, '/');
    assert_non_null(slash);
    assert_int_equal(slash - o, SG_ID_LEN);
    if (id) snprintf(id, SG_ID_LEN + 1, "%.36s", o);
    return strtoll(slash + 1, NULL, 10);
}

static long long raw_int(redisContext *c, const char *fmt, const char *a)
{
    redisReply *r = redisCommand(c, fmt, a);
    assert_non_null(r);
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER) v = r->integer;
    if (r->type == REDIS_REPLY_STRING) v = atoll(r->str);
    freeReplyObject(r);
    return v;
}

/* Several sagad on one database (design §7), as on PostgreSQL: each its
 * own lease and its own sagas; a lease lost fences every later write of
 * its process; the expired lease's sagas (with their compensations) are
 * adopted by another, once; a saga another process owns is not updated;
 * a FAILED one is claimed; a clean close hands over at once. */
static void test_leases(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    char err[512], oa[SG_ID_LEN + 1], ob[SG_ID_LEN + 1];
    sg_store *a = open_sync(t.path), *b = NULL;
    assert_int_equal(try_open(t.path, err, sizeof err, &b), SG_OK);
    assert_true(sg_store_shared(a) && sg_store_shared(b));
    long long ea = epoch_of(a, oa), eb = epoch_of(b, ob);
    assert_string_not_equal(oa, ob);
    assert_true(eb > ea); /* the fencing token only grows */
    assert_true(sg_store_lease_until(a) > uv_hrtime() / 1000000);
    redisContext *c = raw(db_of(&t));
    assert_int_equal(raw_int(c, "HLEN sagad:leases", NULL), 2);

    /* a runs a saga with a compensation to deliver; b one of its own. */
    sg_saga_rec x, y, z;
    assert_int_equal(insert_one(a, &x, 1), SG_OK);
    assert_int_equal(insert_one(b, &z, 3), SG_OK);
    sg_event_rec ev;
    make_event(&ev, x.id, "undo", 1, 4);
    sg_write *w = sg_write_create();
    sg_write_event_insert(w, &ev);
    sg_write_saga_update(w, x.id, SG_SAGA_IN_PROGRESS, SG_COMP_PENDING, NULL, 4);
    assert_int_equal(sg_store_commit_sync(a, w), SG_OK);
    int comps = 0, pending = 0;
    assert_int_equal(count_unfinished3(a, &comps, &pending), 1);
    assert_int_equal(comps, 1);
    assert_int_equal(pending, 1);
    assert_int_equal(count_unfinished3(b, &comps, &pending), 1); /* z, not x */
    assert_int_equal(comps, 0);
    assert_int_equal(pending, 0);
    assert_int_equal(adopt(b), 0); /* a's lease holds */
    /* The server lost its scripts: a reader's adoption loads them again. */
    sg_store_reader *rb = NULL;
    size_t taken = 9;
    assert_int_equal(sg_store_reader_open(b, &rb, NULL, 0), SG_OK);
    raw_ok(c, "SCRIPT FLUSH", NULL, NULL);
    assert_int_equal(sg_store_adopt(rb, &taken), SG_OK);
    assert_int_equal(taken, 0);
    sg_store_reader_close(rb);

    /* b may not update a's saga. */
    w = sg_write_create();
    sg_write_saga_update(w, x.id, SG_SAGA_FAILED, SG_COMP_NONE, "not yours", 5);
    assert_int_equal(sg_store_commit_sync(b, w), SG_ENOTFOUND);

    /* a's lease runs out (a paused process): b takes its saga over. */
    char ls[64];
    snprintf(ls, sizeof ls, "%lld 0", ea);
    raw_ok(c, "HSET sagad:leases %s %s", oa, ls);
    assert_int_equal(adopt(b), 1);
    assert_int_equal(adopt(b), 0); /* once */
    assert_int_equal(count_unfinished3(b, &comps, &pending), 2);
    assert_int_equal(comps, 1);
    assert_int_equal(pending, 1);
    assert_int_equal(raw_int(c, "HLEN sagad:leases", NULL), 1);

    /* a wakes: nothing it writes lands, ever again. */
    w = sg_write_create();
    sg_write_saga_update(w, x.id, SG_SAGA_FAILED, SG_COMP_NONE, "late", 5);
    assert_int_equal(sg_store_commit_sync(a, w), SG_EFENCED);
    assert_int_equal(sg_store_lease_until(a), 0);
    assert_int_equal(sg_store_health(a, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "lease"));
    assert_int_equal(insert_one(a, &y, 2), SG_EFENCED);
    char key[80];
    snprintf(key, sizeof key, "sagad:saga:%s", y.id);
    assert_int_equal(raw_int(c, "EXISTS %s", key), 0);
    snprintf(key, sizeof key, "sagad:saga:%s", x.id);
    assert_int_equal(raw_int(c, "HGET %s status", key), 0);
    sg_store_close(a);

    /* b finishes it; a FAILED saga is claimed by whoever redrives it. */
    w = sg_write_create();
    sg_write_event_update(w, ev.id, SG_EVENT_DELIVERED, 1, NULL, 6);
    sg_write_saga_update(w, x.id, SG_SAGA_FAILED, SG_COMP_COMPLETED, "failed", 6);
    assert_int_equal(sg_store_commit_sync(b, w), SG_OK);
    assert_int_equal(count_unfinished3(b, &comps, &pending), 1);
    assert_int_equal(comps, 0);
    sg_store *d = open_sync(t.path);
    w = sg_write_create();
    sg_write_saga_update(w, x.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 7);
    assert_int_equal(sg_store_commit_sync(d, w), SG_ENOTFOUND); /* b's, not d's */
    w = sg_write_create();
    sg_write_saga_expect(w, x.id, SG_SAGA_IN_PROGRESS, SG_COMP_COMPLETED); /* the guard fails */
    sg_write_saga_claim(w, x.id);
    sg_write_saga_update(w, x.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 7);
    assert_int_equal(sg_store_commit_sync(d, w), SG_ECONFLICT);
    assert_int_equal(count_unfinished(d), 0);
    w = sg_write_create();
    sg_write_saga_expect(w, x.id, SG_SAGA_FAILED, SG_COMP_COMPLETED);
    sg_write_saga_claim(w, x.id);
    sg_write_saga_update(w, x.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 7);
    assert_int_equal(sg_store_commit_sync(d, w), SG_OK);
    assert_int_equal(count_unfinished(d), 1);
    assert_int_equal(count_unfinished(b), 1); /* z */

    /* A clean close gives the lease up: the next store takes over at once. */
    sg_store_close(d);
    sg_store *e = open_sync(t.path);
    assert_int_equal(count_unfinished(e), 1);
    sg_store_close(b);
    assert_int_equal(adopt(e), 1); /* z */
    assert_int_equal(count_unfinished(e), 2);
    sg_store_close(e);
    assert_int_equal(raw_int(c, "HLEN sagad:leases", NULL), 1);
    sg_saga_rec_free(&x);
    sg_saga_rec_free(&y);
    sg_saga_rec_free(&z);
    sg_event_rec_free(&ev);
    redisFree(c);
    tmpdb_remove(&t);
}

/* A lease lost while idle: the writer's probe (a commit of nothing)
 * fences too; one merely expired is renewed. */
static void test_probe_fenced(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    char oa[SG_ID_LEN + 1], ls[64], err[256];
    /* A short lease: the idle writer probes (renews) every 100 ms. */
    sg_store_options o = {.lease_ms = 300};
    sg_store *a = NULL;
    assert_int_equal(sg_store_open(&a, t.path, NULL, &o, err, sizeof err), SG_OK);
    long long ea = epoch_of(a, oa);
    redisContext *c = raw(db_of(&t));
    /* Probes one after another, then a write: replies stay in step, and
     * the lease outlives its length. */
    uv_sleep(700);
    assert_true(sg_store_lease_until(a) > uv_hrtime() / 1000000);
    sg_saga_rec first;
    assert_int_equal(insert_one(a, &first, 1), SG_OK);
    sg_saga_rec_free(&first);
    /* Expired but taken by no one (Redis out of reach for everyone): the
     * next renewal keeps it. */
    snprintf(ls, sizeof ls, "%lld 0", ea);
    raw_ok(c, "HSET sagad:leases %s %s", oa, ls);
    assert_int_equal(sg_store_commit_sync(a, sg_write_create()), SG_OK);
    assert_true(sg_store_lease_until(a) > uv_hrtime() / 1000000);
    /* Taken over (a takeover deletes it): the probe fences. */
    raw_ok(c, "HDEL %s %s", "sagad:leases", oa);
    assert_int_equal(sg_store_commit_sync(a, sg_write_create()), SG_EFENCED);
    sg_saga_rec r;
    assert_int_equal(insert_one(a, &r, 1), SG_EFENCED);
    sg_store_close(a);
    sg_saga_rec_free(&r);
    redisFree(c);
    tmpdb_remove(&t);
}

static void test_newer_layout_refused(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    redisContext *c = raw(db_of(&t));
    raw_ok(c, "SET sagad:version %s", "99", NULL);
    char err[512];
    sg_store *s;
    assert_int_equal(try_open(t.path, err, sizeof err, &s), SG_EINVAL);
    assert_non_null(strstr(err, "layout version 99, newer than this sagad supports (3)"));
    raw_ok(c, "SET sagad:version %s", "garbage", NULL);
    assert_int_equal(try_open(t.path, err, sizeof err, &s), SG_EINVAL);
    /* Refused before it took a lease. */
    redisReply *rep = redisCommand(c, "EXISTS sagad:leases");
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    redisFree(c);
    tmpdb_remove(&t);
}

/* A database of layout 1 (one owner, no leases): refused while its
 * sagad's owner key lives, then upgraded at open, its sagas this
 * process's. */
static void test_upgrade_from_layout_1(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec r;
    assert_int_equal(insert_one(s, &r, 1), SG_OK);
    sg_store_close(s);
    /* What layout 1 left: no owners, no per-owner indexes, no leases. */
    redisContext *c = raw(db_of(&t));
    char key[80];
    snprintf(key, sizeof key, "sagad:saga:%s", r.id);
    raw_ok(c, "HDEL %s owner", key, NULL);
    redisReply *rep = redisCommand(c, "KEYS sagad:o:*");
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < rep->elements; i++)
        raw_ok(c, "DEL %s", rep->element[i]->str, NULL);
    freeReplyObject(rep);
    raw_ok(c, "DEL sagad:leases", NULL, NULL);
    raw_ok(c, "SET sagad:version %s", "1", NULL);
    raw_ok(c, "SET sagad:owner %s", "older-sagad", NULL);
    char err[512];
    assert_int_equal(try_open(t.path, err, sizeof err, &s), SG_EUNAVAIL);
    assert_non_null(strstr(err, "in use by an older sagad"));
    raw_ok(c, "DEL sagad:owner", NULL, NULL);
    s = open_sync(t.path);
    assert_int_equal(count_unfinished(s), 1);
    char me[SG_ID_LEN + 1];
    epoch_of(s, me);
    rep = redisCommand(c, "HGET %s owner", key);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, me);
    freeReplyObject(rep);
    assert_int_equal(raw_int(c, "GET sagad:version", NULL), 3);
    sg_store_close(s);
    /* Layout 2 (before trace context) becomes 3 with its data as it is. */
    raw_ok(c, "SET sagad:version %s", "2", NULL);
    s = open_sync(t.path);
    assert_int_equal(count_unfinished(s), 1);
    assert_int_equal(raw_int(c, "GET sagad:version", NULL), 3);
    sg_store_close(s);
    sg_saga_rec_free(&r);
    redisFree(c);
    tmpdb_remove(&t);
}

/* Every client connection killed (as a server restart does): the next
 * write or read may fail with the reason, the one after reconnects. */
static void test_connection_lost(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    sg_saga_rec r1, r2, got;
    make_saga(&r1, "{}", 2, NULL, 1);
    make_saga(&r2, "{}", 2, NULL, 2);
    insert_sync(s, &r1);
    redisContext *c = raw(0);
    raw_ok(c, "CLIENT KILL TYPE %s", "normal", NULL);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &r2);
    sg_status st = sg_store_commit_sync(s, w);
    char why[256];
    if (st != SG_OK) {
        assert_int_equal(st, SG_EIO);
        assert_int_equal(sg_store_health(s, why, sizeof why), SG_EIO);
        assert_non_null(strstr(why, "Redis"));
        insert_sync(s, &r2);
    }
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_OK);
    memset(&got, 0, sizeof got);
    st = sg_store_get(rd, r2.id, &got);
    if (st != SG_OK) {
        assert_int_equal(st, SG_EIO);
        assert_non_null(strstr(sg_store_reader_error(rd), "Redis"));
        st = sg_store_get(rd, r2.id, &got);
    }
    assert_int_equal(st, SG_OK);
    sg_saga_rec_free(&got);
    sg_store_reader_close(rd);
    sg_store_close(s);
    sg_saga_rec_free(&r1);
    sg_saga_rec_free(&r2);
    redisFree(c);
    tmpdb_remove(&t);
}

/* Data of the wrong shape under the store's keys: reads fail or bound
 * it, never crash. */
static void test_wrong_shapes(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    sg_saga_rec r, got;
    make_saga(&r, "{}", 2, NULL, 1);
    insert_sync(s, &r);
    redisContext *c = raw(db_of(&t));
    char key[80];
    snprintf(key, sizeof key, "sagad:saga:%s", r.id);
    /* An absurd step count: no steps rather than a huge allocation. */
    raw_ok(c, "HSET %s nsteps 999999999999", key, NULL);
    memset(&got, 0, sizeof got);
    assert_int_equal(sg_store_get(rd, r.id, &got), SG_OK);
    assert_int_equal(got.nsteps, 0);
    sg_saga_rec_free(&got);
    /* An index that is not a sorted set: the listing fails with why. */
    raw_ok(c, "DEL sagad:sagas", NULL, NULL);
    raw_ok(c, "SET sagad:sagas %s", "x", NULL);
    sg_list_query q = {-1, 10, NULL, NULL};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_EIO);
    assert_non_null(strstr(sg_store_reader_error(rd), "WRONGTYPE"));
    /* A record that is not a hash. */
    raw_ok(c, "DEL %s", key, NULL);
    raw_ok(c, "SET %s %s", key, "x");
    assert_int_equal(sg_store_get(rd, r.id, &got), SG_EIO);
    sg_store_reader_close(rd);
    sg_store_close(s);
    sg_saga_rec_free(&r);
    redisFree(c);
    tmpdb_remove(&t);
}

/* Redis refuses SIGTERM while it writes an initial AOF ("Writing initial
 * AOF, can't exit"; test_durability_settings turns appendonly back on,
 * which starts one), which would leave with_redis.sh waiting for a
 * server that never stops when the tests finish quickly: wait for it. */
static void wait_initial_aof(void)
{
    if (!test_store_url() || !getenv("SG_TEST_REDIS_PORT")) return;
    redisContext *c = raw(0);
    for (int i = 0; i < 200; i++) {
        redisReply *r = redisCommand(c, "INFO persistence");
        int busy = !r || r->type != REDIS_REPLY_STRING ||
                   strstr(r->str, "aof_rewrite_in_progress:1") ||
                   strstr(r->str, "aof_rewrite_scheduled:1");
        if (r) freeReplyObject(r);
        if (!busy) break;
        uv_sleep(50);
    }
    redisFree(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_durability_settings),
        cmocka_unit_test(test_leases),
        cmocka_unit_test(test_probe_fenced),
        cmocka_unit_test(test_upgrade_from_layout_1),
        cmocka_unit_test(test_newer_layout_refused),
        cmocka_unit_test(test_connection_lost),
        cmocka_unit_test(test_wrong_shapes),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    wait_initial_aof();
    return failed;
}
