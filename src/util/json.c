/* JSON out: string literals (json_check.c validates what comes in). */
#include "sg/json.h"

#include <stdio.h>
#include <string.h>

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
