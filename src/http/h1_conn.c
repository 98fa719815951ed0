/* The native transport's connections: per host a LIFO pool of idle
 * keep-alive connections, each reading all the time (so that a server
 * closing an idle one is noticed and it leaves the pool), one timer per
 * connection for the running call's whole attempt (resolve and connect
 * included), the request written with one uv_try_write when the socket
 * takes it (uv_write for whatever it does not), and the answer fed to
 * h1_parse.c straight from a read buffer the client's connections share
 * (every read is parsed before the next one).
 *
 * A call's outcome is reported from a libuv callback, never from inside
 * sg__h1_start: a failure found there is reported from the connection's
 * timer on the next loop iteration.
 *
 * libuv rule: a handle's memory is freed only in its close callback; a
 * connection holds two (tcp, timer) and is freed when both closed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utlist.h>

#include "http_int.h"
#include "sg/alloc.h"

#define READ_BUF (64 * 1024)
#define DNS_TTL_MS 60000

typedef enum { C_RESOLVING, C_CONNECTING, C_BUSY, C_IDLE, C_CLOSING } conn_state;

typedef struct gai_req gai_req;

struct h1_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    int open_handles; /* freed when both handles closed */
    conn_state state;
    sg_http_client *client; /* borrowed; valid until the connection closes */
    host_slots *host;       /* borrowed; likewise */
    sg_http_call *call;     /* the running call; NULL when idle */
    h1_parser parser;
    sg_buf out;                   /* owned: what uv_try_write left of the request */
    int writing;                  /* a uv_write is in flight */
    int reused;                   /* it carried an answer before */
    gai_req *gai;                 /* resolving: the request (owned by its callback) */
    sg_http_outcome fail_outcome; /* a failure to report from the timer */
    char fail_text[192];
    int failed;
    h1_conn *prev, *next; /* host's idle list */
};

struct gai_req {
    uv_getaddrinfo_t req;
    h1_conn *conn; /* NULL once the connection closed: then only free */
};

static void conn_open(sg_http_client *c, sg_http_call *call);

/* --------------------------------------------------------------- closing */

static void on_handle_closed(uv_handle_t *h)
{
    h1_conn *conn = h->data;
    if (--conn->open_handles) return;
    sg__h1_free(&conn->parser);
    sg_buf_free(&conn->out);
    free(conn);
}

/* Closes conn for good (idle or not); its call, if any, must be detached. */
static void conn_close(h1_conn *conn)
{
    if (conn->state == C_CLOSING) return;
    if (conn->state == C_IDLE) DL_DELETE(conn->host->idle, conn);
    conn->state = C_CLOSING;
    if (conn->gai) {
        conn->gai->conn = NULL;
        uv_cancel((uv_req_t *)&conn->gai->req);
        conn->gai = NULL;
    }
    uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&conn->timer, on_handle_closed);
}

static sg_http_call *detach(h1_conn *conn)
{
    sg_http_call *call = conn->call;
    conn->call = NULL;
    if (call) call->h1.conn = NULL;
    return call;
}

void sg__h1_host_close(host_slots *h)
{
    while (h->idle)
        conn_close(h->idle);
}

void sg__h1_abort(sg_http_client *c, sg_http_call *call)
{
    (void)c;
    h1_conn *conn = call->h1.conn;
    if (!conn) return;
    detach(conn);
    conn_close(conn); /* half a conversation: never reused */
}

/* ------------------------------------------------------------- outcomes */

static void on_timer(uv_timer_t *t);

/* The call ends with a failure: now from a libuv callback, or from the
 * timer on the next iteration when we are inside sg__h1_start. */
static void conn_fail(h1_conn *conn, sg_http_outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_fail(h1_conn *conn, sg_http_outcome outcome, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(conn->fail_text, sizeof conn->fail_text, fmt, ap);
    va_end(ap);
    conn->fail_outcome = outcome;
    conn->failed = 1;
    if (conn->client->h1_starting) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        uv_timer_start(&conn->timer, on_timer, 0, 0);
        return;
    }
    on_timer(&conn->timer);
}

/* The attempt's timeout, or a failure kept for this moment. */
static void on_timer(uv_timer_t *t)
{
    h1_conn *conn = t->data;
    sg_http_client *c = conn->client;
    sg_http_call *call = detach(conn);
    sg_http_result res = {.retry_after_ms = -1};
    char reason[sizeof conn->fail_text];
    if (conn->failed) {
        res.outcome = conn->fail_outcome;
        memcpy(reason, conn->fail_text, sizeof reason);
    } else {
        res.outcome = SG_HTTP_ERR_TIMEOUT;
        snprintf(reason, sizeof reason, "timed out after %ld ms", call->timeout_ms);
    }
    res.error = reason;
    conn_close(conn);
    sg__http_finish(c, call, &res);
}

static void conn_done(h1_conn *conn, int reuse)
{
    sg_http_client *c = conn->client;
    sg_http_call *call = detach(conn);
    sg_http_result res = {.outcome = SG_HTTP_DONE,
                          .status = conn->parser.status,
                          .body = call->body.ptr ? call->body.ptr : "",
                          .body_len = call->body.len,
                          .retry_after_ms = sg__http_retry_after(conn->parser.retry_after)};
    if (reuse && !c->closing) {
        uv_timer_stop(&conn->timer);
        conn->reused = 1;
        conn->state = C_IDLE;
        DL_PREPEND(conn->host->idle, conn); /* LIFO: the warmest first */
    } else {
        conn_close(conn);
    }
    sg__http_finish(c, call, &res);
}

/* A keep-alive connection the server had closed before our request reached
 * it: the request goes once more on a fresh connection, as curl does. */
static int retry(h1_conn *conn, int err)
{
    sg_http_call *call = conn->call;
    if (!conn->reused || call->h1.retried || sg__h1_started(&conn->parser) ||
        (err != UV_EOF && err != UV_ECONNRESET && err != UV_EPIPE))
        return 0;
    sg_http_client *c = conn->client;
    detach(conn);
    conn_close(conn);
    call->h1.retried = 1;
    call->h1.addr = 0;
    conn_open(c, call);
    return 1;
}

/* ---------------------------------------------------------------- write */

static void write_failed(h1_conn *conn, int err)
{
    if (retry(conn, err)) return;
    conn_fail(conn, SG_HTTP_ERR_TRANSPORT, "Send failure: %s", uv_strerror(err));
}

static void on_write(uv_write_t *req, int status)
{
    h1_conn *conn = req->data;
    conn->writing = 0;
    sg_buf_reset(&conn->out);
    if (conn->state == C_CLOSING || status == 0 || !conn->call) return;
    write_failed(conn, status);
}

static void conn_send(h1_conn *conn)
{
    sg_http_call *call = conn->call;
    uv_buf_t bufs[2] = {uv_buf_init(call->h1.head.ptr, (unsigned)call->h1.head.len),
                        uv_buf_init((char *)call->h1.body, (unsigned)call->h1.body_len)};
    unsigned nbufs = call->h1.body_len ? 2 : 1;
    size_t total = call->h1.head.len + call->h1.body_len;
    int n = uv_try_write((uv_stream_t *)&conn->tcp, bufs, nbufs);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        write_failed(conn, n);
        return;
    }
    call->h1.sent = 1; /* or about to be: nothing tells us the peer saw none */
    if ((size_t)n == total) return;
    /* The rest goes from our own copy: the call may be cancelled first. */
    size_t off = (size_t)n;
    sg_buf_reset(&conn->out);
    for (unsigned i = 0; i < nbufs; i++) {
        if (off >= bufs[i].len) {
            off -= bufs[i].len;
            continue;
        }
        (void)sg_buf_add(&conn->out, bufs[i].base + off, bufs[i].len - off);
        off = 0;
    }
    uv_buf_t rest = uv_buf_init(conn->out.ptr, (unsigned)conn->out.len);
    int r = uv_write(&conn->wreq, (uv_stream_t *)&conn->tcp, &rest, 1, on_write);
    if (r < 0) {
        write_failed(conn, r);
        return;
    }
    conn->writing = 1;
}

/* ----------------------------------------------------------------- read */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    h1_conn *conn = h->data;
    sg_http_client *c = conn->client;
    if (!c->rbuf) c->rbuf = sg_xmalloc(READ_BUF);
    *buf = uv_buf_init(c->rbuf, READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    h1_conn *conn = s->data;
    if (nread == 0 || conn->state == C_CLOSING) return;
    if (!conn->call) { /* idle: the server closed it (or spoke out of turn) */
        conn_close(conn);
        return;
    }
    size_t max = conn->call->body.max;
    if (nread < 0) {
        if (retry(conn, (int)nread)) return;
        if (nread != UV_EOF) {
            conn_fail(conn, SG_HTTP_ERR_TRANSPORT, "Recv failure: %s", uv_strerror((int)nread));
        } else if (sg__h1_eof(&conn->parser) == H1_DONE) {
            conn_done(conn, 0);
        } else {
            conn_fail(conn, SG_HTTP_ERR_TRANSPORT, "%s", conn->parser.error);
        }
        return;
    }
    size_t used = 0;
    switch (sg__h1_feed(&conn->parser, buf->base, (size_t)nread, &used)) {
    case H1_MORE:
        return;
    case H1_DONE:
        /* Bytes past the answer belong to no request of ours. */
        conn_done(conn, conn->parser.keep_alive && used == (size_t)nread && !conn->writing);
        return;
    case H1_TOO_BIG:
        conn_fail(conn, SG_HTTP_ERR_TOO_BIG, "response larger than %zu bytes", max);
        return;
    case H1_ERROR:
        conn_fail(conn, SG_HTTP_ERR_TRANSPORT, "%s", conn->parser.error);
        return;
    }
}

/* -------------------------------------------------------------- connect */

static void connect_failed(h1_conn *conn, int err)
{
    sg_http_call *call = conn->call;
    host_slots *h = conn->host;
    sg_http_client *c = conn->client;
    if (call->h1.addr + 1 < h->naddrs && !c->h1_starting) {
        /* The name has another address: try it with a fresh socket. */
        detach(conn);
        conn_close(conn);
        call->h1.addr++;
        conn_open(c, call);
        return;
    }
    /* After a retry the first try may have arrived: not "nothing sent". */
    conn_fail(conn, call->h1.sent ? SG_HTTP_ERR_TRANSPORT : SG_HTTP_ERR_CONNECT,
              "Failed to connect to %s port %d after %llu ms: %s", h->name, h->port,
              (unsigned long long)(uv_now(c->loop) - call->h1.t0), strerror(-err));
}

static void on_connect(uv_connect_t *req, int status)
{
    h1_conn *conn = req->data;
    if (conn->state == C_CLOSING) return;
    if (status < 0) {
        connect_failed(conn, status);
        return;
    }
    conn->state = C_BUSY;
    int r = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
    if (r < 0) {
        conn_fail(conn, SG_HTTP_ERR_TRANSPORT, "Recv failure: %s", uv_strerror(r));
        return;
    }
    conn_send(conn);
}

static void conn_connect(h1_conn *conn)
{
    const struct sockaddr *sa = (const struct sockaddr *)&conn->host->addrs[conn->call->h1.addr];
    conn->state = C_CONNECTING;
    uv_tcp_nodelay(&conn->tcp, 1); /* applied when the socket is made */
    int r = uv_tcp_connect(&conn->creq, &conn->tcp, sa, on_connect);
    if (r < 0) connect_failed(conn, r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    gai_req *g = (gai_req *)req;
    h1_conn *conn = g->conn;
    free(g);
    if (!conn) {
        uv_freeaddrinfo(res);
        return;
    }
    conn->gai = NULL;
    host_slots *h = conn->host;
    int n = 0;
    /* IPv4 first: services on "localhost" mostly listen on 127.0.0.1. */
    for (int pass = 0; pass < 2 && status == 0; pass++)
        for (struct addrinfo *ai = res; ai && n < H1_ADDRS_MAX; ai = ai->ai_next)
            if ((ai->ai_family == AF_INET) == (pass == 0) &&
                (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
                ai->ai_addrlen <= sizeof h->addrs[0])
                memcpy(&h->addrs[n++], ai->ai_addr, ai->ai_addrlen);
    uv_freeaddrinfo(res);
    if (n == 0) {
        conn_fail(conn, conn->call->h1.sent ? SG_HTTP_ERR_TRANSPORT : SG_HTTP_ERR_CONNECT,
                  "Could not resolve host: %s", h->name);
        return;
    }
    h->naddrs = n;
    h->addrs_until = uv_now(conn->client->loop) + DNS_TTL_MS;
    conn->call->h1.addr = 0;
    conn_connect(conn);
}

static void conn_resolve(h1_conn *conn)
{
    host_slots *h = conn->host;
    gai_req *g = sg_xcalloc(1, sizeof *g);
    char port[8];
    snprintf(port, sizeof port, "%d", h->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    g->conn = conn;
    conn->gai = g;
    conn->state = C_RESOLVING;
    int r = uv_getaddrinfo(conn->client->loop, &g->req, on_resolved, h->name, port, &hints);
    if (r < 0) {
        free(g);
        conn->gai = NULL;
        conn_fail(conn, SG_HTTP_ERR_CONNECT, "Could not resolve host: %s (%s)", h->name,
                  uv_strerror(r));
    }
}

/* A fresh connection for call, its timer armed with what is left of the
 * attempt. Never fails itself: failures come as the call's outcome. */
static void conn_open(sg_http_client *c, sg_http_call *call)
{
    h1_conn *conn = sg_xcalloc(1, sizeof *conn);
    conn->client = c;
    conn->host = call->host;
    conn->call = call;
    call->h1.conn = conn;
    sg__h1_init(&conn->parser, &call->body);
    conn->parser.no_body = call->h1.no_body;
    sg_buf_init(&conn->out, (size_t)-1); /* a copy of our own request */
    /* Neither init can fail for a TCP handle without flags, or a timer. */
    uv_tcp_init(c->loop, &conn->tcp);
    uv_timer_init(c->loop, &conn->timer);
    conn->open_handles = 2;
    conn->tcp.data = conn->timer.data = conn->creq.data = conn->wreq.data = conn;
    if (call->h1.deadline) {
        uint64_t now = uv_now(c->loop);
        uv_timer_start(&conn->timer, on_timer,
                       call->h1.deadline > now ? call->h1.deadline - now : 0, 0);
    }
    host_slots *h = call->host;
    if (h->naddrs && uv_now(c->loop) < h->addrs_until)
        conn_connect(conn);
    else
        conn_resolve(conn);
}

sg_status sg__h1_start(sg_http_client *c, sg_http_call *call)
{
    host_slots *h = call->host;
    call->h1.t0 = uv_now(c->loop);
    /* Strictly after timeout_ms: a caller timing the same attempt with a
     * timer of its own of the same length (the engine times a publish that
     * way) hears from its timer first, as it did with libcurl, whose
     * timeouts fire on a later check than a libuv timer due then. */
    call->h1.deadline = call->timeout_ms > 0 ? call->h1.t0 + (uint64_t)call->timeout_ms + 1 : 0;
    c->h1_starting = 1;
    h1_conn *conn = h->idle;
    if (conn) {
        DL_DELETE(h->idle, conn);
        conn->state = C_BUSY;
        conn->call = call;
        call->h1.conn = conn;
        sg__h1_reset(&conn->parser, &call->body);
        conn->parser.no_body = call->h1.no_body;
        if (call->h1.deadline)
            uv_timer_start(&conn->timer, on_timer, call->h1.deadline - call->h1.t0, 0);
        conn_send(conn);
    } else {
        conn_open(c, call);
    }
    c->h1_starting = 0;
    return SG_OK;
}
