/* Private to src/http: the native transport's HTTP/1.x response parser.
 * Incremental (bytes may arrive split anywhere), bounded (a header block
 * cap, a body cap), strict about syntax that could make two parties frame
 * the same bytes differently (obs-fold, conflicting Content-Length, bare
 * CR). It knows nothing of sockets: h1_conn.c feeds it what it reads. */
#ifndef SG_HTTP_H1_PARSE_H
#define SG_HTTP_H1_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "sg/buf.h"

#define H1_HEADERS_MAX (64 * 1024) /* status line + headers, and trailers */
#define H1_RETRY_AFTER_MAX 64      /* longest Retry-After value we keep */

typedef enum {
    H1_MORE,    /* needs more bytes */
    H1_DONE,    /* a complete answer; see `keep_alive` and `used` */
    H1_ERROR,   /* malformed or over a limit; `error` says why */
    H1_TOO_BIG, /* the body would exceed the body buffer's max */
} h1_rc;

typedef struct sg_h1_parser {
    int state;
    long status;       /* final status code once headers are in */
    int keep_alive;    /* the connection may carry another request */
    int no_body;       /* set by the caller before feeding: the request was HEAD */
    int chunked;       /* Transfer-Encoding: chunked */
    int have_length;   /* Content-Length seen */
    uint64_t length;   /* its value */
    uint64_t left;     /* body or chunk bytes still to come */
    int got_bytes;     /* any byte of an answer arrived */
    size_t head_bytes; /* bytes of the current header (or trailer) block */
    sg_buf line;       /* owned: a line split across reads, capped */
    sg_buf *body;      /* borrowed: the answer body goes here (max = body cap) */
    const char *error; /* static text when H1_ERROR */
    char retry_after[H1_RETRY_AFTER_MAX + 1]; /* raw value, "" if absent or too long */
    int retry_after_seen;
} h1_parser;

/* body borrowed until sg__h1_free or the next sg__h1_reset. */
void sg__h1_init(h1_parser *p, sg_buf *body);
/* Ready for the next answer (keeps the line buffer's memory). */
void sg__h1_reset(h1_parser *p, sg_buf *body);
void sg__h1_free(h1_parser *p);

/* Feeds n bytes; *used gets how many were consumed (all of them unless the
 * answer ended inside them: the rest belongs to no request of ours). */
h1_rc sg__h1_feed(h1_parser *p, const char *data, size_t n, size_t *used);
/* The peer closed the connection: DONE for a body delimited by the close,
 * ERROR (with `error`) for anything else unfinished. */
h1_rc sg__h1_eof(h1_parser *p);
/* Whether any byte of an answer arrived since init/reset. */
int sg__h1_started(const h1_parser *p);

#endif
