/* sta-stubs internals: fake anonymizer, tokenizer webhook and AI model
 * services with latency and failure injection. One header for the small
 * modules of src/stubs (inject, record, timer, server); nothing outside
 * src/stubs includes it. */
#ifndef STUBS_H
#define STUBS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "sg/buf.h"
#include "sg/status.h"

/* ---- injection specs (inject.c) ---------------------------------------- */

typedef enum {
    STUB_SVC_ANONYMIZER,
    STUB_SVC_TOKENIZER,
    STUB_SVC_AI_MODEL,
    STUB_SVC_COUNT
} stub_svc;

typedef enum {
    STUB_MODE_JSON,    /* normal answer */
    STUB_MODE_NONJSON, /* `not json`, text/plain */
    STUB_MODE_DROP,    /* close the connection without an answer */
    STUB_MODE_HANG,    /* never answer (bounded by STUB_HANG_MS) */
    STUB_MODE_BIG,     /* valid JSON body of STUB_BIG_BYTES */
} stub_mode;

#define STUB_MAX_DELAY_MS 600000           /* 10 minutes, like the connection timeout */
#define STUB_HANG_MS 600000                /* a hanging request gives up after this */
#define STUB_BIG_BYTES ((uint64_t)9 << 20) /* past sagad's default --max-response */

typedef struct stub_spec {
    int status;   /* answer status; 0 = the normal 200 */
    int delay_ms; /* wait before answering (or dropping) */
    stub_mode mode;
    int fail_every; /* every K-th request answers 500; 0 = never */
} stub_spec;

/* Name used in `_stub` objects and /_config: "anonymizer", "tokenizer",
 * "ai_model". Static string. */
const char *stub_svc_name(stub_svc s);
const char *stub_mode_name(stub_mode m);

/* Parses a command-line SPEC "status=N,delay=MS,mode=M,fail_every=K" into
 * out (zeroed first). On failure writes a reason into err. */
sg_status stub_spec_parse_flag(const char *text, stub_spec *out, char *err, size_t errlen);
/* Overrides the fields that obj (a JSON object, borrowed) carries:
 * status, delay_ms (or delay), mode, fail_every; null resets a field.
 * On failure io is unchanged and err says why. */
sg_status stub_spec_apply_json(stub_spec *io, const json_t *obj, char *err, size_t errlen);
/* Overrides one field from a header value: field is "status", "delay_ms"
 * or "mode". On failure io is unchanged and err says why. */
sg_status stub_spec_apply_text(stub_spec *io, const char *field, const char *value, char *err,
                               size_t errlen);
/* New reference; caller decrefs. */
json_t *stub_spec_to_json(const stub_spec *s);

/* ---- request recording (record.c) -------------------------------------- */

typedef struct stub_ring stub_ring;

/* What a service answers a request, settled when it arrives. */
typedef struct stub_answer {
    int status; /* HTTP status it answers with; 0 = none (drop, hang) */
    stub_mode mode;
    int delay_ms;
} stub_answer;

/* A bounded ring of received requests: at most max_entries, at most
 * max_bytes in all, each body cut at max_body. The oldest go first. With
 * file (borrowed; NULL = none) every entry is also appended to that file
 * as one JSON line, so a test keeps all of them, across restarts too. On
 * failure err says why. */
sg_status stub_ring_create(stub_ring **out, size_t max_entries, size_t max_bytes, size_t max_body,
                           const char *file, char *err, size_t errlen);
void stub_ring_destroy(stub_ring *r); /* NULL-safe */
#define STUB_REC_HEADERS 16           /* X-Test-* headers kept per request */

typedef struct stub_header {
    const char *name, *value;
} stub_header;

/* A received request as the ring keeps it; every pointer borrowed. */
typedef struct stub_rec_in {
    const char *path;
    const char *method;
    const char *saga_id;        /* X-Saga-Id, or NULL */
    const char *idem_key;       /* Idempotency-Key, or NULL */
    const char *compensation;   /* X-Saga-Compensation, or NULL */
    const char *owner;          /* X-Saga-Owner (the calling sagad's lease), or NULL */
    const char *traceparent;    /* traceparent (W3C trace context), or NULL */
    const char *tracestate;     /* tracestate, or NULL */
    const stub_header *headers; /* X-Test-*, at most STUB_REC_HEADERS */
    size_t nheaders;
    const char *body;
    size_t len;
} stub_rec_in;

/* Copies everything it keeps (header names in lower case); ans is
 * borrowed. Numbers the entry and stamps it with the wall clock.
 * Thread-safe. */
void stub_ring_add(stub_ring *r, const stub_rec_in *in, const stub_answer *ans);
void stub_ring_clear(stub_ring *r);
/* Appends {"requests":[…]} to out, oldest first, only those whose saga id
 * equals saga_id unless it is NULL. SG_ETOOBIG if out overflows. */
sg_status stub_ring_dump(stub_ring *r, const char *saga_id, sg_buf *out);

/* ---- named services, /svc/<name> (names.c) ----------------------------- */

#define STUB_NAME_MAX 64         /* bytes of a service name */
#define STUB_NAMES_CONFIGURED 64 /* names /_config may give a spec at once */

typedef struct stub_names stub_names;

/* 1 if s[0..n) is a service name: 1..STUB_NAME_MAX of [A-Za-z0-9_.-]. */
int stub_name_ok(const char *s, size_t n);
stub_names *stub_names_create(void);
void stub_names_destroy(stub_names *t); /* NULL-safe */
/* A request to /svc/<name> arrived: *spec gets that name's runtime spec
 * (the normal one unless /_config set one) and id its answer id,
 * "<name>-<n>" with n counting that name's requests (names past the
 * table's bound share one counter: "<name>-o<n>"). Thread-safe. */
void stub_names_arrive(stub_names *t, const char *name, stub_spec *spec, char *id, size_t idlen);
/* The next fail_every count of name (1, 2, …; restarts when /_config
 * sets its spec). Thread-safe. */
unsigned long long stub_names_tick(stub_names *t, const char *name);
/* Applies the "svc/<name>" keys of a /_config body (borrowed; other keys
 * are not looked at): a spec object replaces that name's spec, null
 * resets it. All or nothing: on failure nothing changes and err says
 * why (a bad name or spec, more than STUB_NAMES_CONFIGURED names with a
 * spec). */
sg_status stub_names_configure(stub_names *t, const json_t *config, char *err, size_t errlen);
/* Adds "svc/<name>": spec for every configured name to obj. */
void stub_names_config_json(stub_names *t, json_t *obj);

/* ---- delay timer (timer.c) --------------------------------------------- */

typedef struct stub_timer stub_timer;
typedef void (*stub_timer_fn)(void *arg);

/* Starts the one timer thread. */
sg_status stub_timer_create(stub_timer **out);
/* Schedules fire(arg) in delay_ms. arm(arg) runs first, under the timer
 * lock, only if the timer accepts the entry, so that whatever arm does
 * (suspending a connection) is always undone by fire, even at shutdown.
 * SG_ECLOSED once stopping: then neither arm nor fire is called.
 * fire runs on the timer thread (also under the lock): keep it short. */
sg_status stub_timer_add(stub_timer *t, int64_t delay_ms, stub_timer_fn arm, stub_timer_fn fire,
                         void *arg);
/* Fires every pending entry now, refuses new ones and joins the thread.
 * Idempotent. */
void stub_timer_stop(stub_timer *t);
void stub_timer_destroy(stub_timer *t); /* stops first; NULL-safe */

/* ---- the HTTP server (server.c, routes.c) ------------------------------ */

typedef struct stub_server stub_server;

typedef struct stub_server_opts {
    const char *host;        /* numeric or resolvable, borrowed */
    const char *port;        /* "0" = any free port, borrowed */
    int threads;             /* MHD thread pool size, >= 1 */
    int quiet;               /* no `event …` lines on stdout */
    const char *record_file; /* also append each recorded request here; NULL = no; borrowed */
    stub_spec defaults[STUB_SVC_COUNT];
} stub_server_opts;

/* Binds and starts serving. On failure err says why. */
sg_status stub_server_start(stub_server **out, const stub_server_opts *o, char *err, size_t errlen);
int stub_server_port(const stub_server *s); /* the bound port */
/* Answers or closes everything in flight, stops and frees. NULL-safe. */
void stub_server_stop(stub_server *s);

#endif
