/* The Redis store's own rules, against a real redis-server (run through
 * with_redis.sh, as unit/store/test_redis@redis; without SG_TEST_STORE_URL
 * every test is skipped): strict URLs whose messages never show the
 * password, the durability settings it requires, one owner per database,
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

/* One sagad per database: a second is refused while the first lives; a
 * dead one's key expires; a clean close releases it at once. */
static void test_one_owner(void **state)
{
    (void)state;
    skip_without_redis();
    tmpdb t;
    tmpdb_make(&t);
    char err[512];
    sg_store *a, *b;
    assert_int_equal(try_open(t.path, err, sizeof err, &a), SG_OK);
    uint64_t t0 = uv_hrtime();
    assert_int_equal(try_open(t.path, err, sizeof err, &b), SG_EUNAVAIL);
    assert_null(b);
    assert_non_null(strstr(err, "is in use by another sagad"));
    /* It waited out a dead owner's key before refusing: the first one
     * kept refreshing its key all along. */
    assert_true(uv_hrtime() - t0 > 3000000000ull);
    sg_store_close(a);
    t0 = uv_hrtime();
    assert_int_equal(try_open(t.path, err, sizeof err, &b), SG_OK);
    assert_true(uv_hrtime() - t0 < 2000000000ull);
    sg_store_close(b);

    /* A sagad that died holding the key (it expires in 1 s here). */
    redisContext *c = raw(db_of(&t));
    raw_ok(c, "SET sagad:owner %s PX %s", "dead-sagad", "1000");
    t0 = uv_hrtime();
    assert_int_equal(try_open(t.path, err, sizeof err, &b), SG_OK);
    assert_true(uv_hrtime() - t0 >= 900000000ull);
    /* Another sagad took the key while this one was away (paused past
     * its key's life): every write is refused, nothing is applied. */
    raw_ok(c, "SET sagad:owner %s PX %s", "thief", "60000");
    sg_saga_rec r;
    make_saga(&r, "{}", 2, NULL, 1);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &r);
    assert_int_equal(sg_store_commit_sync(b, w), SG_EIO);
    assert_int_equal(sg_store_health(b, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "in use by another sagad"));
    redisReply *rep = redisCommand(c, "EXISTS sagad:saga:%s", r.id);
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    raw_ok(c, "DEL sagad:owner", NULL, NULL);
    sg_saga_rec_free(&r);
    sg_store_close(b);
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
    assert_non_null(strstr(err, "layout version 99, newer than this sagad supports (1)"));
    raw_ok(c, "SET sagad:version %s", "garbage", NULL);
    assert_int_equal(try_open(t.path, err, sizeof err, &s), SG_EINVAL);
    /* Refused before it owned anything: the key is free. */
    redisReply *rep = redisCommand(c, "EXISTS sagad:owner");
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_errors),      cmocka_unit_test(test_durability_settings),
        cmocka_unit_test(test_one_owner),       cmocka_unit_test(test_newer_layout_refused),
        cmocka_unit_test(test_connection_lost), cmocka_unit_test(test_wrong_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
