/* JSON in and out: validating received bytes (jansson, with a depth cap)
 * and writing string literals. */
#include "sg/json.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* jansson bounds recursion itself (2048 levels); we cap lower and count
 * depth ourselves with a cheap scan first, so a hostile body never builds a
 * deep tree. Strings are skipped so brackets inside them do not count. */
static int depth_ok(const char *t, size_t n)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > SG_JSON_MAX_DEPTH) return 0;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 1;
}

sg_status sg_json_validate(const char *text, size_t len, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!depth_ok(text, len)) {
        if (err) snprintf(err, errlen, "JSON nested deeper than %d levels", SG_JSON_MAX_DEPTH);
        return SG_EINVAL;
    }
    json_error_t je;
    json_t *v =
        json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!v) {
        /* JSON_DECODE_INT_AS_REAL still rejects integers beyond double range;
         * retry without it only to report a clearer reason is not worth it. */
        if (err) snprintf(err, errlen, "invalid JSON: %s (position %d)", je.text, je.position);
        return SG_EINVAL;
    }
    json_decref(v);
    return SG_OK;
}

/* The two-character escape of c, or NULL if it takes \u00XX. */
static const char *short_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    }
    return NULL;
}

sg_status sg_json_add_str(sg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sg_status st = sg_buf_addc(b, '"');
    size_t run = 0; /* start of the pending run of plain bytes */
    for (size_t i = 0; i < n && st == SG_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        st = sg_buf_add(b, s + run, i - run);
        run = i + 1;
        if (st != SG_OK) break;
        const char *e = short_escape(c);
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        st = e ? sg_buf_add(b, e, 2) : sg_buf_add(b, u, 6);
    }
    if (st == SG_OK) st = sg_buf_add(b, s + run, n - run);
    if (st == SG_OK) st = sg_buf_addc(b, '"');
    return st;
}

sg_status sg_json_add_cstr(sg_buf *b, const char *s)
{
    return s ? sg_json_add_str(b, s, strlen(s)) : sg_buf_adds(b, "null");
}
