/* A Pulsar session's output: the queue of frames not yet handed to the
 * socket (a cancelled publish takes its frame back from it), batched
 * writes, and the ciphertext of TLS sessions. Once a frame is handed to
 * libuv it may reach the broker: it is "in doubt" and stays sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "pulsar_int.h"
#include "sg/alloc.h"

#define MAX_BATCH 256 /* frames per write */

struct outframe {
    uint8_t *data; /* owned */
    size_t len;
    pconn *pc; /* the session whose queue holds it */
    ppub *pub; /* borrowed: the publish it carries, or NULL */
    outframe *prev, *next;
};

typedef struct wreq {
    uv_write_t req;
    pconn *pc;
    int batch; /* 1: a batch of the queue (clears pc->writing) */
    size_t n;
    uv_buf_t bufs[]; /* each base owned */
} wreq;

void sg__pc_drop_queue(pconn *pc)
{
    while (pc->outq) {
        outframe *o = pc->outq;
        DL_DELETE(pc->outq, o);
        if (o->pub) o->pub->queued = NULL;
        free(o->data);
        free(o);
    }
}

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    pconn *pc = w->pc;
    for (size_t i = 0; i < w->n; i++)
        free(w->bufs[i].base);
    int batch = w->batch;
    free(w);
    if (batch) pc->writing = 0;
    if (pc->dead) return;
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
        sg__pc_close(pc, why);
        return;
    }
    if (batch) sg__pc_flush(pc);
}

/* Submits the buffers (taken); 0 or -1 (then reported later). */
static int submit(pconn *pc, wreq *w)
{
    w->pc = pc;
    int rc = uv_write(&w->req, (uv_stream_t *)&pc->tcp, w->bufs, (unsigned)w->n, on_write);
    if (rc == 0) return 0;
    for (size_t i = 0; i < w->n; i++)
        free(w->bufs[i].base);
    free(w);
    char why[128];
    snprintf(why, sizeof why, "write failed: %s", uv_strerror(rc));
    sg__pc_fail_later(pc, why);
    return -1;
}

void sg__pc_write_tls(pconn *pc)
{
    size_t len;
    uint8_t *b = sg__ptls_take(pc->tls, &len);
    if (!b) return;
    wreq *w = sg_xcalloc(1, sizeof *w + sizeof(uv_buf_t));
    w->n = 1;
    w->bufs[0] = uv_buf_init((char *)b, (unsigned)len);
    submit(pc, w);
}

void sg__pc_flush(pconn *pc)
{
    if (pc->writing || pc->dead || !pc->outq || pc->state < S_HELLO) return;
    size_t n = 0;
    outframe *o;
    DL_COUNT(pc->outq, o, n);
    if (n > MAX_BATCH) n = MAX_BATCH;
    wreq *w = sg_xcalloc(1, sizeof *w + n * sizeof(uv_buf_t));
    w->batch = 1;
    char why[300];
    for (size_t i = 0; i < n; i++) {
        o = pc->outq;
        DL_DELETE(pc->outq, o);
        if (o->pub) {
            o->pub->queued = NULL;
            o->pub->written = 1;
        }
        if (pc->tls) {
            if (sg__ptls_write(pc->tls, o->data, o->len, why, sizeof why) != 0) {
                free(o->data);
                free(o);
                w->n = 0;
                free(w);
                sg__pc_fail_later(pc, why);
                return;
            }
            free(o->data);
        } else {
            w->bufs[w->n++] = uv_buf_init((char *)o->data, (unsigned)o->len);
        }
        free(o);
    }
    if (pc->tls) {
        size_t len;
        uint8_t *b = sg__ptls_take(pc->tls, &len);
        if (!b) {
            free(w);
            return;
        }
        w->bufs[w->n++] = uv_buf_init((char *)b, (unsigned)len);
    }
    if (submit(pc, w) == 0) pc->writing = 1;
}

void sg__pc_push(pconn *pc, uint8_t *frame, size_t len, ppub *pub)
{
    outframe *o = sg_xcalloc(1, sizeof *o);
    o->data = frame;
    o->len = len;
    o->pc = pc;
    o->pub = pub;
    if (pub) pub->queued = o;
    DL_APPEND(pc->outq, o);
    sg__pc_flush(pc);
}

void sg__pc_queue(pconn *pc, uint8_t *frame, size_t len, ppub *pub)
{
    if (!sg__pc_ready(pc)) {
        free(frame);
        return;
    }
    sg__pc_push(pc, frame, len, pub);
}

void sg__pc_unqueue(ppub *pub)
{
    outframe *o = pub->queued;
    if (!o) return;
    DL_DELETE(o->pc->outq, o);
    free(o->data);
    free(o);
    pub->queued = NULL;
}
