/* sg_buf, the capped byte buffer: appends that refuse to grow past the cap. */
#include "sg/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"

void sg_buf_init(sg_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

sg_status sg_buf_add(sg_buf *b, const void *p, size_t n)
{
    if (n > b->max - b->len) return SG_ETOOBIG;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (b->max < SIZE_MAX && cap > b->max + 1) cap = b->max + 1; /* no overshoot */
        b->ptr = sg_xrealloc(b->ptr, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return SG_OK;
}

sg_status sg_buf_adds(sg_buf *b, const char *s)
{
    return sg_buf_add(b, s, strlen(s));
}

sg_status sg_buf_addc(sg_buf *b, char c)
{
    return sg_buf_add(b, &c, 1);
}

sg_status sg_buf_addf(sg_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return SG_EINVAL;
    if ((size_t)n < sizeof small) return sg_buf_add(b, small, (size_t)n);
    char *big = sg_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sg_status st = sg_buf_add(b, big, (size_t)n);
    free(big);
    return st;
}

void sg_buf_reset(sg_buf *b)
{
    b->len = 0;
    if (b->ptr) b->ptr[0] = '\0';
}

void sg_buf_free(sg_buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

char *sg_buf_take(sg_buf *b, size_t *len)
{
    char *p = b->ptr ? b->ptr : sg_xmemdup("", 0);
    if (len) *len = b->len;
    b->ptr = NULL;
    b->len = b->cap = 0;
    return p;
}
