/* Redis backend internals shared by redis.c (URL, connections, open,
 * leases), redis_lua.c (the scripts), redis_write.c (exec_batch) and
 * redis_read.c (readers). The key layout is described in docs/store.md. */
#ifndef SG_STORE_REDIS_INT_H
#define SG_STORE_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <uv.h>

#include "store_int.h"

/* The layout this sagad writes (key sagad:version): 1 the first (one
 * owner), 2 with leases (upgraded from 1 at open), 3 with the saga's trace
 * context (fields trace_id, trace_flags, tracestate; a saga of layout 2
 * simply has none, so 2 becomes 3 with no change to its data). */
#define SG_RD_LAYOUT_VERSION 3
/* A reply bigger than this (in elements of one array) is refused. */
#define SG_RD_MAX_ELEMENTS 1000000
/* How long a writer whose connection broke before EXEC's reply waits for
 * the server to come back and tell whether its batch committed. */
#define SG_RD_RESOLVE_MS 2000
/* How long Redis keeps a write's outcome (sagad:done:<fingerprint>): a
 * batch retried within this time never applies a write twice. */
#define SG_RD_DONE_TTL_MS 300000
#define SG_RD_FP_LEN 32
/* Records per read script call when a reader walks a whole index. */
#define SG_RD_CHUNK 500

/* The scripts (redis_lua.c). */
extern const char sg__rd_lua_write[]; /* one sg_write: checks everything, then applies */
extern const char sg__rd_lua_lease[]; /* take / renew / drop a lease; adopt */
extern const char sg__rd_lua_read[];  /* the readers' queries */

/* Where and how to connect (parsed from the URL; immutable after open). */
typedef struct rd_addr {
    char host[256];
    int port;
    int db;
    char user[128];  /* "" = none (AUTH with the password alone) */
    char pass[256];  /* "" = no AUTH */
    int relaxed;     /* ?durability=relaxed */
    char shown[320]; /* redis://host:port/N for messages: never the password */
    int timeout_ms;  /* of each command */
} rd_addr;

struct sg_store_backend {
    rd_addr a;                                       /* immutable after open */
    char sha_write[41], sha_lease[41], sha_read[41]; /* immutable after open */
    /* This process's lease (design §7): owner id, epoch, length; all
     * immutable after open. */
    char owner[SG_ID_LEN + 1];
    int64_t epoch;
    long lease_ms;
    int fenced;                /* the writer's: the lease is lost for good */
    redisContext *w;           /* the writer's connection; NULL = reconnect */
    _Atomic uint64_t commands; /* commands the writer sent */
    /* Sagas inserted by a batch whose reply was lost and whose outcome
     * could not be read back (the writer's only): removed on the next
     * batch if they were stored, since their clients were told the insert
     * failed and nothing runs them. Owned array of ndoubt (capacity
     * doubt_cap). */
    char (*doubt)[SG_ID_LEN + 1];
    size_t ndoubt, doubt_cap;
};

struct sg_store_breader {
    sg_store_backend *be; /* borrowed: immutable parts only */
    redisContext *c;      /* owned; NULL = reconnect on the next call */
};

/* ---- redis.c ---------------------------------------------------------------- */

/* Connects to a's server (AUTH, SELECT, reply bounds) and loads the
 * scripts when b is given (checking that their digests are b's). On
 * failure NULL and err says why. */
redisContext *sg__rd_connect(const rd_addr *a, const sg_store_backend *b, char *err, size_t errlen);
/* Runs one command (argv of n binary-safe strings) and returns its reply
 * (caller frees), or NULL with err set ("<what>: <why>"); an error reply
 * is returned as a reply. On a connection failure *c is freed and NULL. */
redisReply *sg__rd_cmd(redisContext **c, int n, const char **argv, const size_t *len,
                       const char *what, char *err, size_t errlen);
/* Text of an error or unexpected reply, for messages. */
const char *sg__rd_reply_text(const redisReply *r);

/* ---- redis_lease.c ---------------------------------------------------------- */

/* Runs the lease script (mode, then argv[0..n) after the owner id) on
 * *c: its integer answer in *out, or -1 with err set. */
int sg__rd_lease_call(const sg_store_backend *b, redisContext **c, const char *mode, int n,
                      const char **argv, long long *out, char *err, size_t errlen);
/* At open, on the writer's connection: a fresh owner id and epoch; a
 * layout-1 database upgraded; the sagas of expired leases adopted. */
sg_status sg__rd_lease_take(sg_store_backend *b, char *err, size_t errlen);
sg_status sg__rd_lease_upgrade(sg_store_backend *b, char *err, size_t errlen);
sg_status sg__rd_adopt_at_open(sg_store_backend *b, size_t *taken, char *err, size_t errlen);
/* At close (or a failed open): the lease expires now (logged if not). */
void sg__rd_lease_drop(sg_store_backend *b);
/* The ops' owner() and adopt() (sg_store_adopt, on the reader's connection). */
void sg__rd_owner(sg_store_backend *b, char id[SG_ID_LEN + 1], int64_t *epoch);
sg_status sg__rd_adopt(sg_store_breader *r, size_t *taken, char *err, size_t errlen);

/* ---- redis_args.c: the arguments of one command ------------------------- */

/* Arguments point either into the sg_write (borrowed: it outlives the
 * command) or into the builder's arena (numbers, flags, members), kept as
 * offsets until the arena stops growing. */
typedef struct rd_args {
    const char **v; /* owned array */
    size_t *len;    /* owned */
    size_t *off;    /* owned: arena offset + 1, or 0 for a borrowed value */
    size_t n, cap;
    char *arena; /* owned */
    size_t alen, acap;
} rd_args;
void sg__rd_add_ref(rd_args *a, const char *p, size_t n);  /* borrowed; NULL = "" */
void sg__rd_add_str(rd_args *a, const char *s);            /* borrowed; NULL = "" */
void sg__rd_add_copy(rd_args *a, const char *p, size_t n); /* copied into the arena */
void sg__rd_add_int(rd_args *a, int64_t v);
void sg__rd_add_member(rd_args *a, int64_t created_us, const char *id); /* sg__rd_member */
/* Points the arena arguments at their bytes: call once all are added. */
void sg__rd_args_fix(rd_args *a);
void sg__rd_args_free(rd_args *a); /* leaves a zeroed */

/* ---- redis_enc.c ------------------------------------------------------------- */

/* Appends op's code and arguments (borrowed from op where they can be). */
void sg__rd_enc_op(rd_args *a, const sg_write_op *op);
/* A write script's answer at or above this: the write applied and its
 * purge deleted (answer - SG_RD_PURGED) sagas. */
#define SG_RD_PURGED 16

/* ---- redis_write.c ------------------------------------------------------------ */

sg_status sg__rd_exec_batch(sg_store_backend *b, sg_write *const *writes, size_t n,
                            sg_status *results, char *err, size_t errlen);
void sg__rd_counts(sg_store_backend *b, sg_store_counters *out);

/* ---- redis_read.c ----------------------------------------------------------- */

sg_status sg__rd_reader_open(sg_store_backend *b, sg_store_breader **out, char *err, size_t errlen);
void sg__rd_reader_close(sg_store_breader *r);
sg_status sg__rd_get(sg_store_breader *r, const char *id, sg_saga_rec *out, char *err,
                     size_t errlen);
sg_status sg__rd_get_by_idem(sg_store_breader *r, const char *key, sg_saga_rec *out, char *err,
                             size_t errlen);
sg_status sg__rd_list(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                      char next[SG_CURSOR_MAX], char *err, size_t errlen);
sg_status sg__rd_load_unfinished(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                 void *arg, char *err, size_t errlen);
sg_status sg__rd_load_unfinished_page(sg_store_breader *r, const char *after, size_t limit,
                                      sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX],
                                      char *err, size_t errlen);
sg_status sg__rd_has_orphans(sg_store_breader *r, int *yes, char *err, size_t errlen);
sg_status sg__rd_load_compensations(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                    void *arg, char *err, size_t errlen);
sg_status sg__rd_load_pending_events(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                     void *arg, char *err, size_t errlen);
sg_status sg__rd_list_events(sg_store_breader *r, const sg_list_query *q, sg_event_rec **out,
                             size_t *n, char next[SG_CURSOR_MAX], char *err, size_t errlen);
/* GET /metrics: outbox entries by status (counts[sg_event_status]). */
sg_status sg__rd_count_events(sg_store_breader *r, uint64_t counts[SG_EVENT_STATUSES], char *err,
                              size_t errlen);
sg_status sg__rd_get_event(sg_store_breader *r, const char *id, sg_event_rec *out, char *err,
                           size_t errlen);
sg_status sg__rd_load_defs(sg_store_breader *r, sg_def_row_cb cb, void *arg, char *err,
                           size_t errlen);

/* Helpers the reads share (redis_read.c). */
/* One command on r's connection (reconnecting first if it was lost, once
 * more if the server lost the scripts); an error reply fails: NULL, err set. */
redisReply *sg__rd_call(sg_store_breader *r, int n, const char **argv, char *err, size_t errlen);
/* The read script with its n (at most 7) arguments. */
redisReply *sg__rd_script(sg_store_breader *r, int n, const char **args, char *err, size_t errlen);
/* 0 if rep is a list of entries {{hash, hash...}...}; else -1, err set. */
int sg__rd_check_entries(const redisReply *rep, char *err, size_t errlen);
/* An event record (out overwritten) from its hash (checked by the caller). */
void sg__rd_to_event(const redisReply *h, sg_event_rec *e);
/* A ZRANGEBYLEX bound: "(member" of (cus, cid) if after, else the end
 * the walk starts from ("+" descending, "-" ascending). */
void sg__rd_page_bound(char *out, size_t n, int desc, int64_t cus, const char *cid, int after);

/* The index member of a record: its created_us made sortable as text
 * (20 digits of created_us + 2^63), ':' and its id, so that members of
 * equal score sort as (created_us, id), ascending. */
#define SG_RD_KEY_LEN (20 + 1 + SG_ID_LEN)
/* The key (without "sagad:") of one of b's per-owner indexes, "o:<owner
 * id>:<which>" (run, live, ev, comps: see redis_lua.c). */
void sg__rd_own_index(char *out, size_t n, const sg_store_backend *b, const char *which);
void sg__rd_member(char out[SG_RD_KEY_LEN + 1], int64_t created_us, const char *id);

#endif
