/* sg_json_validate: whether received bytes are one JSON value, without
 * building it. sagad keeps request and downstream bodies as the bytes it
 * received, so a check is all it needs, and it runs for every request and
 * every downstream answer: a parse into a tree (jansson) cost an
 * allocation per value on the loop thread.
 *
 * It accepts exactly what jansson's json_loadb accepts with
 * JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL (the rest of
 * sagad, templates and the stubs, parses bodies with those flags), within
 * SG_JSON_MAX_DEPTH: RFC 8259's grammar, strict UTF-8, \u escapes with
 * surrogates in pairs, \u0000 in strings but not in object keys, numbers
 * within a double's range. One difference, on purpose: jansson skips a raw
 * NUL byte that follows a number or a literal ("[1\0]"); a raw NUL is
 * never JSON, and here it is refused wherever it is. fuzz_json compares
 * the two on every input. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/json.h"
#include "sg/util.h"

typedef struct scan {
    const unsigned char *p, *end, *start;
    const char *why; /* set on the first error */
} scan;

static int fail(scan *s, const char *why)
{
    if (!s->why) s->why = why;
    return -1;
}

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int is_digit(const scan *s)
{
    return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

/* The value of the 4 hex digits at p, or -1. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* \uXXXX at s->p (after the backslash and 'u'), with its low surrogate if
 * it is a high one. *nul is set for \u0000. */
static int unicode_escape(scan *s, int *nul)
{
    if (s->end - s->p < 4) return fail(s, "premature end of input in a \\u escape");
    long v = hex4(s->p);
    if (v < 0) return fail(s, "invalid \\u escape");
    s->p += 4;
    if (v == 0) *nul = 1;
    if (v >= 0xdc00 && v <= 0xdfff) return fail(s, "a lone low surrogate in a \\u escape");
    if (v < 0xd800 || v > 0xdbff) return 0;
    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
        return fail(s, "a high surrogate without its low one in a \\u escape");
    long lo = hex4(s->p + 2);
    if (lo < 0xdc00 || lo > 0xdfff)
        return fail(s, "a high surrogate without its low one in a \\u escape");
    s->p += 6;
    return 0;
}

/* A string, s->p on its opening quote. *nul is set if it holds \u0000. */
static int string(scan *s, int *nul)
{
    s->p++;
    while (s->p < s->end) {
        unsigned char c = *s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20) return fail(s, "a control character in a string");
        if (c >= 0x80) {
            size_t k = sg_utf8_len(s->p, (size_t)(s->end - s->p));
            if (!k) return fail(s, "invalid UTF-8");
            s->p += k;
            continue;
        }
        s->p++;
        if (c != '\\') continue;
        if (s->p == s->end) break;
        c = *s->p++;
        if (c == 'u') {
            if (unicode_escape(s, nul) != 0) return -1;
        } else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
            return fail(s, "invalid escape in a string");
        }
    }
    return fail(s, "premature end of input in a string");
}

/* Whether the number text[0..n) overflows a double, as strtod says
 * (jansson refuses those; underflow to zero is accepted). */
static int overflows(const unsigned char *text, size_t n)
{
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy) return 1; /* cannot tell: refuse, as for any other limit */
    memcpy(copy, text, n);
    copy[n] = '\0';
    errno = 0;
    double v = strtod(copy, NULL);
    int over = errno == ERANGE && isinf(v);
    if (copy != small) free(copy);
    return over;
}

/* A number, s->p on its first character. */
static int number(scan *s)
{
    const unsigned char *from = s->p;
    int has_exp = 0;
    if (*s->p == '-') s->p++;
    if (!is_digit(s)) return fail(s, "invalid number");
    if (*s->p == '0') {
        s->p++;
    } else {
        while (is_digit(s))
            s->p++;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!is_digit(s)) return fail(s, "invalid number");
        while (is_digit(s))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        has_exp = 1;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (!is_digit(s)) return fail(s, "invalid number");
        while (is_digit(s))
            s->p++;
    }
    /* Without an exponent, fewer than 309 characters cannot reach DBL_MAX. */
    size_t n = (size_t)(s->p - from);
    if ((has_exp || n > 300) && overflows(from, n)) return fail(s, "number out of range");
    return 0;
}

static int literal(scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return fail(s, "invalid token");
    s->p += n;
    return 0;
}

/* A scalar at s->p (not '{' or '['). */
static int scalar(scan *s)
{
    int nul = 0;
    switch (*s->p) {
    case '"':
        return string(s, &nul);
    case 't':
        return literal(s, "true", 4);
    case 'f':
        return literal(s, "false", 5);
    case 'n':
        return literal(s, "null", 4);
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) return number(s);
        return fail(s, "invalid token");
    }
}

/* An object's key and its colon, s->p on the key's quote. */
static int key(scan *s)
{
    int nul = 0;
    if (s->p == s->end || *s->p != '"') return fail(s, "string or '}' expected");
    if (string(s, &nul) != 0) return -1;
    if (nul) return fail(s, "NUL byte in an object key");
    skip_ws(s);
    if (s->p == s->end || *s->p != ':') return fail(s, "':' expected");
    s->p++;
    return 0;
}

/* One value, iteratively: open containers are kept in stack ('{' or '['),
 * so depth costs no C stack. */
static int value(scan *s)
{
    char stack[SG_JSON_MAX_DEPTH];
    size_t depth = 0;
    for (;;) {
        skip_ws(s);
        if (s->p == s->end) return fail(s, "premature end of input");
        unsigned char c = *s->p;
        if (c == '{' || c == '[') {
            if (depth == SG_JSON_MAX_DEPTH) return fail(s, "deep");
            stack[depth++] = (char)c;
            s->p++;
            skip_ws(s);
            if (s->p < s->end && *s->p == (c == '{' ? '}' : ']')) {
                s->p++;
                depth--;
            } else {
                if (c == '{' && key(s) != 0) return -1;
                continue; /* the first member's value */
            }
        } else if (scalar(s) != 0) {
            return -1;
        }
        /* A value ended: close what ends with it, or go on to the next member. */
        for (;;) {
            if (depth == 0) return 0;
            skip_ws(s);
            if (s->p == s->end) return fail(s, "premature end of input");
            char open = stack[depth - 1];
            if (*s->p == ',') {
                s->p++;
                skip_ws(s);
                if (open == '{' && key(s) != 0) return -1;
                break;
            }
            if (*s->p != (open == '{' ? '}' : ']'))
                return fail(s, open == '{' ? "',' or '}' expected" : "',' or ']' expected");
            s->p++;
            depth--;
        }
    }
}

sg_status sg_json_validate(const char *text, size_t len, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    scan s = {.p = (const unsigned char *)text,
              .end = (const unsigned char *)text + len,
              .start = (const unsigned char *)text};
    if (value(&s) == 0) {
        skip_ws(&s);
        if (s.p == s.end) return SG_OK;
        fail(&s, "end of input expected");
    }
    if (err && strcmp(s.why, "deep") == 0)
        snprintf(err, errlen, "JSON nested deeper than %d levels", SG_JSON_MAX_DEPTH);
    else if (err)
        snprintf(err, errlen, "invalid JSON: %s (position %zu)", s.why, (size_t)(s.p - s.start));
    return SG_EINVAL;
}
