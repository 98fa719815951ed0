/* sg/metrics.h: the exposition text (families, label escaping, cumulative
 * buckets, sums), per-thread counting folded across threads (also threads
 * that have exited), and the bounded label tables. The counters are
 * process-wide, so each test uses its own label values and compares what
 * it added. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sg/metrics.h"

/* The exposition now (caller frees). */
static char *render(void)
{
    sg_buf b;
    sg_buf_init(&b, (size_t)64 << 20);
    sg_metrics_outbox ob[2] = {{"PENDING", 3}, {"PA\"RK\\ED\n", 7}};
    assert_int_equal(sg_metrics_render(&b, ob, 2), SG_OK);
    size_t len;
    char *t = sg_buf_take(&b, &len);
    assert_int_equal(strlen(t), len);
    assert_true(len > 0 && t[len - 1] == '\n');
    return t;
}

/* The value of the line that is exactly `series value`; -1 if none. */
static double value_in(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

static double value(const char *series)
{
    char *t = render();
    double v = value_in(t, series);
    free(t);
    return v;
}

static void test_escape(void **state)
{
    (void)state;
    sg_buf b;
    sg_buf_init(&b, 64);
    assert_int_equal(sg_metrics_escape_label(&b, "a\\b\"c\nd{}=,"), SG_OK);
    assert_string_equal(b.ptr, "a\\\\b\\\"c\\nd{}=,");
    sg_buf_free(&b);
    sg_buf_init(&b, 3);
    assert_int_equal(sg_metrics_escape_label(&b, "\\\\"), SG_ETOOBIG);
    sg_buf_free(&b);

    /* A label value from a definition goes out escaped. */
    sg_metrics_saga_started("we\"ird\\ty\npe");
    assert_true(value("sagad_sagas_started_total{type=\"we\\\"ird\\\\ty\\npe\"}") == 1);
    char *t = render();
    assert_non_null(strstr(t, "sagad_outbox_events{status=\"PA\\\"RK\\\\ED\\n\"} 7\n"));
    free(t);
}

static void test_families(void **state)
{
    (void)state;
    char *t = render();
    static const char *const fam[][2] = {
        {"sagad_sagas_started_total", "counter"},  {"sagad_sagas_finished_total", "counter"},
        {"sagad_sagas_in_flight", "gauge"},        {"sagad_step_duration_seconds", "histogram"},
        {"sagad_outbox_events", "gauge"},          {"sagad_store_commit_seconds", "histogram"},
        {"sagad_store_batch_writes", "histogram"}, {"sagad_http_requests_total", "counter"},
    };
    for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
        char line[160];
        snprintf(line, sizeof line, "\n# TYPE %s %s\n", fam[i][0], fam[i][1]);
        assert_non_null(strstr(t, line));
        char *type = strstr(t, line);
        snprintf(line, sizeof line, "# HELP %s ", fam[i][0]);
        char *help = strstr(t, line);
        assert_non_null(help);
        assert_true(help < type); /* HELP, then TYPE, then the samples */
    }
    free(t);
    /* Without outbox counts the family is left out. */
    sg_buf b;
    sg_buf_init(&b, (size_t)64 << 20);
    assert_int_equal(sg_metrics_render(&b, NULL, 0), SG_OK);
    assert_null(strstr(b.ptr, "sagad_outbox_events"));
    sg_buf_free(&b);
    /* A cap too small: SG_ETOOBIG, never past the cap. */
    sg_buf_init(&b, 100);
    assert_int_equal(sg_metrics_render(&b, NULL, 0), SG_ETOOBIG);
    assert_true(b.len <= 100);
    sg_buf_free(&b);
}

static void test_saga_counts(void **state)
{
    (void)state;
    sg_metrics_saga_started("counted");
    sg_metrics_saga_started("counted");
    sg_metrics_saga_finished("counted", 0);
    sg_metrics_saga_finished("counted", 1);
    sg_metrics_saga_finished("counted", 1);
    /* Another pointer with the same text is the same series. */
    char copy[] = "counted";
    sg_metrics_saga_started(copy);
    assert_true(value("sagad_sagas_started_total{type=\"counted\"}") == 3);
    assert_true(value("sagad_sagas_finished_total{type=\"counted\",status=\"COMPLETED\"}") == 1);
    assert_true(value("sagad_sagas_finished_total{type=\"counted\",status=\"FAILED\"}") == 2);
    double in0 = value("sagad_sagas_in_flight");
    sg_metrics_inflight_add(5);
    sg_metrics_inflight_add(-2);
    assert_true(value("sagad_sagas_in_flight") == in0 + 3);
    sg_metrics_inflight_add(-3);
    assert_true(value("sagad_sagas_in_flight") == in0);
}

/* le is inclusive; buckets print cumulative; count is the +Inf bucket. */
static void test_histogram(void **state)
{
    (void)state;
#define S(le)                                                                                      \
    "sagad_step_duration_seconds_bucket{type=\"h\",step=\"s1\",outcome=\"ok\",le=\"" le "\"}"
    sg_metrics_step("h", "s1", SG_METRICS_OK, 1000000);     /* exactly 1 ms */
    sg_metrics_step("h", "s1", SG_METRICS_OK, 1000001);     /* just over */
    sg_metrics_step("h", "s1", SG_METRICS_OK, 0);           /* 0 */
    sg_metrics_step("h", "s1", SG_METRICS_OK, 31000000000); /* past the last bound */
    sg_metrics_step("h", "s1", SG_METRICS_RETRY, 2000000);
    sg_metrics_step("h", "s1", SG_METRICS_OUTCOMES, 1); /* not an outcome: ignored */
    char *t = render();
    assert_true(value_in(t, S("0.001")) == 2);
    assert_true(value_in(t, S("0.0025")) == 3);
    assert_true(value_in(t, S("30")) == 3);
    assert_true(value_in(t, S("+Inf")) == 4);
    assert_non_null(strstr(t,
                           "sagad_step_duration_seconds_sum{type=\"h\",step=\"s1\",outcome=\"ok\"} "
                           "31.002000001\n"));
    assert_true(
        value_in(t, "sagad_step_duration_seconds_count{type=\"h\",step=\"s1\",outcome=\"ok\"}") ==
        4);
    assert_true(value_in(t, "sagad_step_duration_seconds_count{type=\"h\",step=\"s1\",outcome="
                            "\"retry\"}") == 1);
    /* What never happened is not listed. */
    assert_null(strstr(t, "step=\"s1\",outcome=\"failed\""));
    /* Buckets never go down along le. */
    double prev = 0;
    static const char prefix[] =
        "sagad_step_duration_seconds_bucket{type=\"h\",step=\"s1\",outcome=\"ok\",le=";
    for (const char *p = strstr(t, S("0.001")); p && strncmp(p, prefix, sizeof prefix - 1) == 0;) {
        const char *sp = strchr(p, ' ');
        double v = strtod(sp + 1, NULL);
        assert_true(v >= prev);
        prev = v;
        p = strchr(p, '\n') + 1;
    }
    assert_true(prev == 4);
    free(t);
#undef S

    double c0 = value("sagad_store_commit_seconds_count");
    double w0 = value("sagad_store_batch_writes_sum");
    double b8 = value("sagad_store_batch_writes_bucket{le=\"8\"}");
    sg_metrics_store_commit(1500000000, 5);
    sg_metrics_store_commit(100000, 9000);
    assert_true(value("sagad_store_commit_seconds_count") == c0 + 2);
    assert_true(value("sagad_store_batch_writes_sum") == w0 + 9005);
    assert_true(value("sagad_store_batch_writes_bucket{le=\"8\"}") == b8 + 1);
}

static void test_http(void **state)
{
    (void)state;
    sg_metrics_http("/t/{id}", 200);
    sg_metrics_http("/t/{id}", 200);
    sg_metrics_http("/t/{id}", 599);
    sg_metrics_http("/t/{id}", 99);   /* out of range: code 0 */
    sg_metrics_http("/t/{id}", 1000); /* likewise */
    char *t = render();
    assert_true(value_in(t, "sagad_http_requests_total{route=\"/t/{id}\",code=\"200\"}") == 2);
    assert_true(value_in(t, "sagad_http_requests_total{route=\"/t/{id}\",code=\"599\"}") == 1);
    assert_true(value_in(t, "sagad_http_requests_total{route=\"/t/{id}\",code=\"0\"}") == 2);
    free(t);
}

/* ---- threads ------------------------------------------------------------- */

#define PER_THREAD 100000

static void *count_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        sg_metrics_saga_started("threaded");
        sg_metrics_inflight_add(1);
        sg_metrics_step("threaded", "st", SG_METRICS_FAILED, 1);
    }
    for (int i = 0; i < PER_THREAD; i++)
        sg_metrics_inflight_add(-1);
    return NULL;
}

static int scrape_bad; /* cmocka's asserts belong to the main thread */

/* Scrapes while the counters move: never more than was counted, never
 * less than the scrape before. */
static void *scrape_main(void *arg)
{
    int *stop = arg;
    double last = 0;
    while (!__atomic_load_n(stop, __ATOMIC_RELAXED)) {
        sg_buf b;
        sg_buf_init(&b, (size_t)64 << 20);
        if (sg_metrics_render(&b, NULL, 0) != SG_OK) scrape_bad = 1;
        double v = b.ptr ? value_in(b.ptr, "sagad_sagas_started_total{type=\"threaded\"}") : 0;
        if (v < 0) v = 0; /* no series yet */
        if (v > 8.0 * PER_THREAD || v < last) scrape_bad = 1;
        last = v;
        sg_buf_free(&b);
    }
    return NULL;
}

/* Counts from many threads, some gone before the scrape, all add up;
 * blocks of threads that exited are reused (and keep their counts). */
static void test_threads(void **state)
{
    (void)state;
    int stop = 0;
    pthread_t sc, th[4];
    assert_int_equal(pthread_create(&sc, NULL, scrape_main, &stop), 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 4; i++)
            assert_int_equal(pthread_create(&th[i], NULL, count_main, NULL), 0);
        for (int i = 0; i < 4; i++)
            pthread_join(th[i], NULL);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(sc, NULL);
    assert_false(scrape_bad);
    char *t = render();
    assert_true(value_in(t, "sagad_sagas_started_total{type=\"threaded\"}") == 8.0 * PER_THREAD);
    assert_true(value_in(t, "sagad_step_duration_seconds_count{type=\"threaded\",step=\"st\","
                            "outcome=\"failed\"}") == 8.0 * PER_THREAD);
    free(t);
}

/* Past a table's capacity, new values count under "_other": memory stays
 * bounded whatever names come. Last: it fills the tables. */
static void test_overflow(void **state)
{
    (void)state;
    static char names[3 * SG_METRICS_MAX_STEPS][16]; /* live for the process, as required */
    for (int i = 0; i < 3 * SG_METRICS_MAX_STEPS; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i);
        sg_metrics_saga_started(names[i]);
        sg_metrics_step("ov", names[i], SG_METRICS_OK, 5);
        sg_metrics_http(names[i], 200);
    }
    char *t = render();
    assert_true(value_in(t, "sagad_sagas_started_total{type=\"_other\"}") > 0);
    assert_true(value_in(t, "sagad_step_duration_seconds_count{type=\"_other\",step=\"_other\","
                            "outcome=\"ok\"}") > 0);
    assert_true(value_in(t, "sagad_http_requests_total{route=\"_other\",code=\"200\"}") > 0);
    /* The last name did not get a series of its own. */
    char series[96];
    snprintf(series, sizeof series, "sagad_sagas_started_total{type=\"%s\"}",
             names[3 * SG_METRICS_MAX_STEPS - 1]);
    assert_true(value_in(t, series) == -1);
    size_t lines = 0;
    for (const char *p = t; *p; p++)
        lines += *p == '\n';
    /* Types, steps x outcomes x buckets and routes x codes are capped. */
    assert_true(lines < SG_METRICS_MAX_TYPES * 3 + SG_METRICS_MAX_STEPS * 3 * 18 +
                            SG_METRICS_MAX_ROUTES * 8 + 200);
    free(t);
    /* Counting keeps working for names already in. */
    double v = value("sagad_sagas_started_total{type=\"counted\"}");
    sg_metrics_saga_started("counted");
    assert_true(value("sagad_sagas_started_total{type=\"counted\"}") == v + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),      cmocka_unit_test(test_families),
        cmocka_unit_test(test_saga_counts), cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_http),        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
