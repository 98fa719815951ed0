/* Store internals: the backend interface and the sg_write layout.
 *
 * A backend is a table of function pointers (like SQLite's sqlite3_vfs or
 * Redis's ConnectionType) found by URL scheme at run time; store.c holds no
 * backend specifics. One backend per prefix of files: sqlite*.c and
 * postgres*.c. Methods marked optional may be NULL; the public
 * wrappers then answer SG_EINVAL.
 *
 * Errors: a method that can fail returns an sg_status and writes a
 * sentence into the caller's err buffer (errlen bytes, never NULL); the
 * backend never logs a failure it returns.
 *
 * Threading contract for backends:
 * - open() runs on the thread calling sg_store_open; afterwards every
 *   exec_batch() call runs on the store's writer thread, never two at once,
 *   so the writer connection needs no locking of its own.
 * - reader_open() may be called from any thread at any time (also while
 *   exec_batch runs): it may only read immutable backend state (such as
 *   the path) and must open its own connection.
 * - A reader is used by one thread at a time.
 * - close() runs after the writer thread has been joined and every reader
 *   has been closed. */
#ifndef SG_STORE_INT_H
#define SG_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sg/records.h"
#include "sg/status.h"
#include "sg/store.h"

/* ---- sg_write layout --------------------------------------------------- */

typedef enum sg_write_kind {
    SG_WOP_SAGA_INSERT,
    SG_WOP_SAGA_UPDATE,
    SG_WOP_STEP_UPDATE,
    SG_WOP_EVENT_INSERT,
    SG_WOP_EVENT_UPDATE,
    SG_WOP_SAGA_EXPECT,
    SG_WOP_EVENT_EXPECT,
    SG_WOP_DEF_INSERT,
    SG_WOP_EVENT_TRIED,
    SG_WOP_WITHDRAW_ORPHANS,
    SG_WOP_SAGA_CLAIM,
    SG_WOP_PURGE,
} sg_write_kind;

/* One operation; every pointer inside is an owned deep copy, freed by
 * sg_write_destroy. */
typedef struct sg_write_op {
    sg_write_kind kind;
    union {
        sg_saga_rec saga_insert; /* with its nsteps steps */
        struct {
            char *id;
            sg_saga_status status;
            sg_comp_status comp;
            char *error; /* NULL clears the column */
            int64_t updated_us;
        } saga_update;
        struct {
            char *saga_id;
            size_t index;
            sg_step_rec step; /* step.name is ignored (names never change) */
        } step_update;
        sg_event_rec event_insert;
        struct {
            char *id;
            sg_event_status status;
            int attempts;
            char *last_error; /* NULL clears the column */
            int64_t updated_us;
        } event_update;
        struct {
            char *id;
            sg_saga_status status;
            sg_comp_status comp;
        } saga_expect;
        struct {
            char *id;
            sg_event_status status;
        } event_expect;
        struct {
            char *name;
            int version;
            char *canonical;
            int64_t created_us;
        } def_insert;
        struct {
            char *id;
            int64_t us;
        } event_tried;
        char *saga_claim; /* the saga's id */
        struct {
            int64_t before_us; /* settled sagas last changed before this go */
            size_t limit;      /* at most this many sagas */
            /* Borrowed from the caller, who keeps it until the write
             * completes: the backend stores how many sagas the
             * committing run deleted (writer thread; read after the
             * completion, which the writer's lock orders after it). */
            size_t *purged;
            /* Unique in this process (sg_write_purge numbers them): two
             * purges with the same arguments are two writes, where a
             * backend recognises a write sent again (Redis's outcome
             * keys) by its arguments. */
            uint64_t seq;
        } purge;
    } u;
} sg_write_op;

struct sg_write {
    sg_write_op *ops; /* owned array of nops (capacity cap) */
    size_t nops;
    size_t cap;

    /* Queue state, owned by store.c and writer.c; backends ignore it. A
     * write is in at most one utlist DL list at a time (the submit queue
     * or the done queue); prev and next are NULL while it is in none. */
    struct sg_write *prev, *next;
    sg_store_done_cb cb;
    void *arg;
    sg_status result;
    int sync; /* submitted by sg_store_commit_sync: a thread waits on it */
    int done; /* sync only: result is final, the waiter may free it */
};

/* ---- backend interface -------------------------------------------------- */

/* Backend-private state; each backend defines these structs. */
typedef struct sg_store_backend sg_store_backend;
typedef struct sg_store_breader sg_store_breader;

struct sg_store_ops {
    const char *const *schemes; /* NULL-terminated, e.g. {"sqlite", "file", NULL} */
    int plain_paths;            /* 1: a URL without a scheme is a path for this backend */
    /* 1: several processes may open one database (sg_store_shared). Such
     * a backend takes a lease in open() (opt->lease_ms, never 0 there),
     * renews it at the start of every exec_batch (a probe, n == 0,
     * included), and when the lease is no longer this process's makes
     * exec_batch apply nothing and return SG_EFENCED, for good; it fills
     * owner() and adopt(), and its recovery reads (load_unfinished*,
     * has_orphans, load_compensations, load_pending_events) return only
     * this process's sagas and events. close() gives the lease up so that
     * others may adopt at once. */
    int shared;

    /* url is the whole URL as given (borrowed); target is what follows
     * "scheme:" and an optional "//" (the whole url for a plain path). On
     * failure *out is NULL and err holds a sentence. */
    sg_status (*open)(sg_store_backend **out, const char *url, const char *target,
                      const sg_store_options *opt, char *err, size_t errlen);
    void (*close)(sg_store_backend *b); /* NULL-safe */

    /* One transaction over writes[0..n). Each write is atomic: a write
     * that fails by itself (unique constraint → SG_ECONFLICT, missing row
     * → SG_ENOTFOUND) is rolled back alone and the others commit (SQLite
     * runs the batch without savepoints, and again with one per write
     * only when a write fails by itself). results[i] gets each write's status. Returns SG_OK
     * if the transaction committed; otherwise nothing was applied, every
     * results[i] is SG_EIO and err says why. writes are borrowed. n == 0
     * is a probe: a transaction that writes without changing anything,
     * which commits only if the store takes writes again.
     *
     * SG_EDOUBT (n > 0): the COMMIT went unanswered and the backend could
     * not learn yet whether it landed; results[i] are SG_EIO. Nothing may
     * run before the outcome is known, so the writer calls again with the
     * very same writes (pointers and order), and the backend answers from
     * the outcome (the results it had if the transaction committed) or
     * runs them if it did not. */
    sg_status (*exec_batch)(sg_store_backend *b, sg_write *const *writes, size_t n,
                            sg_status *results, char *err, size_t errlen);
    /* Upkeep that need not hold up the writes of a batch: called on the
     * writer thread after a committed batch was handed back and before
     * the next one runs (SQLite: the WAL checkpoint). Optional. */
    void (*after_batch)(sg_store_backend *b);

    /* On failure *out is NULL and err says why. */
    sg_status (*reader_open)(sg_store_backend *b, sg_store_breader **out, char *err, size_t errlen);
    void (*reader_close)(sg_store_breader *r); /* NULL-safe */

    /* The read methods mirror the public ones in sg/store.h; out-records
     * arrive zeroed and are left zeroed (or freed) on failure. err arrives
     * as "" and is left alone on success; on failure it may get a sentence
     * (the public wrapper puts the status text there if it stays ""). */
    sg_status (*get)(sg_store_breader *r, const char *id, sg_saga_rec *out, char *err,
                     size_t errlen);
    sg_status (*get_by_idem)(sg_store_breader *r, const char *key, sg_saga_rec *out, char *err,
                             size_t errlen);
    /* q is validated (limit 1..1000); the cursor is not parsed yet: the
     * backend does it with sg_store_cursor_parse. */
    sg_status (*list)(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                      char next[SG_CURSOR_MAX], char *err, size_t errlen);
    sg_status (*load_unfinished)(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                 void *arg, char *err, size_t errlen);
    sg_status (*load_unfinished_page)(sg_store_breader *r, const char *after, size_t limit,
                                      sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX],
                                      char *err, size_t errlen);
    sg_status (*has_orphans)(sg_store_breader *r, int *yes, char *err, size_t errlen);
    sg_status (*load_compensations)(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                    void *arg, char *err, size_t errlen);
    sg_status (*load_pending_events)(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                     void *arg, char *err, size_t errlen);
    /* Outbox entries, newest first, paged like list (q->status: -1 or an
     * sg_event_status). */
    sg_status (*list_events)(sg_store_breader *r, const sg_list_query *q, sg_event_rec **out,
                             size_t *n, char next[SG_CURSOR_MAX], char *err, size_t errlen);
    sg_status (*get_event)(sg_store_breader *r, const char *id, sg_event_rec *out, char *err,
                           size_t errlen); /* optional */
    /* Outbox entries by status into counts[sg_event_status] (arriving
     * zeroed), for GET /metrics. Optional. */
    sg_status (*count_events)(sg_store_breader *r, uint64_t counts[SG_EVENT_STATUSES], char *err,
                              size_t errlen);
    /* Every stored definition version by name, then version. Optional. */
    sg_status (*load_defs)(sg_store_breader *r, sg_def_row_cb cb, void *arg, char *err,
                           size_t errlen);
    /* Shared backends: this process's owner id and epoch (any thread;
     * immutable after open). */
    void (*owner)(sg_store_backend *b, char id[SG_ID_LEN + 1], int64_t *epoch);
    /* Shared backends: sg_store_adopt (see sg/store.h). */
    sg_status (*adopt)(sg_store_breader *r, size_t *taken, char *err, size_t errlen);
    /* The backend's counts of the writer's work since open: statements,
     * wal_pages and wal_bytes of out (any thread; the rest of out is the
     * front end's). Optional: left 0. */
    void (*counts)(sg_store_backend *b, sg_store_counters *out);
};

extern const struct sg_store_ops sg_store_sqlite_ops;
extern const struct sg_store_ops sg_store_redis_ops;    /* redis.c */
extern const struct sg_store_ops sg_store_postgres_ops; /* postgres:// and postgresql:// */

/* ---- helpers shared by backends (backend_util.c; the countdown: store.c) -- */

/* Strict cursor syntax "<created_us>.<id>": 1-19 decimal digits, '.', a
 * 36-character UUID, nothing else. SG_EINVAL otherwise. id gets the UUID. */
sg_status sg_store_cursor_parse(const char *cursor, int64_t *created_us, char id[SG_ID_LEN + 1]);
void sg_store_cursor_format(char out[SG_CURSOR_MAX], int64_t created_us, const char *id);

/* Frees the n records of v and v itself (NULL-safe). */
void sg_store_free_sagas(sg_saga_rec *v, size_t n);
void sg_store_free_events(sg_event_rec *v, size_t n);
/* The end of a read that hands records to a callback: each of v[0..n)
 * moves into a heap record cb takes (and frees), then v is freed. */
/* A saga's stored trace into r (trace id of idlen bytes, flags, tracestate
 * of statelen bytes, each as the row holds it, NULL = none): a value that
 * is not one sagad writes leaves the saga without it rather than passing
 * it on. */
void sg_store_set_trace(sg_saga_rec *r, const char *id, size_t idlen, int64_t flags,
                        const char *state, size_t statelen);
void sg_store_hand_sagas(sg_saga_rec *v, size_t n, void (*cb)(void *arg, sg_saga_rec *rec),
                         void *arg);
void sg_store_hand_events(sg_event_rec *v, size_t n, void (*cb)(void *arg, sg_event_rec *ev),
                          void *arg);
/* The end of load_unfinished_page: with st SG_OK each saga v[i] goes to cb
 * with its events evs[i] (nevs[i] of them); otherwise all are freed. The
 * arrays are freed either way; returns st. */
sg_status sg_store_hand_page(sg_status st, sg_saga_rec *v, sg_event_rec **evs, size_t *nevs,
                             size_t n, sg_unfinished_cb cb, void *arg);

/* Failure injection for tests (SQLite's countdown style): when set to N > 0,
 * the Nth statement that exec_batch runs from then on (BEGIN, SAVEPOINT,
 * each write statement, RELEASE, COMMIT...) fails once as an I/O error;
 * the countdown then stays at 0 (off). Looping N upward reaches every
 * error path of a batch. */
extern _Atomic int sg_store_fail_countdown;

#endif
