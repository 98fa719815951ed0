/* A scripted Pulsar broker on the test's own libuv loop, for unit tests of
 * the bus's contract: one client at a time; CONNECTED, LOOKUP answered
 * "Connect" to itself, PRODUCER answered with `last_seq`, each SEND
 * recorded and (unless `hold`) acknowledged. It decodes with sagad's own
 * codec; the integration tests use an independent one. Header-only. */
#ifndef SG_TEST_FAKE_BROKER_H
#define SG_TEST_FAKE_BROKER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bus/pulsar_int.h"

#define FB_MAX 64

typedef struct fake_broker {
    uv_tcp_t srv;
    uv_tcp_t cli;
    int has_cli;
    int port;
    sg_buf in;
    int64_t last_seq; /* PRODUCER_SUCCESS's last_sequence_id */
    int hold;         /* no receipts */
    int connects;
    int producers;
    int nsends;
    uint64_t seqs[FB_MAX];
    char events[FB_MAX][40];
    char keys[FB_MAX][40];
    uint64_t producer_id;
} fake_broker;

static void fb_on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void fb_send(fake_broker *fb, const pcmd *cmd)
{
    if (!fb->has_cli) return;
    size_t len;
    uint8_t *f = sg__pf_encode(cmd, &len);
    uv_write_t *w = malloc(sizeof *w);
    w->data = f;
    uv_buf_t b = uv_buf_init((char *)f, (unsigned)len);
    if (uv_write(w, (uv_stream_t *)&fb->cli, &b, 1, fb_on_written) != 0) fb_on_written(w, -1);
}

static void fb_receipt(fake_broker *fb, uint64_t seq)
{
    Pulsar__Proto__CommandSendReceipt r = PULSAR__PROTO__COMMAND_SEND_RECEIPT__INIT;
    r.producer_id = fb->producer_id;
    r.sequence_id = seq;
    pcmd c = PULSAR__PROTO__BASE_COMMAND__INIT;
    c.type = PULSAR__PROTO__BASE_COMMAND__TYPE__SEND_RECEIPT;
    c.send_receipt = &r;
    fb_send(fb, &c);
}

static void fb_frame(fake_broker *fb, const pframe *f)
{
    pcmd c = PULSAR__PROTO__BASE_COMMAND__INIT;
    switch (f->cmd->type) {
    case PULSAR__PROTO__BASE_COMMAND__TYPE__CONNECT: {
        Pulsar__Proto__CommandConnected r = PULSAR__PROTO__COMMAND_CONNECTED__INIT;
        r.server_version = "fake";
        c.type = PULSAR__PROTO__BASE_COMMAND__TYPE__CONNECTED;
        c.connected = &r;
        fb->connects++;
        fb_send(fb, &c);
        return;
    }
    case PULSAR__PROTO__BASE_COMMAND__TYPE__LOOKUP: {
        char url[64];
        snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", fb->port);
        Pulsar__Proto__CommandLookupTopicResponse r =
            PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__INIT;
        r.request_id = f->cmd->lookuptopic->request_id;
        r.has_response = 1;
        r.response = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect;
        r.brokerserviceurl = url;
        c.type = PULSAR__PROTO__BASE_COMMAND__TYPE__LOOKUP_RESPONSE;
        c.lookuptopicresponse = &r;
        fb_send(fb, &c);
        return;
    }
    case PULSAR__PROTO__BASE_COMMAND__TYPE__PRODUCER: {
        Pulsar__Proto__CommandProducerSuccess r = PULSAR__PROTO__COMMAND_PRODUCER_SUCCESS__INIT;
        r.request_id = f->cmd->producer->request_id;
        r.producer_name = f->cmd->producer->producer_name;
        r.has_last_sequence_id = 1;
        r.last_sequence_id = fb->last_seq;
        fb->producer_id = f->cmd->producer->producer_id;
        fb->producers++;
        c.type = PULSAR__PROTO__BASE_COMMAND__TYPE__PRODUCER_SUCCESS;
        c.producer_success = &r;
        fb_send(fb, &c);
        return;
    }
    case PULSAR__PROTO__BASE_COMMAND__TYPE__SEND: {
        uint64_t seq = f->cmd->send->sequence_id;
        if (fb->nsends < FB_MAX) {
            fb->seqs[fb->nsends] = seq;
            for (size_t i = 0; i < f->meta->n_properties; i++)
                if (strcmp(f->meta->properties[i]->key, "event_id") == 0)
                    snprintf(fb->events[fb->nsends], 40, "%s", f->meta->properties[i]->value);
            snprintf(fb->keys[fb->nsends], 40, "%s",
                     f->meta->partition_key ? f->meta->partition_key : "");
            fb->nsends++;
        }
        if (!fb->hold) fb_receipt(fb, seq);
        return;
    }
    default:
        return;
    }
}

static void fb_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(hint);
    b->len = hint;
}

static void fb_closed(uv_handle_t *h)
{
    ((fake_broker *)h->data)->has_cli = 0;
}

/* Drops the client's connection (the bus reconnects). */
static void fb_drop(fake_broker *fb)
{
    if (fb->has_cli && !uv_is_closing((uv_handle_t *)&fb->cli))
        uv_close((uv_handle_t *)&fb->cli, fb_closed);
    sg_buf_reset(&fb->in);
}

static void fb_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fake_broker *fb = s->data;
    if (n < 0) fb_drop(fb);
    if (n > 0) sg_buf_add(&fb->in, b->base, (size_t)n);
    free(b->base);
    size_t off = 0;
    for (;;) {
        pframe f;
        char why[200];
        long k = sg__pf_decode((uint8_t *)fb->in.ptr + off, fb->in.len - off,
                               PF_MAX_MESSAGE + PF_PADDING, &f, why, sizeof why);
        if (k <= 0) break;
        fb_frame(fb, &f);
        sg__pf_clear(&f);
        off += (size_t)k;
    }
    if (fb->in.len) {
        memmove(fb->in.ptr, fb->in.ptr + off, fb->in.len - off);
        fb->in.len -= off;
    }
}

static void fb_accept(uv_stream_t *srv, int status)
{
    fake_broker *fb = srv->data;
    if (status < 0 || fb->has_cli) {
        uv_tcp_t *t = malloc(sizeof *t); /* busy: accept and close */
        uv_tcp_init(srv->loop, t);
        uv_accept(srv, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
        return;
    }
    uv_tcp_init(srv->loop, &fb->cli);
    fb->cli.data = fb;
    uv_accept(srv, (uv_stream_t *)&fb->cli);
    fb->has_cli = 1;
    uv_read_start((uv_stream_t *)&fb->cli, fb_alloc, fb_read);
}

static int fb_start(fake_broker *fb, uv_loop_t *loop)
{
    memset(fb, 0, sizeof *fb);
    fb->last_seq = -1;
    sg_buf_init(&fb->in, 1 << 24);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &fb->srv);
    fb->srv.data = fb;
    if (uv_tcp_bind(&fb->srv, (struct sockaddr *)&a, 0) != 0) return -1;
    if (uv_listen((uv_stream_t *)&fb->srv, 16, fb_accept) != 0) return -1;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&fb->srv, (struct sockaddr *)&ss, &len);
    fb->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static void fb_stop(fake_broker *fb)
{
    fb_drop(fb);
    uv_close((uv_handle_t *)&fb->srv, NULL);
    sg_buf_free(&fb->in);
}

#endif
