/* Helpers of the definitions-file tests (test_def_file.c, test_def_errors.c):
 * JSON written with single quotes, files grown by repetition, and parsing
 * that checks the out-parameters on both outcomes. */
#ifndef SG_TEST_DEFS_HELPERS_H
#define SG_TEST_DEFS_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sg/alloc.h"
#include "sg/buf.h"
#include "sg/def.h"

/* The flags' policy in these tests. */
static const sg_def_defaults DFLT = {{1, 100, 2.0, 10000}};

/* s with every ' turned into ": JSON without escaped quotes. Caller frees. */
static inline char *q(const char *s)
{
    char *d = sg_xstrdup(s);
    for (char *p = d; *p; p++)
        if (*p == '\'') *p = '"';
    return d;
}

/* A file with one saga type "order" whose steps array is steps. */
#define ORDER(steps) "{'sagas':{'order':{'version':1,'steps':" steps "}}}"
/* A valid HTTP step named n. */
#define HTTP_STEP(n) "{'name':'" n "','http':{'url':'http://h/" n "'}}"

/* prefix, then item(i) for i in [0, n) joined by ",", then suffix. */
static inline char *repeat(const char *prefix, size_t n, const char *item_fmt, const char *suffix)
{
    sg_buf b;
    sg_buf_init(&b, SIZE_MAX);
    sg_buf_adds(&b, prefix);
    for (size_t i = 0; i < n; i++) {
        if (i) sg_buf_addc(&b, ',');
        sg_buf_addf(&b, item_fmt, i, i);
    }
    sg_buf_adds(&b, suffix);
    char *s = sg_buf_take(&b, NULL);
    sg_buf_free(&b);
    char *r = q(s);
    free(s);
    return r;
}

static inline void defs_free(sg_def **defs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_def_destroy(defs[i]);
    free(defs);
}

/* Parses the single-quoted text and expects success. */
static inline sg_def **parse_ok(const char *sq, size_t *n)
{
    char *text = q(sq), err[512] = "";
    sg_def **defs = NULL;
    sg_status st = sg_defs_parse(text, strlen(text), &DFLT, &defs, n, err, sizeof err);
    if (st != SG_OK) fprintf(stderr, "unexpected error: %s\n", err);
    assert_int_equal(st, SG_OK);
    assert_non_null(defs);
    assert_string_equal(err, "");
    free(text);
    return defs;
}

/* Parses raw text (no quote turning) and expects failure with message. */
static inline void fails_raw(const char *text, size_t len, const char *message)
{
    char err[512] = "x";
    sg_def **defs = (sg_def **)&defs; /* not NULL: the call must clear it */
    size_t n = 99;
    sg_status st = sg_defs_parse(text, len, &DFLT, &defs, &n, err, sizeof err);
    if (st == SG_OK || strcmp(err, message) != 0)
        fprintf(stderr, "input:    %.200s\nexpected: %s\ngot:      %s (%s)\n", text, message, err,
                sg_status_text(st));
    assert_int_not_equal(st, SG_OK);
    assert_null(defs);
    assert_int_equal(n, 0);
    assert_string_equal(err, message);
}

static inline void fails(const char *sq, const char *message)
{
    char *text = q(sq);
    fails_raw(text, strlen(text), message);
    free(text);
}

#endif
