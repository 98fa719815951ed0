/* Pulsar transport internals shared by its files: the frame codec
 * (pulsar_frame.c), TLS over memory BIOs (pulsar_tls.c), broker sessions
 * (pulsar_conn.c) and endpoints (pulsar_ep.c), producers and publishes
 * (pulsar_producer.c) and the backend ops and options (pulsar.c).
 *
 * Everything here runs on the loop thread except `health`, which any
 * thread reads under its mutex. No file here calls a publisher's callback
 * while handling the network: finished publishes wait on a queue that an
 * idle handle drains (pulsar_producer.c), as the log: bus does, so a
 * callback that publishes, cancels or destroys the bus never meets a
 * half-handled frame.
 *
 * Lists are utlist's DL lists. */
#ifndef SG_PULSAR_INT_H
#define SG_PULSAR_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bus_int.h"
#include "pulsar.pb-c.h"
#include "sg/buf.h"

typedef Pulsar__Proto__BaseCommand pcmd;
typedef Pulsar__Proto__MessageMetadata pmeta;

/* ---- frames (pulsar_frame.c) ------------------------------------------ */

#define PF_MAGIC 0x0e01u
#define PF_MAX_MESSAGE (5u << 20) /* a broker's default maxMessageSize */
#define PF_PADDING (10u << 10)    /* room for command and metadata above it */

/* CRC32-C (Castagnoli, as iSCSI and Pulsar use it) of n bytes, continuing
 * from crc (0 to start). */
uint32_t sg__crc32c(uint32_t crc, const void *p, size_t n);

/* One decoded frame. cmd and meta are owned (sg__pf_clear frees them);
 * payload points into the decoded bytes. */
typedef struct pframe {
    pcmd *cmd;
    pmeta *meta;            /* payload commands only */
    const uint8_t *payload; /* borrowed from the input */
    size_t payload_len;
    int has_checksum;
} pframe;

/* Decodes the frame that starts p[0..n). Returns its length (> 0) and
 * fills *f; 0 if more bytes are needed (*f zeroed); -1 (*f zeroed) if the bytes are
 * not a frame we accept (why says why): a size over max (the whole frame
 * after its 4-byte length), inconsistent sizes, an undecodable command or
 * metadata, a checksum that does not match, or a known command type
 * without its body. */
long sg__pf_decode(const uint8_t *p, size_t n, size_t max, pframe *f, char *why, size_t whylen);
void sg__pf_clear(pframe *f);

/* A simple frame [total][cmd size][cmd]; caller frees; never NULL. */
uint8_t *sg__pf_encode(const pcmd *cmd, size_t *len);
/* A payload frame [total][cmd size][cmd][magic][crc32c][meta size][meta]
 * [payload], the checksum over everything after it; caller frees. */
uint8_t *sg__pf_encode_payload(const pcmd *cmd, const pmeta *md, const void *payload, size_t n,
                               size_t *len);
/* "ServiceNotReady", ... for a ServerError value; "error <n>" for others
 * (into buf[32] when needed). */
const char *sg__pf_error_name(int err, char buf[32]);
/* 1 if a ServerError will not go away by retrying (authorization, topic
 * name, terminated topic...): the publishes waiting for it fail at once. */
int sg__pf_error_permanent(int err);

/* ---- TLS over memory BIOs (pulsar_tls.c) ------------------------------- */

typedef struct ptls ptls;

/* An SSL_CTX verifying against ca_file (NULL: the system store), or
 * verifying nothing when insecure. On failure NULL and err says why. */
void *sg__ptls_ctx_new(const char *ca_file, int insecure, char *err, size_t errlen);
void sg__ptls_ctx_free(void *ctx);
/* A client session for `host` (name checked against the certificate,
 * sent as SNI unless an IP address). */
ptls *sg__ptls_new(void *ctx, const char *host);
void sg__ptls_free(ptls *t);
/* Ciphertext received from the peer. */
void sg__ptls_feed(ptls *t, const void *p, size_t n);
/* Runs the handshake: 1 done, 0 needs more input, -1 failed (why). */
int sg__ptls_handshake(ptls *t, char *why, size_t whylen);
/* Plaintext out of what was fed: bytes (> 0), 0 if none yet, -1 failed
 * or closed by the peer (why). */
long sg__ptls_read(ptls *t, void *buf, size_t cap, char *why, size_t whylen);
/* Encrypts n bytes; 0 or -1 (why). */
int sg__ptls_write(ptls *t, const void *p, size_t n, char *why, size_t whylen);
/* The ciphertext waiting to be sent, malloc'ed (caller frees), or NULL. */
uint8_t *sg__ptls_take(ptls *t, size_t *len);

/* ---- the bus's state --------------------------------------------------- */

typedef struct pulsar_bus pulsar_bus;
typedef struct endpoint endpoint;
typedef struct pconn pconn;
typedef struct producer producer;
typedef struct ppub ppub;
typedef struct outframe outframe;

/* Where a publish is: a producer's waiting list (no sequence id yet), its
 * sent list (a sequence id, sent or to be sent again), or the bus's
 * finished list (its callback is due). */
typedef enum { PUB_WAITING, PUB_SENT, PUB_FINISHED } pub_where;

struct ppub {
    producer *pr;  /* borrowed */
    char *payload; /* owned: the envelope */
    size_t len;
    char event_id[40];
    char saga_id[40];
    sg__bus_trace_ctx trace; /* sent as properties "traceparent", "tracestate" */
    uint64_t seq;            /* valid in PUB_SENT */
    uint64_t publish_ms;     /* wall clock of the first send */
    uint64_t due_ms;         /* uv_now deadline */
    long timeout_ms;
    int written;      /* handed to a socket at least once: in doubt */
    outframe *queued; /* its frame in a session's output queue, or NULL */
    sg_bus_ack_cb done;
    void *arg;
    pub_where where;
    sg_status st; /* PUB_FINISHED: the outcome */
    char why[256];
    ppub *prev, *next;   /* the list of `where` */
    ppub *dprev, *dnext; /* pb->deadlines (not while PUB_FINISHED) */
};

typedef enum { PR_IDLE, PR_BACKOFF, PR_LOOKUP, PR_CREATING, PR_READY } pr_state;

/* One topic's producer, created on its first publish, kept for the bus's
 * life. Its id and name stay the same across reconnects. */
struct producer {
    pulsar_bus *pb;
    char *topic;   /* "persistent://tenant/ns/<event topic>", owned */
    char *evtopic; /* the event topic, owned */
    uint64_t id;   /* producer_id, unique in the bus */
    pr_state state;
    endpoint *ep;    /* where the current lookup or producer runs */
    uint64_t req_id; /* LOOKUP or PRODUCER in flight on ep, 0 = not sent */
    int authoritative;
    int redirects;
    char *name;        /* producer name the broker confirmed; owned */
    uint64_t next_seq; /* sequence id of the next new publish */
    ppub *waiting;     /* FIFO without sequence ids */
    ppub *sent;        /* ascending sequence ids */
    uv_timer_t retry;  /* PR_BACKOFF */
    unsigned backoff_ms;
    char why[256]; /* the last failure, for timeouts' reasons */
    producer *prev, *next;
};

/* A broker address; its session (pconn) comes and goes. */
struct endpoint {
    pulsar_bus *pb;
    char *host; /* owned, without brackets */
    int port;
    int tls;
    char *url;        /* "pulsar://host:port", for messages; owned */
    int service;      /* the --bus address: reconnects by itself, backs /readyz */
    pconn *cur;       /* the session connecting or up, or NULL */
    int ready;        /* cur has had CONNECTED */
    uv_timer_t retry; /* reconnect backoff (service endpoint) */
    int retrying;
    unsigned backoff_ms;
    unsigned fails;   /* failed sessions in a row */
    size_t max_frame; /* of the current session */
    char why[256];    /* last failure */
    endpoint *prev, *next;
};

typedef struct pulsar_opts {
    char *host;
    int port;
    int tls;
    char *token; /* NULL: none */
    char *ca;    /* NULL: the system store */
    int insecure;
    char *producer; /* producer name */
    char *tenant;
    char *ns;
    unsigned keepalive_ms;
    unsigned connect_timeout_ms;
    size_t max_pending;
} pulsar_opts;

/* Parses a bus URL of scheme "pulsar" or "pulsar+ssl" into o (whose
 * numeric defaults the caller has set); 0, or -1 with err saying why. o
 * is the caller's to free with sg__pulsar_opts_free either way. */
int sg__pulsar_parse_url(pulsar_opts *o, const char *scheme, const char *url, char *err,
                         size_t errlen);
void sg__pulsar_opts_free(pulsar_opts *o);

struct pulsar_bus {
    uv_loop_t *loop;
    pulsar_opts o;
    void *ssl_ctx; /* TLS only */
    endpoint *eps;
    endpoint *service;
    producer *producers;
    ppub *deadlines;     /* by due_ms, ascending */
    uv_timer_t deadline; /* armed at the head's due_ms */
    ppub *finished;      /* callbacks due, FIFO */
    uv_idle_t idle;      /* runs them */
    size_t npending;     /* publishes not finished */
    uint64_t next_req;
    uint64_t next_producer;
    int closing;
    int live;           /* open handles and objects still to free; pb goes at 0 */
    pthread_mutex_t mu; /* health, for any thread: */
    int healthy;
    char health_why[256];
};

/* ---- pulsar.c ---------------------------------------------------------- */

/* Releases one of pb->live; frees pb at zero. */
void sg__pulsar_unref(pulsar_bus *pb);
/* Sets /readyz's view (any text; "" when healthy). */
void sg__pulsar_health(pulsar_bus *pb, int healthy, const char *why);
/* Parses "pulsar://host:port" or "pulsar+ssl://..." as a lookup answers
 * it: 0 and host (caller frees) and port, or -1. */
int sg__pulsar_parse_addr(const char *url, char **host, int *port, int *tls);

/* ---- pulsar_conn.c, pulsar_out.c: one session ---------------------------- */

#define PC_READ_CHUNK (64u << 10)

typedef enum { S_RESOLVING, S_CONNECTING, S_TLS, S_HELLO, S_READY } sstate;

struct pconn {
    endpoint *ep; /* NULL once detached */
    pulsar_bus *pb;
    sstate state;
    int refs; /* timer, tcp handle, getaddrinfo: freed at 0 */
    int dead;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *ai_next; /* owned list; the next address to try */
    uv_tcp_t tcp;
    int tcp_open;
    uv_connect_t creq;
    uv_timer_t timer;   /* connect deadline, then keepalive */
    char late_why[256]; /* a failure found inside a caller: reported by the timer */
    ptls *tls;
    sg_buf in; /* received plaintext, capped */
    size_t max_frame;
    outframe *outq;
    int writing; /* a batch of outq is in uv_write */
    uint64_t last_rx;
    char rbuf[PC_READ_CHUNK];
};

/* Starts a session to ep (resolve, connect, TLS, CONNECT). It reports to
 * ep through sg__ep_up and sg__ep_down, never before returning. */
pconn *sg__pc_start(endpoint *ep);
/* Ends a session; unless the bus is closing, calls sg__ep_down(ep, why)
 * before returning. */
void sg__pc_close(pconn *pc, const char *why);
/* 1 if pc has had CONNECTED and is not closing. */
int sg__pc_ready(const pconn *pc);
/* Queues a frame (taken) for pc, freed at once if pc is not ready. pub
 * (may be NULL) is the publish the frame carries, so that cancelling it can
 * take the frame back before it is handed to the socket. */
void sg__pc_queue(pconn *pc, uint8_t *frame, size_t len, ppub *pub);
/* Drops pub's queued, unwritten frame (if any). */
void sg__pc_unqueue(ppub *pub);
/* Appends a frame (taken) to pc's queue whatever its state (CONNECT). */
void sg__pc_push(pconn *pc, uint8_t *frame, size_t len, ppub *pub);
/* Starts writing the queue unless a write is under way. */
void sg__pc_flush(pconn *pc);
/* Frees the queue (a closing session); its publishes go back to waiting. */
void sg__pc_drop_queue(pconn *pc);
/* Sends the TLS layer's pending ciphertext (handshake, alerts). */
void sg__pc_write_tls(pconn *pc);
/* For a failure found while a caller is mid-way: the session ends from
 * its timer, on a later turn of the loop. */
void sg__pc_fail_later(pconn *pc, const char *why);

/* ---- pulsar_ep.c: endpoints --------------------------------------------- */

/* ms/2 .. ms, at random: backoff with full-ish jitter. */
unsigned sg__pulsar_jitter(unsigned ms);
/* The endpoint for host:port (tls), created on first use; NULL if there
 * are already 64 (a broker cannot make us hold unbounded state). */
endpoint *sg__ep_get(pulsar_bus *pb, const char *host, int port, int tls);
/* Starts a session unless one is up or on its way (or the service
 * endpoint's backoff runs: then it connects when that ends). */
void sg__ep_want(endpoint *ep);
/* Queues a frame (taken) on ep's ready session: 0; -1 if not ready (the
 * frame is freed). pub as for sg__pc_queue. */
int sg__ep_send(endpoint *ep, uint8_t *frame, size_t len, ppub *pub);
/* Ends ep's session with a reason (logged); producers hear of it before
 * this returns. */
void sg__ep_fail(endpoint *ep, const char *why);
/* From the session: CONNECTED arrived / the session ended. */
void sg__ep_up(endpoint *ep, size_t max_frame);
void sg__ep_down(endpoint *ep, const char *why);
/* Closes every endpoint (bus destroy). */
void sg__ep_close_all(pulsar_bus *pb);

/* ---- pulsar_pub.c: publishes' bookkeeping ------------------------------- */

/* Starts the deadline timer and the idle handle (create); -1 on failure. */
int sg__pub_init(pulsar_bus *pb);
/* Puts a new publish (due_ms set) on the deadline list. */
void sg__pub_track(pulsar_bus *pb, ppub *p);
/* Takes p off every list and queues its callback with this outcome (run
 * from the idle handle, on a later turn of the loop). */
void sg__pub_finish(pulsar_bus *pb, ppub *p, sg_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Unlinks p from wherever it is and frees it; its callback never runs. */
void sg__pub_drop(pulsar_bus *pb, ppub *p);
/* Drops the finished publishes and closes the handles (destroy). */
void sg__pub_close(pulsar_bus *pb);

/* ---- pulsar_producer.c: producers --------------------------------------- */

/* The producer for an event topic, created on first use. */
producer *sg__pr_get(pulsar_bus *pb, const char *evtopic);
/* Puts a new publish on pr's waiting list and gets it going. */
void sg__pr_publish(producer *pr, ppub *p);
/* Endpoint events. */
void sg__pr_ep_ready(endpoint *ep);
void sg__pr_ep_down(endpoint *ep);
/* A frame other than CONNECTED / PING / PONG from ep's session. */
void sg__pr_frame(endpoint *ep, const pframe *f);
/* Drops every publish of the producers and closes them (destroy). */
void sg__pr_close_all(pulsar_bus *pb);

#endif
