/* libFuzzer target: whatever a downstream service answers, the native
 * transport's parser (src/http/h1_parse.c) ends in a defined state without
 * reading past what it was given or growing past its caps, and cutting the
 * same bytes into different reads never changes the result. The first
 * byte picks the body cap and where the input is cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"
#include "http/http_int.h"
#include "sg/http_client.h"

typedef struct result {
    h1_rc rc;
    long status;
    int keep_alive;
    size_t body_len;
    size_t used;
} result;

/* Feeds data in pieces of `step` bytes (each its own allocation, so that a
 * read past a piece is caught), then the close. */
static result run(const uint8_t *data, size_t n, size_t step, size_t cap, sg_buf *body)
{
    result r = {0};
    h1_parser p;
    sg_buf_init(body, cap);
    sg__h1_init(&p, body);
    h1_rc rc = H1_MORE;
    for (size_t off = 0; off < n && rc == H1_MORE;) {
        size_t k = n - off < step ? n - off : step;
        char *piece = malloc(k);
        memcpy(piece, data + off, k);
        size_t used = 0;
        rc = sg__h1_feed(&p, piece, k, &used);
        free(piece);
        if (used > k || (rc == H1_MORE && used != k)) abort();
        r.used += used;
        off += k;
    }
    if (rc == H1_MORE) rc = sg__h1_eof(&p);
    if (rc == H1_MORE) abort(); /* the close always decides */
    if (rc == H1_ERROR && (!p.error || !p.error[0])) abort();
    if (body->len > cap || p.line.len > H1_HEADERS_MAX) abort();
    if (rc == H1_DONE && body->len && body->ptr[body->len] != '\0') abort();
    r.rc = rc;
    r.status = p.status;
    r.keep_alive = p.keep_alive;
    r.body_len = body->len;
    /* The Retry-After value, as both transports read it (client.c). */
    long ms = sg__http_retry_after(p.retry_after);
    if (ms < -1 || ms > SG_HTTP_RETRY_AFTER_MAX_MS) abort();
    sg__h1_free(&p);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t cap = (size_t)(data[0] & 0x0f) * 64 + 1;
    size_t step = (size_t)(data[0] >> 4) + 1;
    data++;
    size--;
    sg_buf a, b;
    result whole = run(data, size, size ? size : 1, cap, &a);
    result cut = run(data, size, step, cap, &b);
    if (whole.rc != cut.rc) abort();
    if (whole.rc == H1_DONE && (whole.status != cut.status || whole.keep_alive != cut.keep_alive ||
                                whole.used != cut.used || whole.body_len != cut.body_len ||
                                memcmp(a.ptr ? a.ptr : "", b.ptr ? b.ptr : "", a.len) != 0))
        abort();
    if (whole.rc == H1_DONE && (whole.status < 200 || whole.status > 999)) abort();
    sg_buf_free(&a);
    sg_buf_free(&b);
    return 0;
}
