/* The NATS JetStream bus, shared between its files: nats.c (the bus
 * ops: publish, acks, deadlines, cancel, health, destroy), nats_conn.c (the
 * connection made and kept in the background, the stream), nats_url.c and
 * nats_tls.c.
 *
 * Threads. The loop thread owns every field below except those marked
 * otherwise. libnats runs socket I/O on the loop (its libuv adapter) but
 * calls our handlers on its own threads: JetStream pub-acks on the ack
 * subscription's delivery thread, connection events on its callback thread.
 * Those handlers find the bus by id in a registry under one mutex and queue
 * an item for the loop (uv_async_send); once destroy has taken the bus out
 * of the registry they touch nothing of it. */
#ifndef SG_NATS_INT_H
#define SG_NATS_INT_H

#include <nats/nats.h>
#include <stdint.h>
#include <uthash.h>

#include "bus_int.h"

#define NATS_DEFAULT_PORT 4222
#define NATS_DEFAULT_STREAM "SAGAD"
#define NATS_DEFAULT_SUBJECTS "tokenizer_event,tokenizer_compensation"

/* What the URL says; every string owned. */
typedef struct nats_cfg {
    char *server; /* "nats://host:port" as given to libnats: no credentials */
    char *shown;  /* the URL with any password hidden, for messages */
    char *host;   /* for the reachability probe and the TLS name check */
    int port;
    char *user; /* user/password, or ... */
    char *password;
    char *token;     /* ... a token (user part alone); NULL if none */
    char *stream;    /* JetStream stream name */
    char **subjects; /* the stream's subjects */
    int nsubjects;
    int tls;    /* tls://: TLS or nothing (nats:// takes TLS when the server asks) */
    char *ca;   /* CA certificates file: ca=, else --ca-file; NULL: the system's */
    char *cert; /* client certificate chain and its key (mutual TLS), or NULL */
    char *key;
    int insecure; /* insecure=1: the server's certificate is not checked */
} nats_cfg;

/* One publish waiting for its ack; the handle sg_bus_publish hands out. */
typedef struct nats_pub {
    natsMsg *msg; /* key: the message libnats holds until it hands it back */
    uint64_t due; /* uv_now() deadline */
    long timeout_ms;
    sg_bus_ack_cb done;
    void *arg;
    struct nats_pub *prev, *next; /* nb->pubs, in deadline order */
    UT_hash_handle hh;            /* nb->by_msg */
} nats_pub;

/* What a libnats thread hands to the loop. */
enum { ITEM_ACK, ITEM_DISCONNECTED, ITEM_RECONNECTED, ITEM_CLOSED };
typedef struct nats_item {
    int kind;
    natsMsg *msg; /* ITEM_ACK: the published message, ours again */
    sg_status st; /* ITEM_ACK: the verdict */
    char why[256];
    struct nats_item *next;
} nats_item;

typedef struct nats_bus {
    uv_loop_t *loop;
    nats_cfg cfg;
    uint64_t id; /* key in the registry, the closure libnats passes back */

    /* Registry (nats_conn.c): guarded by the registry mutex. */
    struct nats_bus *reg_next;
    nats_item *inbox, *inbox_tail; /* for the loop, oldest first */

    uv_async_t async;  /* wakes the loop for the inbox */
    uv_timer_t retry;  /* next connect attempt, or stream check */
    uv_timer_t expiry; /* the earliest publish deadline */
    uv_tcp_t probe;    /* is the server reachable? (before a blocking connect) */
    uv_getaddrinfo_t resolve;
    uv_connect_t probe_req;
    struct addrinfo *probe_all; /* the resolved addresses, while probing */
    struct addrinfo *probe_ai;  /* the one being probed */
    int probe_status;
    uv_work_t work; /* creates or checks the stream off the loop */
    int handles;    /* open handles and requests; freed when 0 after closing */

    natsOptions *opts;
    natsConnection *nc; /* NULL until the first connect succeeds */
    jsCtx *js;
    int connecting; /* a resolve/probe/connect attempt is under way */
    int working;    /* the stream work is running */
    int work_again; /* reconnected while it ran: check the stream again */
    int drop_after; /* destroy nc and js once the work is back */
    int warned;     /* connect failure already logged */
    sg_status work_st;
    char work_why[256];
    int work_created; /* the stream did not exist */

    nats_pub *pubs;   /* in flight, by deadline */
    nats_pub *by_msg; /* the same, by message */
    int closing;

    /* Health, read by any thread: guarded by hmu. */
    uv_mutex_t hmu;
    int ready;          /* connected and the stream is there */
    char down_why[256]; /* why not, when not */
} nats_bus;

/* nats_url.c: on failure err says why (SG_EINVAL) and cfg is empty. */
sg_status sg__nats_cfg_parse(nats_cfg *cfg, const char *url, char *err, size_t errlen);
void sg__nats_cfg_free(nats_cfg *cfg);

/* nats_tls.c */
/* Tells libnats (opts, borrowed) how to check the server and who we are
 * for mutual TLS, from cfg (borrowed; its files are read now). On failure
 * err names the file or option (SG_EINVAL). */
sg_status sg__nats_tls_setup(natsOptions *opts, const nats_cfg *cfg, char *err, size_t errlen);
/* libnats' reason for a failed connect (raw, borrowed) in plain words,
 * into out (the caller's, n bytes, always terminated). */
void sg__nats_tls_why(const nats_cfg *cfg, const char *raw, char *out, size_t n);

/* nats_conn.c */
/* Registry: add at create, remove at destroy (then no handler reaches nb;
 * the items still queued are returned, for the caller to free). */
void sg__nats_register(nats_bus *nb);
nats_item *sg__nats_unregister(nats_bus *nb);
/* Takes what libnats threads queued, oldest first. */
nats_item *sg__nats_take_inbox(nats_bus *nb);
/* Options and the first connect attempt; later attempts run from timers. */
sg_status sg__nats_start(nats_bus *nb, char *err, size_t errlen);
/* A connection event from the inbox. */
void sg__nats_conn_event(nats_bus *nb, int kind);
/* Destroy: closes the connection (now, or once the stream work is back). */
void sg__nats_conn_stop(nats_bus *nb);
/* Sets the health state and its reason (printf-style; empty when ready). */
void sg__nats_set_health(nats_bus *nb, int ready, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One handle or request of nb closed; frees nb after the last once closing. */
void sg__nats_handle_closed(nats_bus *nb);

/* nats.c */
void sg__nats_free(nats_bus *nb);

#endif
