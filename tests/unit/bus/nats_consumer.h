/* The consumer side of the NATS bus tests: what a JetStream stream holds,
 * read back with a libnats client of the test's own (plain or TLS, as the
 * natsOptions say), and the acks of publishes. Header-only; include after
 * cmocka.h. */
#ifndef SG_TEST_NATS_CONSUMER_H
#define SG_TEST_NATS_CONSUMER_H

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/bus.h"

#define MAX_GOT 64
/* The messages of a stream, in order; data owned (got_free). */
typedef struct got {
    int n;
    char *data[MAX_GOT];
    char id[MAX_GOT][64]; /* Nats-Msg-Id */
    char subject[MAX_GOT][64];
} got;

static void got_free(got *g)
{
    for (int i = 0; i < g->n; i++)
        free(g->data[i]);
    memset(g, 0, sizeof *g);
}

static void check(natsStatus s, jsErrCode jerr, const char *what)
{
    if (s != NATS_OK)
        fail_msg("%s: %s (%s, code %d)", what, natsStatus_GetText(s), nats_GetLastError(NULL),
                 (int)jerr);
}

/* Every message of the stream, in order, through a pull consumer of our
 * own; opts (borrowed) say where and how to connect. */
static void nats_consume(natsOptions *opts, const char *stream, got *g)
{
    static int serial;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    check(natsConnection_Connect(&nc, opts), 0, "consumer connect");
    check(natsConnection_JetStream(&js, nc, NULL), 0, "consumer JetStream");
    char durable[32];
    snprintf(durable, sizeof durable, "check%d", ++serial);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    jsConsumerInfo *ci = NULL;
    check(js_AddConsumer(&ci, js, stream, &cc, NULL, &jerr), jerr, "add consumer");
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Consumer = durable;
    natsSubscription *sub = NULL;
    check(js_PullSubscribe(&sub, js, NULL, durable, NULL, &so, &jerr), jerr, "pull subscribe");
    memset(g, 0, sizeof *g);
    for (;;) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 16, 300, &jerr);
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            assert_true(g->n < MAX_GOT);
            int len = natsMsg_GetDataLength(m);
            g->data[g->n] = calloc(1, (size_t)len + 1);
            memcpy(g->data[g->n], natsMsg_GetData(m), (size_t)len);
            const char *id = NULL;
            if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK)
                snprintf(g->id[g->n], sizeof g->id[0], "%s", id);
            snprintf(g->subject[g->n], sizeof g->subject[0], "%s", natsMsg_GetSubject(m));
            g->n++;
            natsMsg_Ack(m, NULL);
        }
        int count = list.Count;
        natsMsgList_Destroy(&list);
        if (s != NATS_OK || count == 0) break;
    }
    natsSubscription_Destroy(sub);
    js_DeleteConsumer(js, stream, durable, NULL, &jerr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* How many messages the stream holds; -1 if it does not exist. With
 * subjects, its first (up to 8) subjects and their count in *nsubj. */
static long nats_stream_msgs(natsOptions *opts, const char *stream, char subjects[][64], int *nsubj)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    check(natsConnection_Connect(&nc, opts), 0, "connect");
    check(natsConnection_JetStream(&js, nc, NULL), 0, "JetStream");
    long n = -1;
    if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK) {
        n = (long)si->State.Msgs;
        for (int i = 0; nsubj && i < si->Config->SubjectsLen && i < 8; i++)
            snprintf(subjects[i], 64, "%s", si->Config->Subjects[i]);
        if (nsubj) *nsubj = si->Config->SubjectsLen;
        jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return n;
}

/* A publish's acknowledgement, as the bus reports it (sg_bus_ack_cb). */
typedef struct ack {
    int calls;
    sg_status st;
    char why[512];
} ack;

static void on_ack(void *arg, sg_status st, const char *why)
{
    ack *a = arg;
    a->calls++;
    a->st = st;
    assert_non_null(why);
    snprintf(a->why, sizeof a->why, "%s", why);
}

#endif
