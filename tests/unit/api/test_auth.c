/* API bearer tokens (src/api/auth.c): token syntax, the token file and
 * its bounds, the Authorization header, the constant-time match, and the
 * set in use across reloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/auth_int.h"

static void test_token_syntax(void **state)
{
    (void)state;
    const char *good[] = {"a", "abc123", "A-._~+/z", "abc=", "abc==", "x/y+z=", NULL};
    for (const char **t = good; *t; t++)
        if (!sg_auth_token_ok(*t)) fail_msg("refused %s", *t);
    const char *bad[] = {"",    "=",     "==abc", "ab=c", "a b", "a\tb", "tok\xc3\xa9",
                         "a,b", "\"a\"", "a;",    "a\r",  NULL};
    for (const char **t = bad; *t; t++)
        if (sg_auth_token_ok(*t)) fail_msg("accepted '%s'", *t);
    assert_false(sg_auth_token_ok(NULL));
    char longest[SG_AUTH_TOKEN_MAX + 2];
    memset(longest, 'k', sizeof longest);
    longest[SG_AUTH_TOKEN_MAX] = '\0';
    assert_true(sg_auth_token_ok(longest));
    longest[SG_AUTH_TOKEN_MAX] = 'k';
    longest[SG_AUTH_TOKEN_MAX + 1] = '\0';
    assert_false(sg_auth_token_ok(longest));
    /* A NUL inside is not part of a token. */
    assert_false(sg__auth_token_syntax("ab\0c", 4));
}

static void test_bearer(void **state)
{
    (void)state;
    const char *tok;
    size_t len;
    static const struct {
        const char *in, *tok;
    } good[] = {
        {"Bearer abc", "abc"},    {"bearer abc", "abc"},
        {"BEARER abc", "abc"},    {"bEaReR abc", "abc"},
        {"Bearer    abc", "abc"}, {"  Bearer abc  ", "abc"},
        {"Bearer\tabc", "abc"},   {"Bearer a.b-c_d~e+f/g==", "a.b-c_d~e+f/g=="},
        {"Bearer abc \t", "abc"},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        if (sg__auth_bearer(good[i].in, &tok, &len) != SG_OK) fail_msg("refused '%s'", good[i].in);
        assert_int_equal(len, strlen(good[i].tok));
        assert_memory_equal(tok, good[i].tok, len);
    }
    const char *bad[] = {"",
                         "Bearer",
                         "Bearer ",
                         "Bearer    ",
                         "Bearerabc",
                         "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
                         "Bearer abc def",
                         "Bearer abc,def",
                         "Bearer =abc",
                         "Bearer ab=c",
                         "Bearer \"abc\"",
                         "Token abc",
                         "Bearer abc\r\nX: y",
                         " ",
                         "Bear abc",
                         "Bearer\xc2\xa0"
                         "abc",
                         NULL};
    for (const char **b = bad; *b; b++) {
        if (sg__auth_bearer(*b, &tok, &len) == SG_OK) fail_msg("accepted '%s'", *b);
        assert_null(tok);
        assert_int_equal(len, 0);
    }
    assert_int_equal(sg__auth_bearer(NULL, &tok, &len), SG_EINVAL);

    /* A huge header parses in one pass and yields a token too long to be
     * any configured one. */
    size_t big = 1 << 20;
    char *h = malloc(big + 8);
    memcpy(h, "Bearer ", 7);
    memset(h + 7, 'x', big);
    h[7 + big] = '\0';
    assert_int_equal(sg__auth_bearer(h, &tok, &len), SG_OK);
    assert_int_equal(len, big);
    sg_auth_token one = {.len = SG_AUTH_TOKEN_MAX};
    memset(one.bytes, 'x', SG_AUTH_TOKEN_MAX);
    /* Its first SG_AUTH_TOKEN_MAX bytes equal the configured token: still no. */
    assert_false(sg__auth_match(&one, 1, tok, len));
    assert_true(sg__auth_match(&one, 1, tok, SG_AUTH_TOKEN_MAX));
    free(h);
}

static sg_auth_token tok_of(const char *s)
{
    sg_auth_token t = {.len = strlen(s)};
    memcpy(t.bytes, s, t.len);
    return t;
}

static void test_match(void **state)
{
    (void)state;
    sg_auth_token set[3] = {tok_of("alpha"), tok_of("beta-token"), tok_of("gamma==")};
    assert_true(sg__auth_match(set, 3, "alpha", 5));
    assert_true(sg__auth_match(set, 3, "beta-token", 10));
    assert_true(sg__auth_match(set, 3, "gamma==", 7));
    assert_false(sg__auth_match(set, 3, "alph", 4));      /* a prefix */
    assert_false(sg__auth_match(set, 3, "alphaa", 6));    /* an extension */
    assert_false(sg__auth_match(set, 3, "Alpha", 5));     /* tokens are case-sensitive */
    assert_false(sg__auth_match(set, 3, "gamma=", 6));    /* padding counts */
    assert_false(sg__auth_match(set, 3, "alpha\0\0", 7)); /* the zero padding is not a token */
    assert_false(sg__auth_match(set, 3, "", 0));
    assert_false(sg__auth_match(set, 0, "alpha", 5));
    /* Any one differing byte, at any position, is a mismatch. */
    sg_auth_token full;
    memset(full.bytes, 'q', sizeof full.bytes);
    full.len = SG_AUTH_TOKEN_MAX;
    char probe[SG_AUTH_TOKEN_MAX];
    for (size_t i = 0; i < SG_AUTH_TOKEN_MAX; i++) {
        memset(probe, 'q', sizeof probe);
        probe[i] = 'r';
        assert_false(sg__auth_match(&full, 1, probe, sizeof probe));
    }
    memset(probe, 'q', sizeof probe);
    assert_true(sg__auth_match(&full, 1, probe, sizeof probe));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One batch of calls, timed. */
static double batch(const sg_auth_token *set, size_t n, const char *tok, size_t len)
{
    volatile int sink = 0;
    double t0 = now_s();
    for (int i = 0; i < 200; i++)
        sink += sg__auth_match(set, n, tok, len);
    (void)sink;
    return now_s() - t0;
}

/* A comparison that stopped at the first differing byte (or at a length
 * that differs) would answer "x" many times faster than a full match of a
 * 256-byte token against the last of 64; this one takes the same time.
 * The cases take turns, and each keeps its fastest batch: scheduling
 * noise only ever adds time, and it hits every case alike. */
static void test_match_time(void **state)
{
    (void)state;
    enum { N = 64 };
    sg_auth_token *set = calloc(N, sizeof *set);
    for (int k = 0; k < N; k++) {
        memset(set[k].bytes, 'a' + k % 26, SG_AUTH_TOKEN_MAX);
        set[k].bytes[0] = (unsigned char)('A' + k % 26);
        set[k].len = SG_AUTH_TOKEN_MAX;
    }
    char last[SG_AUTH_TOKEN_MAX];
    memcpy(last, set[N - 1].bytes, sizeof last);
    char near[SG_AUTH_TOKEN_MAX];
    memcpy(near, last, sizeof near);
    near[SG_AUTH_TOKEN_MAX - 1] ^= 1;
    const struct {
        const char *tok;
        size_t len;
    } cases[4] = {
        {last, sizeof last},       /* matches the last token */
        {near, sizeof near},       /* differs in the last byte */
        {"x", 1},                  /* differs at once, and short */
        {(char *)set[0].bytes, 3}, /* a prefix of the first */
    };
    double t[4] = {1e9, 1e9, 1e9, 1e9};
    for (int round = 0; round < 60; round++)
        for (int i = 0; i < 4; i++) {
            double dt = batch(set, N, cases[i].tok, cases[i].len);
            if (dt < t[i]) t[i] = dt;
        }
    double lo = t[0], hi = t[0];
    for (int i = 1; i < 4; i++) {
        if (t[i] < lo) lo = t[i];
        if (t[i] > hi) hi = t[i];
    }
    print_message("match %.6f near %.6f short %.6f prefix %.6f s\n", t[0], t[1], t[2], t[3]);
    /* An early exit would make hi/lo about 50 or more; noise stays well under 2. */
    assert_true(hi / lo < 2.0);
    free(set);
}

static void test_parse_file(void **state)
{
    (void)state;
    sg_auth_token *set;
    size_t n;
    char err[256];
    const char text[] = "# tokens for sagad\n\n  first-token  \r\nsecond==\n\t# indented comment\n"
                        "third";
    assert_int_equal(sg__auth_parse_file(text, sizeof text - 1, "f", &set, &n, err, sizeof err),
                     SG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(set[0].len, 11);
    assert_memory_equal(set[0].bytes, "first-token", 11);
    assert_memory_equal(set[1].bytes, "second==", 8);
    assert_memory_equal(set[2].bytes, "third", 5);
    assert_true(sg__auth_match(set, n, "third", 5));
    free(set);

    static const struct {
        const char *text;
        size_t len;
        const char *why;
    } bad[] = {
        {"", 0, "f: no token"},
        {"# only\n\n   \n", 12, "f: no token"},
        {"good\nsecret with space\n", 23, "f line 2: not a token"},
        {"good\nsec\0ret\n", 13, "f line 2: not a token"},
        {"a\n\n\nb\"c\n", 8, "f line 4: not a token"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(
            sg__auth_parse_file(bad[i].text, bad[i].len, "f", &set, &n, err, sizeof err),
            SG_EINVAL);
        assert_null(set);
        if (!strstr(err, bad[i].why)) fail_msg("case %zu: '%s'", i, err);
        /* Never the content of a line. */
        assert_null(strstr(err, "secret"));
        assert_null(strstr(err, "ret"));
    }

    /* A token one byte too long; then exactly SG_AUTH_TOKENS_MAX tokens, and one more. */
    char *big = malloc((SG_AUTH_TOKENS_MAX + 1) * 8 + SG_AUTH_TOKEN_MAX + 8);
    memset(big, 'z', SG_AUTH_TOKEN_MAX + 1);
    assert_int_equal(
        sg__auth_parse_file(big, SG_AUTH_TOKEN_MAX + 1, "f", &set, &n, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "longer than 256 bytes"));
    size_t len = 0;
    for (int i = 0; i < SG_AUTH_TOKENS_MAX; i++)
        len += (size_t)sprintf(big + len, "t%05d\n", i);
    assert_int_equal(sg__auth_parse_file(big, len, "f", &set, &n, err, sizeof err), SG_OK);
    assert_int_equal(n, SG_AUTH_TOKENS_MAX);
    assert_true(sg__auth_match(set, n, "t01023", 6));
    free(set);
    len += (size_t)sprintf(big + len, "extra\n");
    assert_int_equal(sg__auth_parse_file(big, len, "f", &set, &n, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "more than 1024 tokens"));
    free(big);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void test_object(void **state)
{
    (void)state;
    char dir[] = "/tmp/sg-auth-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/tokens", dir);
    sg_auth *a = (sg_auth *)1;

    /* Nothing configured: no object, every request goes through. */
    assert_int_equal(sg_auth_create(&a, NULL, NULL, err, sizeof err), SG_OK);
    assert_null(a);
    /* A bad fixed token, a missing or unusable file. */
    assert_int_equal(sg_auth_create(&a, "has space", NULL, err, sizeof err), SG_EINVAL);
    assert_null(strstr(err, "has space"));
    assert_int_equal(sg_auth_create(&a, "ok", path, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(sg_auth_create(&a, NULL, dir, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
    char *huge = calloc(1, SG_AUTH_FILE_MAX + 1);
    memset(huge, '\n', SG_AUTH_FILE_MAX + 1);
    write_file(path, huge, SG_AUTH_FILE_MAX + 1);
    free(huge);
    assert_int_equal(sg_auth_create(&a, NULL, path, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "larger than"));

    /* The fixed token and the file's, both good; the file re-read. */
    write_file(path, "one\ntwo\n", 8);
    assert_int_equal(sg_auth_create(&a, "fixed", path, err, sizeof err), SG_OK);
    assert_non_null(a);
    assert_string_equal(sg_auth_file(a), path);
    assert_int_equal(sg_auth_check(a, "Bearer fixed", 1), SG_AUTH_ALLOW);
    assert_int_equal(sg_auth_check(a, "Bearer one", 1), SG_AUTH_ALLOW);
    assert_int_equal(sg_auth_check(a, "bearer two", 1), SG_AUTH_ALLOW);
    assert_int_equal(sg_auth_check(a, "Bearer three", 1), SG_AUTH_WRONG);
    assert_int_equal(sg_auth_check(a, NULL, 0), SG_AUTH_MISSING);
    assert_int_equal(sg_auth_check(a, "Basic one", 1), SG_AUTH_MALFORMED);
    assert_int_equal(sg_auth_check(a, "Bearer one", 2), SG_AUTH_MALFORMED); /* two headers */
    assert_int_equal(sg_auth_check(a, "Bearer ", 1), SG_AUTH_MALFORMED);

    write_file(path, "three\n", 6);
    size_t n = 0;
    assert_int_equal(sg_auth_reload(a, &n, err, sizeof err), SG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(sg_auth_check(a, "Bearer one", 1), SG_AUTH_WRONG);
    assert_int_equal(sg_auth_check(a, "Bearer three", 1), SG_AUTH_ALLOW);
    assert_int_equal(sg_auth_check(a, "Bearer fixed", 1), SG_AUTH_ALLOW);

    /* A broken file, an empty one, a vanished one: the set in use stays. */
    write_file(path, "four\nnot a token\n", 17);
    assert_int_equal(sg_auth_reload(a, &n, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "line 2"));
    assert_int_equal(n, 2);
    write_file(path, "", 0);
    assert_int_equal(sg_auth_reload(a, &n, err, sizeof err), SG_EINVAL);
    unlink(path);
    assert_int_equal(sg_auth_reload(a, &n, err, sizeof err), SG_EINVAL);
    assert_int_equal(sg_auth_check(a, "Bearer three", 1), SG_AUTH_ALLOW);
    assert_int_equal(sg_auth_check(a, "Bearer four", 1), SG_AUTH_WRONG);
    sg_auth_destroy(a);

    /* A fixed token alone: reload has nothing to read. */
    assert_int_equal(sg_auth_create(&a, "solo", NULL, err, sizeof err), SG_OK);
    assert_int_equal(sg_auth_reload(a, &n, err, sizeof err), SG_OK);
    assert_int_equal(n, 1);
    assert_null(sg_auth_file(a));
    assert_int_equal(sg_auth_check(a, "Bearer solo", 1), SG_AUTH_ALLOW);
    sg_auth_destroy(a);
    sg_auth_destroy(NULL);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_syntax), cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_match),        cmocka_unit_test(test_match_time),
        cmocka_unit_test(test_parse_file),   cmocka_unit_test(test_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
