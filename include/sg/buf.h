/* sg_buf: a growable byte buffer with a hard cap (like curl's dynbuf).
 * Anything a peer sends goes into one; it can never grow past `max`. The
 * content is always NUL-terminated (the NUL is not counted in len). */
#ifndef SG_BUF_H
#define SG_BUF_H

#include <stddef.h>

#include "sg/status.h"

typedef struct sg_buf {
    char *ptr; /* owned; NULL until the first add */
    size_t len;
    size_t cap;
    size_t max; /* hard cap on len */
} sg_buf;

void sg_buf_init(sg_buf *b, size_t max);
/* SG_ETOOBIG (buffer unchanged) if len would exceed max. */
sg_status sg_buf_add(sg_buf *b, const void *p, size_t n);
sg_status sg_buf_adds(sg_buf *b, const char *s);
sg_status sg_buf_addc(sg_buf *b, char c);
sg_status sg_buf_addf(sg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_buf_reset(sg_buf *b); /* len = 0, keeps memory */
void sg_buf_free(sg_buf *b);  /* frees memory, keeps max */
/* Hands the memory to the caller (who frees it); the buffer becomes empty.
 * Never returns NULL: an empty buffer yields "". */
char *sg_buf_take(sg_buf *b, size_t *len);

#endif
