/* One Pulsar broker session on the loop: resolve, connect (each address in
 * turn), TLS, the CONNECT / CONNECTED handshake with the token, PING / PONG
 * both ways and framed reads into a capped buffer; its output queue is
 * pulsar_out.c's.
 *
 * A session (pconn) lives for one connection; its endpoint (pulsar_ep.c)
 * outlives it. A session that fails is detached from its endpoint at once
 * and frees itself when its last handle has closed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "pulsar_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define PROTOCOL_VERSION 15

static void session_fail(pconn *pc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------- lifetime */

static void pc_unref(pconn *pc)
{
    if (--pc->refs > 0) return;
    sg__pc_drop_queue(pc);
    if (pc->ai) uv_freeaddrinfo(pc->ai);
    sg__ptls_free(pc->tls);
    sg_buf_free(&pc->in);
    pulsar_bus *pb = pc->pb;
    free(pc);
    sg__pulsar_unref(pb);
}

static void on_handle_closed(uv_handle_t *h)
{
    pc_unref(h->data);
}

static void on_tcp_closed(uv_handle_t *h);

/* ------------------------------------------------------------- failures */

/* Detaches pc from its endpoint, tells the producers, closes it. */
void sg__pc_close(pconn *pc, const char *why)
{
    if (pc->dead) return;
    pc->dead = 1;
    sg__pc_drop_queue(pc);
    endpoint *ep = pc->ep;
    pc->ep = NULL;
    if (pc->state == S_RESOLVING) uv_cancel((uv_req_t *)&pc->gai); /* its callback still runs */
    uv_close((uv_handle_t *)&pc->timer, on_handle_closed);
    if (pc->tcp_open) uv_close((uv_handle_t *)&pc->tcp, on_tcp_closed);
    if (ep && !ep->pb->closing) sg__ep_down(ep, why);
}

static void session_fail(pconn *pc, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    sg__pc_close(pc, why);
}

static void on_timer(uv_timer_t *t);

void sg__pc_fail_later(pconn *pc, const char *why)
{
    if (pc->late_why[0]) return;
    snprintf(pc->late_why, sizeof pc->late_why, "%s", why);
    uv_timer_start(&pc->timer, on_timer, 0, 0);
}

static void send_cmd(pconn *pc, const pcmd *cmd)
{
    size_t len;
    uint8_t *f = sg__pf_encode(cmd, &len);
    sg__pc_push(pc, f, len, NULL);
}

/* ---------------------------------------------------------------- reads */

static void send_connect(pconn *pc)
{
    pulsar_bus *pb = pc->pb;
    Pulsar__Proto__CommandConnect c = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    c.client_version = "sagad";
    c.has_protocol_version = 1;
    c.protocol_version = PROTOCOL_VERSION;
    if (pb->o.token) {
        c.auth_method_name = "token";
        c.has_auth_data = 1;
        c.auth_data.data = (uint8_t *)pb->o.token;
        c.auth_data.len = strlen(pb->o.token);
    }
    pcmd cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    cmd.type = PULSAR__PROTO__BASE_COMMAND__TYPE__CONNECT;
    cmd.connect = &c;
    pc->state = S_HELLO;
    send_cmd(pc, &cmd);
}

static void connected(pconn *pc, const Pulsar__Proto__CommandConnected *c)
{
    endpoint *ep = pc->ep;
    size_t mms = PF_MAX_MESSAGE;
    if (c->has_max_message_size && c->max_message_size > 0)
        mms =
            (size_t)c->max_message_size > (128u << 20) ? (128u << 20) : (size_t)c->max_message_size;
    pc->max_frame = mms + PF_PADDING;
    size_t cap = pc->max_frame + 4 + PC_READ_CHUNK;
    pc->in.max = cap > pc->in.len ? cap : pc->in.len; /* never below what it holds */
    pc->state = S_READY;
    sg_log(SG_LOG_INFO, "pulsar: connected to %s (broker %s, protocol %d, max message %zu bytes)",
           ep->url, c->server_version ? c->server_version : "?",
           c->has_protocol_version ? c->protocol_version : 0, mms);
    uv_timer_start(&pc->timer, on_timer, pc->pb->o.keepalive_ms, pc->pb->o.keepalive_ms);
    sg__ep_up(ep, pc->max_frame);
}

/* One frame from the broker. */
static void dispatch(pconn *pc, const pframe *f)
{
    const pcmd *c = f->cmd;
    char eb[32];
    switch (c->type) {
    case PULSAR__PROTO__BASE_COMMAND__TYPE__PING: {
        pcmd pong = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandPong body = PULSAR__PROTO__COMMAND_PONG__INIT;
        pong.type = PULSAR__PROTO__BASE_COMMAND__TYPE__PONG;
        pong.pong = &body;
        send_cmd(pc, &pong);
        return;
    }
    case PULSAR__PROTO__BASE_COMMAND__TYPE__PONG:
        return;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__CONNECTED:
        if (pc->state != S_HELLO) {
            session_fail(pc, "protocol error: CONNECTED twice");
            return;
        }
        connected(pc, c->connected);
        return;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__ERROR:
        if (pc->state == S_HELLO) {
            session_fail(pc, "the broker refused the connection: %s: %s",
                         sg__pf_error_name(c->error->error, eb),
                         c->error->message ? c->error->message : "");
            return;
        }
        break;
    default:
        break;
    }
    if (pc->state != S_READY) {
        session_fail(pc, "protocol error: command %d before CONNECTED", (int)c->type);
        return;
    }
    sg__pr_frame(pc->ep, f);
}

/* Appends plaintext and handles every whole frame in it. */
static void ingest(pconn *pc, const char *p, size_t n)
{
    if (sg_buf_add(&pc->in, p, n) != SG_OK) {
        session_fail(pc, "protocol error: more than %zu bytes buffered", pc->in.max);
        return;
    }
    size_t off = 0;
    while (!pc->dead) {
        pframe f;
        char why[200];
        long k = sg__pf_decode((const uint8_t *)pc->in.ptr + off, pc->in.len - off, pc->max_frame,
                               &f, why, sizeof why);
        if (k == 0) break;
        if (k < 0) {
            session_fail(pc, "malformed frame from the broker: %s", why);
            return;
        }
        dispatch(pc, &f);
        sg__pf_clear(&f);
        off += (size_t)k;
    }
    if (pc->dead) return;
    memmove(pc->in.ptr, pc->in.ptr + off, pc->in.len - off);
    pc->in.len -= off;
    pc->in.ptr[pc->in.len] = '\0';
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    pconn *pc = h->data;
    *buf = uv_buf_init(pc->rbuf, sizeof pc->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pconn *pc = s->data;
    if (pc->dead || nread == 0) return;
    if (nread == UV_EOF) {
        session_fail(pc, "the broker closed the connection");
        return;
    }
    if (nread < 0) {
        session_fail(pc, "connection lost: %s", uv_strerror((int)nread));
        return;
    }
    pc->last_rx = uv_now(s->loop);
    if (!pc->tls) {
        ingest(pc, buf->base, (size_t)nread);
        return;
    }
    char why[300];
    sg__ptls_feed(pc->tls, buf->base, (size_t)nread);
    if (pc->state == S_TLS) {
        int hs = sg__ptls_handshake(pc->tls, why, sizeof why);
        sg__pc_write_tls(pc);
        if (hs < 0) {
            session_fail(pc, "%s", why);
            return;
        }
        if (hs == 0) return;
        send_connect(pc);
    }
    char plain[16384];
    while (!pc->dead) {
        long k = sg__ptls_read(pc->tls, plain, sizeof plain, why, sizeof why);
        if (k < 0) {
            session_fail(pc, "%s", why);
            return;
        }
        if (k == 0) break;
        ingest(pc, plain, (size_t)k);
    }
    if (!pc->dead) sg__pc_write_tls(pc);
}

/* ------------------------------------------------------------ connecting */

static void try_connect(pconn *pc);

static void on_connect(uv_connect_t *req, int status)
{
    pconn *pc = req->data;
    if (pc->dead) return;
    if (status < 0) {
        if (pc->ai_next) {
            /* Next address once this socket is closed (on_tcp_closed). */
            pc->tcp_open = 0;
            uv_close((uv_handle_t *)&pc->tcp, on_tcp_closed);
            return;
        }
        session_fail(pc, "cannot connect: %s", uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&pc->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&pc->tcp, on_alloc, on_read);
    if (rc < 0) {
        session_fail(pc, "cannot read: %s", uv_strerror(rc));
        return;
    }
    if (pc->pb->ssl_ctx) {
        pc->state = S_TLS;
        pc->tls = sg__ptls_new(pc->pb->ssl_ctx, pc->ep->host);
        char why[300];
        if (sg__ptls_handshake(pc->tls, why, sizeof why) < 0) {
            session_fail(pc, "%s", why);
            return;
        }
        sg__pc_write_tls(pc);
        return;
    }
    send_connect(pc);
}

static void on_tcp_closed(uv_handle_t *h)
{
    pconn *pc = h->data;
    if (!pc->dead && pc->ai_next) {
        try_connect(pc); /* takes the next address and a new ref */
    }
    pc_unref(pc);
}

static void try_connect(pconn *pc)
{
    struct addrinfo *ai = pc->ai_next;
    pc->ai_next = ai->ai_next;
    pc->state = S_CONNECTING;
    uv_tcp_init(pc->pb->loop, &pc->tcp);
    pc->tcp.data = pc;
    pc->tcp_open = 1;
    pc->refs++;
    pc->creq.data = pc;
    int rc = uv_tcp_connect(&pc->creq, &pc->tcp, ai->ai_addr, on_connect);
    if (rc < 0) {
        char why[128];
        snprintf(why, sizeof why, "cannot connect: %s", uv_strerror(rc));
        sg__pc_fail_later(pc, why);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pconn *pc = req->data;
    pc->ai = res;
    if (pc->dead) {
        pc_unref(pc);
        return;
    }
    if (status < 0 || !res) {
        session_fail(pc, "cannot resolve %s: %s", pc->ep->host, uv_strerror(status));
    } else {
        pc->ai_next = res;
        try_connect(pc);
    }
    pc_unref(pc); /* the request's ref */
}

static void on_timer(uv_timer_t *t)
{
    pconn *pc = t->data;
    if (pc->dead) return;
    if (pc->late_why[0]) {
        session_fail(pc, "%s", pc->late_why);
        return;
    }
    if (pc->state != S_READY) {
        session_fail(pc, "no session within %u ms (connect, TLS and CONNECTED)",
                     pc->pb->o.connect_timeout_ms);
        return;
    }
    uint64_t idle = uv_now(t->loop) - pc->last_rx;
    if (idle >= 2ull * pc->pb->o.keepalive_ms) {
        session_fail(pc, "no traffic from the broker for %llu ms", (unsigned long long)idle);
        return;
    }
    pcmd ping = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPing body = PULSAR__PROTO__COMMAND_PING__INIT;
    ping.type = PULSAR__PROTO__BASE_COMMAND__TYPE__PING;
    ping.ping = &body;
    send_cmd(pc, &ping);
}

pconn *sg__pc_start(endpoint *ep)
{
    pulsar_bus *pb = ep->pb;
    pconn *pc = sg_xcalloc(1, sizeof *pc);
    pc->ep = ep;
    pc->pb = pb;
    pc->state = S_RESOLVING;
    pc->max_frame = PF_MAX_MESSAGE + PF_PADDING;
    sg_buf_init(&pc->in, pc->max_frame + 4 + PC_READ_CHUNK);
    pb->live++;
    uv_timer_init(pb->loop, &pc->timer);
    pc->timer.data = pc;
    pc->refs = 1;
    uv_timer_start(&pc->timer, on_timer, pb->o.connect_timeout_ms, 0);
    pc->last_rx = uv_now(pb->loop);

    char port[16];
    snprintf(port, sizeof port, "%d", ep->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    pc->gai.data = pc;
    int rc = uv_getaddrinfo(pb->loop, &pc->gai, on_resolved, ep->host, port, &hints);
    if (rc < 0) {
        char why[128];
        snprintf(why, sizeof why, "cannot resolve %s: %s", ep->host, uv_strerror(rc));
        pc->state = S_CONNECTING; /* nothing to cancel */
        sg__pc_fail_later(pc, why);
        return pc;
    }
    pc->refs++;
    return pc;
}

int sg__pc_ready(const pconn *pc)
{
    return pc && !pc->dead && pc->state == S_READY;
}
