/* The logger: lines from many threads come out whole, none lost, each
 * thread's in order; a warning goes out at once with everything before it;
 * the timestamp is sg_time_iso's. stderr is redirected to a file here. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sg/util.h"

#define THREADS 4
#define LINES 20000 /* per thread: several times the buffer */

static char path[64];
static int saved_err = -1;

static int redirect(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/sg-test-log-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_err = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    close(fd);
    return 0;
}

static int restore(void **state)
{
    (void)state;
    sg_log_flush();
    dup2(saved_err, STDERR_FILENO);
    close(saved_err);
    unlink(path);
    return 0;
}

static char *slurp(size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void *spam(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < LINES; i++)
        sg_log(SG_LOG_INFO, "t%d line %d %s", t, i, "padding to make the line longer than a few");
    return NULL;
}

static void many_threads_lose_nothing(void **state)
{
    (void)state;
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, spam, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    sg_log_flush();
    size_t n;
    char *text = slurp(&n);
    int next[THREADS] = {0};
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        /* "<27-char timestamp> info tN line I padding..." */
        assert_true(strlen(l) > SG_TIME_LEN + 6);
        assert_int_equal(l[SG_TIME_LEN - 1], 'Z');
        int t, i;
        assert_int_equal(sscanf(l + SG_TIME_LEN, " info t%d line %d", &t, &i), 2);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(i, next[t]); /* each thread's lines in order, none missing */
        next[t]++;
        lines++;
    }
    assert_int_equal(lines, THREADS * LINES);
    free(text);
}

static void warning_goes_out_at_once(void **state)
{
    (void)state;
    size_t before;
    free(slurp(&before));
    sg_log(SG_LOG_INFO, "an info line first");
    sg_log(SG_LOG_WARN, "then a warning");
    /* No flush, no sleep: the warning wrote both. */
    size_t n;
    char *text = slurp(&n);
    char *info = strstr(text + before, "info an info line first\n");
    char *warn = strstr(text + before, "warn then a warning\n");
    assert_non_null(info);
    assert_non_null(warn);
    assert_true(info < warn);
    free(text);
}

static void info_goes_out_on_its_own(void **state)
{
    (void)state;
    sg_log(SG_LOG_INFO, "written by the log thread");
    char *text = NULL;
    for (int i = 0; i < 200; i++) { /* about 10 ms; allow a busy machine 2 s */
        size_t n;
        free(text);
        text = slurp(&n);
        if (strstr(text, "written by the log thread")) break;
        usleep(10000);
    }
    assert_non_null(strstr(text, "info written by the log thread\n"));
    free(text);
}

static void timestamp_is_iso(void **state)
{
    (void)state;
    int64_t t0 = sg_now_us();
    sg_log(SG_LOG_ERROR, "stamped");
    int64_t t1 = sg_now_us();
    size_t n;
    char *text = slurp(&n);
    char *l = strstr(text, " error stamped\n");
    assert_non_null(l);
    l -= SG_TIME_LEN;
    char lo[SG_TIME_LEN + 1], hi[SG_TIME_LEN + 1], got[SG_TIME_LEN + 1];
    sg_time_iso(t0, lo);
    sg_time_iso(t1, hi);
    memcpy(got, l, SG_TIME_LEN);
    got[SG_TIME_LEN] = '\0';
    assert_true(strcmp(lo, got) <= 0 && strcmp(got, hi) <= 0);
    free(text);
}

/* --log-format json: one object a line; the message and fields are
 * escaped so that any text (quotes, control characters, bytes that are
 * not UTF-8) leaves the line valid JSON; absent fields are left out. */
static void json_lines(void **state)
{
    (void)state;
    assert_int_equal(sg_log_format_parse("json", &(sg_log_format){0}), SG_OK);
    sg_log_format f = SG_LOG_TEXT;
    assert_int_equal(sg_log_format_parse("JSON", &f), SG_EINVAL);
    assert_int_equal(sg_log_format_parse(NULL, &f), SG_EINVAL);
    assert_int_equal(sg_log_format_parse("text", &f), SG_OK);
    assert_int_equal(f, SG_LOG_TEXT);
    sg_log_set_format(SG_LOG_JSON);
    sg_log_fields fl = {.saga_id = "0190-id",
                        .type = "sta",
                        .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                        .step = "ai_\"model",
                        .status = "FAILED"};
    sg_log_saga(SG_LOG_WARN, &fl, "saga %s: \"q\" \\ \n\t\x01 \xc3\xa9 \xff\xc3 end", "x");
    sg_log(SG_LOG_ERROR, "plain %d", 7);
    sg_log_set_format(SG_LOG_TEXT);
    size_t n;
    char *text = slurp(&n);
    char *l = strstr(text, "{\"ts\":\"");
    assert_non_null(l);
    assert_int_equal(l[7 + SG_TIME_LEN], '"');
    assert_non_null(strstr(l, "\",\"level\":\"warn\",\"saga_id\":\"0190-id\",\"type\":\"sta\","
                              "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
                              "\"step\":\"ai_\\\"model\",\"status\":\"FAILED\","
                              "\"msg\":\"saga x: \\\"q\\\" \\\\ \\n\\t\\u0001 \xc3\xa9 "
                              "\\ufffd\\ufffd end\"}\n"));
    assert_non_null(strstr(l, "\",\"level\":\"error\",\"msg\":\"plain 7\"}\n"));
    assert_null(strstr(l, "\"event\""));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(many_threads_lose_nothing),
        cmocka_unit_test(warning_goes_out_at_once),
        cmocka_unit_test(info_goes_out_on_its_own),
        cmocka_unit_test(timestamp_is_iso),
        cmocka_unit_test(json_lines),
    };
    return cmocka_run_group_tests(tests, redirect, restore);
}
