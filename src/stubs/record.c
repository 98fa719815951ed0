/* The recording ring: the last N requests the fake services received, so
 * tests can check what sagad sent (headers, body bytes) per saga and what
 * each service answered; optionally also a file with every one of them. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg/alloc.h"
#include "sg/json.h"
#include "sg/util.h"
#include "stubs.h"

#define LINE_MAX_BYTES ((size_t)16 << 20) /* one file line: a body cut at max_body, escaped */

typedef struct rec {
    size_t size;                    /* bytes accounted to the ring for this entry */
    uint64_t seq;                   /* 1, 2, ... since start */
    int64_t time_us;                /* wall clock when it arrived */
    const char *path, *method;      /* into data */
    const char *saga_id, *idem_key; /* into data, or NULL */
    const char *compensation;       /* into data, or NULL */
    const char *owner;              /* into data, or NULL */
    const char *traceparent;        /* into data, or NULL */
    const char *tracestate;         /* into data, or NULL */
    const char *headers;            /* into data: nheaders pairs of name, value */
    size_t nheaders;
    const char *body; /* into data */
    size_t body_len;
    int truncated;
    stub_answer ans;
    char data[]; /* the strings above, each NUL-terminated */
} rec;

struct stub_ring {
    pthread_mutex_t lock;
    rec **slots; /* circular, max_entries long */
    size_t head; /* index of the oldest */
    size_t count;
    size_t bytes;
    size_t max_entries, max_bytes, max_body;
    atomic_ullong seq;
    int fd; /* the --record file (O_APPEND), or -1 */
};

static sg_status format_entry(sg_buf *out, const rec *e);

sg_status stub_ring_create(stub_ring **out, size_t max_entries, size_t max_bytes, size_t max_body,
                           const char *file, char *err, size_t errlen)
{
    *out = NULL;
    if (!max_entries || !max_bytes) {
        snprintf(err, errlen, "empty recording ring");
        return SG_EINVAL;
    }
    int fd = -1;
    if (file) {
        fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open record file '%s': %s", file, strerror(errno));
            return SG_EIO;
        }
    }
    stub_ring *r = sg_xcalloc(1, sizeof *r);
    r->fd = fd;
    pthread_mutex_init(&r->lock, NULL);
    r->slots = sg_xcalloc(max_entries, sizeof *r->slots);
    r->max_entries = max_entries;
    r->max_bytes = max_bytes;
    r->max_body = max_body;
    *out = r;
    return SG_OK;
}

/* Caller holds the lock. */
static void drop_oldest(stub_ring *r)
{
    rec *e = r->slots[r->head];
    r->slots[r->head] = NULL;
    r->head = (r->head + 1) % r->max_entries;
    r->count--;
    r->bytes -= e->size;
    free(e);
}

static char *put(char **p, const char *s, size_t n)
{
    char *start = *p;
    if (n) memcpy(start, s, n);
    start[n] = '\0';
    *p += n + 1;
    return start;
}

/* One whole line per write(2): O_APPEND keeps concurrent lines apart. */
static void append_line(stub_ring *r, const rec *e)
{
    sg_buf line;
    sg_buf_init(&line, LINE_MAX_BYTES);
    if (format_entry(&line, e) == SG_OK && sg_buf_addc(&line, '\n') == SG_OK) {
        size_t off = 0;
        while (off < line.len) {
            ssize_t w = write(r->fd, line.ptr + off, line.len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                fprintf(stderr, "sta-stubs: record file: %s\n", strerror(errno));
                break;
            }
            off += (size_t)w;
        }
    }
    sg_buf_free(&line);
}

static size_t opt_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *put_opt(char **p, const char *s)
{
    return s ? put(p, s, strlen(s)) : NULL;
}

void stub_ring_add(stub_ring *r, const stub_rec_in *in, const stub_answer *ans)
{
    size_t len = in->len;
    int truncated = len > r->max_body;
    if (truncated) len = r->max_body;
    size_t nh = in->nheaders < STUB_REC_HEADERS ? in->nheaders : STUB_REC_HEADERS;
    size_t size = sizeof(rec) + opt_len(in->path) + opt_len(in->method) + opt_len(in->saga_id) +
                  opt_len(in->idem_key) + opt_len(in->compensation) + opt_len(in->owner) +
                  opt_len(in->traceparent) + opt_len(in->tracestate) + len + 1;
    for (size_t i = 0; i < nh; i++)
        size += opt_len(in->headers[i].name) + opt_len(in->headers[i].value);
    /* One allocation per entry, outside the lock: the lock only guards
     * pointer shuffling, so recording never serialises the servers. */
    rec *e = sg_xmalloc(size);
    char *p = e->data;
    e->size = size;
    e->path = put_opt(&p, in->path);
    e->method = put_opt(&p, in->method);
    e->saga_id = put_opt(&p, in->saga_id);
    e->idem_key = put_opt(&p, in->idem_key);
    e->compensation = put_opt(&p, in->compensation);
    e->owner = put_opt(&p, in->owner);
    e->traceparent = put_opt(&p, in->traceparent);
    e->tracestate = put_opt(&p, in->tracestate);
    e->headers = p;
    e->nheaders = 0;
    for (size_t i = 0; i < nh; i++) {
        if (!in->headers[i].name || !in->headers[i].value) continue;
        char *name = p;
        put_opt(&p, in->headers[i].name);
        for (char *c = name; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        put_opt(&p, in->headers[i].value);
        e->nheaders++;
    }
    e->body = put(&p, in->body, len);
    e->body_len = len;
    e->truncated = truncated;
    e->ans = *ans;
    e->time_us = sg_now_us();
    e->seq = atomic_fetch_add(&r->seq, 1) + 1;
    if (r->fd >= 0) append_line(r, e);

    pthread_mutex_lock(&r->lock);
    while (r->count && (r->count == r->max_entries || r->bytes + size > r->max_bytes))
        drop_oldest(r);
    r->slots[(r->head + r->count) % r->max_entries] = e;
    r->count++;
    r->bytes += size;
    pthread_mutex_unlock(&r->lock);
}

void stub_ring_clear(stub_ring *r)
{
    pthread_mutex_lock(&r->lock);
    while (r->count)
        drop_oldest(r);
    r->head = 0;
    pthread_mutex_unlock(&r->lock);
}

void stub_ring_destroy(stub_ring *r)
{
    if (!r) return;
    stub_ring_clear(r);
    if (r->fd >= 0) close(r->fd);
    pthread_mutex_destroy(&r->lock);
    free(r->slots);
    free(r);
}

/* A body is whatever a peer sent; the dump must stay valid JSON, so bytes
 * that are not UTF-8 become U+FFFD (sagad itself only sends valid JSON, so
 * a test that sees U+FFFD has found a real problem). */
static sg_status add_body(sg_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, l;
    while (i < n && (l = sg_utf8_len(u + i, n - i)) != 0)
        i += l;
    if (i == n) return sg_json_add_str(b, s, n); /* the common case: all valid */

    sg_buf tmp;
    sg_buf_init(&tmp, n * 3 + 1);
    sg_status st = sg_buf_add(&tmp, s, i);
    while (i < n && st == SG_OK) {
        l = sg_utf8_len(u + i, n - i);
        if (l) {
            st = sg_buf_add(&tmp, s + i, l);
            i += l;
        } else {
            st = sg_buf_add(&tmp, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    if (st == SG_OK) st = sg_json_add_str(b, tmp.ptr ? tmp.ptr : "", tmp.len);
    sg_buf_free(&tmp);
    return st;
}

/* Header values come from the peer too. */
static sg_status add_text(sg_buf *b, const char *s)
{
    return s ? add_body(b, s, strlen(s)) : sg_buf_adds(b, "null");
}

/* One entry as a JSON object. */
static sg_status format_entry(sg_buf *out, const rec *e)
{
    sg_status st =
        sg_buf_addf(out, "{\"seq\":%llu,\"time_us\":%lld,\"path\":", (unsigned long long)e->seq,
                    (long long)e->time_us);
    if (st == SG_OK) st = add_text(out, e->path);
    if (st == SG_OK) st = sg_buf_adds(out, ",\"method\":");
    if (st == SG_OK) st = add_text(out, e->method);
    if (st == SG_OK) st = sg_buf_adds(out, ",\"headers\":{\"x-saga-compensation\":");
    if (st == SG_OK) st = add_text(out, e->compensation);
    const char *h = e->headers;
    for (size_t i = 0; i < e->nheaders && st == SG_OK; i++) {
        const char *value = h + strlen(h) + 1;
        st = sg_buf_addc(out, ',');
        if (st == SG_OK) st = add_text(out, h);
        if (st == SG_OK) st = sg_buf_addc(out, ':');
        if (st == SG_OK) st = add_text(out, value);
        h = value + strlen(value) + 1;
    }
    if (st == SG_OK) st = sg_buf_addc(out, '}');
    if (st == SG_OK) st = sg_buf_adds(out, ",\"saga_id\":");
    if (st == SG_OK) st = add_text(out, e->saga_id);
    if (st == SG_OK) st = sg_buf_adds(out, ",\"idempotency_key\":");
    if (st == SG_OK) st = add_text(out, e->idem_key);
    if (st == SG_OK) st = sg_buf_adds(out, ",\"owner\":");
    if (st == SG_OK) st = add_text(out, e->owner);
    if (st == SG_OK) st = sg_buf_adds(out, ",\"traceparent\":");
    if (st == SG_OK) st = add_text(out, e->traceparent);
    if (st == SG_OK) st = sg_buf_adds(out, ",\"tracestate\":");
    if (st == SG_OK) st = add_text(out, e->tracestate);
    if (st == SG_OK && e->ans.status)
        st = sg_buf_addf(out, ",\"status\":%d", e->ans.status);
    else if (st == SG_OK)
        st = sg_buf_adds(out, ",\"status\":null");
    if (st == SG_OK)
        st = sg_buf_addf(out, ",\"mode\":\"%s\",\"delay_ms\":%d", stub_mode_name(e->ans.mode),
                         e->ans.delay_ms);
    if (st == SG_OK) st = sg_buf_adds(out, ",\"body\":");
    if (st == SG_OK) st = add_body(out, e->body, e->body_len);
    if (st == SG_OK)
        st = sg_buf_adds(out, e->truncated ? ",\"truncated\":true}" : ",\"truncated\":false}");
    return st;
}

sg_status stub_ring_dump(stub_ring *r, const char *saga_id, sg_buf *out)
{
    sg_status st = sg_buf_adds(out, "{\"requests\":[");
    int first = 1;
    pthread_mutex_lock(&r->lock);
    for (size_t k = 0; k < r->count && st == SG_OK; k++) {
        const rec *e = r->slots[(r->head + k) % r->max_entries];
        if (saga_id && (!e->saga_id || strcmp(e->saga_id, saga_id) != 0)) continue;
        if (!first) st = sg_buf_addc(out, ',');
        first = 0;
        if (st == SG_OK) st = format_entry(out, e);
    }
    pthread_mutex_unlock(&r->lock);
    if (st == SG_OK) st = sg_buf_adds(out, "]}");
    return st;
}
