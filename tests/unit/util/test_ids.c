/* Unit tests for the ids of util.c: time-ordered (version 7) UUIDs —
 * layout, timestamp, strictly increasing within a thread (also past the
 * counter of one millisecond), unique across threads and across a fork —
 * and random (version 4) ones from the same random pool. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sg/util.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static unsigned hexval(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

/* The 48-bit millisecond timestamp of a v7 id (its first 12 hex digits). */
static uint64_t id_ms(const char *id)
{
    uint64_t v = 0;
    for (int i = 0; i < 13; i++)
        if (id[i] != '-') v = v << 4 | hexval(id[i]);
    return v;
}

static void assert_v7_layout(const char *id)
{
    assert_int_equal(strlen(id), SG_ID_LEN);
    assert_true(sg_uuid_valid(id, SG_ID_LEN));
    for (int i = 0; i < SG_ID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(id[i], '-');
        else
            assert_true((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'));
    }
    assert_int_equal(id[14], '7');           /* version */
    assert_non_null(strchr("89ab", id[19])); /* variant 10xx */
}

static void v7_layout_and_time(void **state)
{
    (void)state;
    char id[SG_ID_LEN + 1];
    uint64_t before = now_ms();
    sg_uuid_v7(id);
    uint64_t after = now_ms();
    assert_v7_layout(id);
    assert_true(id_ms(id) >= before);
    assert_true(id_ms(id) <= after);
}

/* Far more ids than one millisecond's counter holds (ids come faster than
 * 2048 a millisecond here): every one is greater than the one before, as
 * text, and the timestamps stay near the clock (a spent counter moves on
 * to the next millisecond, at most one millisecond per 2048 ids). */
static void v7_strictly_increasing(void **state)
{
    (void)state;
    enum { N = 200000 };
    char prev[SG_ID_LEN + 1], id[SG_ID_LEN + 1];
    uint64_t before = now_ms();
    sg_uuid_v7(prev);
    for (int i = 1; i < N; i++) {
        sg_uuid_v7(id);
        if (strcmp(id, prev) <= 0) fail_msg("id %d not increasing: %s after %s", i, id, prev);
        memcpy(prev, id, sizeof id);
    }
    uint64_t after = now_ms();
    assert_v7_layout(prev);
    assert_true(id_ms(prev) >= before);
    assert_true(id_ms(prev) <= after + N / 2048 + 1);
}

enum { THREADS = 4, PER_THREAD = 20000 };

static void *make_ids(void *arg)
{
    char(*ids)[SG_ID_LEN + 1] = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        sg_uuid_v7(ids[i]);
        if (i && strcmp(ids[i], ids[i - 1]) <= 0) return (void *)1;
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Threads making ids at once, in the same milliseconds: each thread's are
 * increasing, and no id repeats across them. */
static void v7_unique_across_threads(void **state)
{
    (void)state;
    char(*ids)[SG_ID_LEN + 1] = calloc(THREADS * PER_THREAD, SG_ID_LEN + 1);
    assert_non_null(ids);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, make_ids, ids + t * PER_THREAD), 0);
    for (int t = 0; t < THREADS; t++) {
        void *res = NULL;
        assert_int_equal(pthread_join(th[t], &res), 0);
        assert_null(res);
    }
    qsort(ids, THREADS * PER_THREAD, SG_ID_LEN + 1, cmp_id);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        if (strcmp(ids[i], ids[i - 1]) == 0) fail_msg("repeated id %s", ids[i]);
    free(ids);
}

/* A forked child does not reuse the random bytes its parent had pooled:
 * the next id of each differs in its random part. */
static void v7_fork_does_not_repeat(void **state)
{
    (void)state;
    char mine[SG_ID_LEN + 1], theirs[SG_ID_LEN + 1] = "";
    sg_uuid_v7(mine); /* the pool is filled now */
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[SG_ID_LEN + 1];
        sg_uuid_v7(id);
        _exit(write(fd[1], id, SG_ID_LEN) == SG_ID_LEN ? 0 : 1);
    }
    sg_uuid_v7(mine);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(read(fd[0], theirs, SG_ID_LEN), SG_ID_LEN);
    theirs[SG_ID_LEN] = '\0';
    close(fd[0]);
    close(fd[1]);
    assert_v7_layout(theirs);
    /* The last 16 hex digits are random (but for the variant bits). */
    assert_string_not_equal(mine + 20, theirs + 20);
}

/* Version 4 ids come from the same pool: random, version 4, distinct. */
static void v4_from_the_pool(void **state)
{
    (void)state;
    enum { N = 5000 }; /* several refills of the pool */
    char(*ids)[SG_ID_LEN + 1] = calloc(N, SG_ID_LEN + 1);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        sg_uuid_v4(ids[i]);
        assert_true(sg_uuid_valid(ids[i], SG_ID_LEN));
        assert_int_equal(ids[i][14], '4');
        assert_non_null(strchr("89ab", ids[i][19]));
    }
    qsort(ids, N, SG_ID_LEN + 1, cmp_id);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i], ids[i - 1]);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v7_layout_and_time),       cmocka_unit_test(v7_strictly_increasing),
        cmocka_unit_test(v7_unique_across_threads), cmocka_unit_test(v7_fork_does_not_repeat),
        cmocka_unit_test(v4_from_the_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
