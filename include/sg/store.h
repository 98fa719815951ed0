/* The store: durable sagas, steps and the event outbox.
 *
 * Writes are described as an sg_write (a list of operations that must
 * commit together) and submitted from the loop thread. One writer thread
 * commits the writes of many sagas in one transaction (group commit); a
 * write that fails by itself is rolled back alone (the batch runs again
 * with a savepoint per write), so one failing write does not sink the
 * others. Completion callbacks run on the loop thread after the
 * transaction is durable.
 *
 * Reads go through an sg_store_reader: one per thread, its own connection,
 * never waiting for the writer. Nothing here logs a failure it returns:
 * every failing call returns an sg_status and a text the caller can show
 * (err buffers, the store's health reason, sg_store_reader_error).
 *
 * The backend is chosen at run time by URL scheme (sqlite:PATH, or a plain
 * path; postgres:// comes later); see src/store/store_int.h. */
#ifndef SG_STORE_H
#define SG_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sg/records.h"
#include "sg/status.h"

typedef struct sg_store sg_store;
typedef struct sg_store_reader sg_store_reader;
typedef struct sg_write sg_write;

/* ---- writes ---------------------------------------------------------- */

/* All sg_write_* functions deep-copy their arguments. */
sg_write *sg_write_create(void);
void sg_write_destroy(sg_write *w); /* NULL-safe */
/* Insert a saga row and its nsteps step rows. SG_ECONFLICT at commit if
 * its idem_key already belongs to another saga. */
void sg_write_saga_insert(sg_write *w, const sg_saga_rec *r);
/* Update status, comp_status, error (NULL clears) and updated_us. */
void sg_write_saga_update(sg_write *w, const char *id, sg_saga_status st, sg_comp_status comp,
                          const char *error, int64_t updated_us);
/* Replace step `index` of saga `saga_id` (all fields but name). */
void sg_write_step_update(sg_write *w, const char *saga_id, size_t index, const sg_step_rec *s);
void sg_write_event_insert(sg_write *w, const sg_event_rec *e);
/* Set an event's status, attempts, last error (NULL clears) and
 * updated_us. When a compensation event becomes DELIVERED and its saga has
 * no other PENDING or PARKED compensation event left, the saga's
 * comp_status becomes COMPLETED in the same transaction. */
void sg_write_event_update(sg_write *w, const char *event_id, sg_event_status st, int attempts,
                           const char *last_error, int64_t updated_us);
/* Guards: the whole write fails with SG_ECONFLICT (nothing of it applied,
 * the rest of the batch unaffected) unless, when the guard runs, the saga
 * has status st and comp_status comp / the event has status st. Put them
 * first: they make a transition safe against a concurrent one. */
/* Records when a compensation's first attempt started, unless one is
 * recorded already (what its "started_at" shows). */
void sg_write_event_tried(sg_write *w, const char *event_id, int64_t first_try_us);
void sg_write_saga_expect(sg_write *w, const char *id, sg_saga_status st, sg_comp_status comp);
/* The same guard, put before every operation already in w. */
void sg_write_saga_expect_first(sg_write *w, const char *id, sg_saga_status st,
                                sg_comp_status comp);
void sg_write_event_expect(sg_write *w, const char *event_id, sg_event_status st);
/* Keeps a definition version (design §6: the store keeps every version it
 * has run). Inserting a (name, version) already stored with the same text
 * does nothing; with a different text the whole write fails with
 * SG_ECONFLICT. */
void sg_write_def_insert(sg_write *w, const char *name, int version, const char *canonical,
                         int64_t created_us);
/* Shared stores: makes the saga this process's (its lease's owner and
 * epoch), whoever owned it: for a saga that no process is running (a
 * FAILED saga redriven, a parked compensation redelivered), behind a guard
 * that says so. A store with one owner does nothing. */
void sg_write_saga_claim(sg_write *w, const char *id);
/* Withdraws every PENDING step event whose saga has ended (at start-up:
 * nothing may deliver it any more). */
void sg_write_withdraw_orphans(sg_write *w);
/* Retention (--retention): deletes up to `limit` (1..SG_PURGE_MAX) settled
 * sagas, oldest first, whose created_us and updated_us are both before
 * before_us, with their steps and outbox rows. Settled: COMPLETED, or
 * FAILED with comp_status NONE or COMPLETED, and no outbox row PENDING or
 * PARKED (an IN_PROGRESS saga, a compensation PENDING or PARKED and their
 * events are never deleted: design §1). A deleted saga's Idempotency-Key
 * is free again. *purged (borrowed: the caller keeps it until the write
 * completes) gets how many sagas the write deleted, valid once it
 * completed with SG_OK. Any store, shared ones included: deleting is
 * idempotent, and a purge skips rows another transaction holds. Put it
 * in a write of its own. */
#define SG_PURGE_MAX 10000
void sg_write_purge(sg_write *w, int64_t before_us, size_t limit, size_t *purged);
size_t sg_write_count(const sg_write *w); /* number of operations */
/* About how many bytes w holds (its copies of requests, answers and
 * payloads): what a queued write costs in memory. */
size_t sg_write_size(const sg_write *w);

/* Runs on the loop thread once the write is durable (SG_OK) or failed
 * (nothing of it was applied). */
typedef void (*sg_store_done_cb)(void *arg, sg_status st);

/* ---- lifecycle -------------------------------------------------------- */

typedef struct sg_store_options {
    size_t max_batch;     /* writes per transaction, default 512 */
    int synchronous_full; /* 1 (default) = fsync on every commit */
    /* What a failed transaction (every write SG_EIO: I/O error, full disk,
     * "database is locked" past the busy timeout) does to its writes:
     * 0 (default) = they complete with SG_EIO;
     * 1 = the writer keeps them and retries the same batch after a capped
     *     exponential backoff (10 ms doubling to 1 s) until it commits;
     *     writes submitted meanwhile join it (up to max_batch) or queue
     *     behind it, sg_store_health reports SG_EIO with the error until a
     *     transaction commits again, and sg_store_close gives up after a
     *     few more attempts (SG_STORE_CLOSE_RETRIES, or about
     *     SG_STORE_CLOSE_RETRY_MS) and completes the rest with SG_EIO.
     *     Except a write that inserts a saga: it completes with SG_EIO
     *     when its transaction fails (a new saga's client is answered
     *     rather than kept waiting); and with nothing left to retry the
     *     writer probes the store at the backoff's pace, so health comes
     *     back with the store. A database file replaced or removed under
     *     the store fails every transaction until the original is back.
     * Per-write failures (SG_ECONFLICT, SG_ENOTFOUND, SG_ETOOBIG,
     * SG_EINVAL) are never retried. */
    int retry_failed;
    /* How long a connection waits for a lock held by another connection
     * before the statement fails as busy; 0 = default, 5000 ms. */
    int busy_timeout_ms;
    /* Shared backends (sg_store_shared): how long this process's lease
     * lasts without a renewal (design §7, --lease-ms); 0 = default,
     * SG_STORE_LEASE_MS. Others ignore it. */
    long lease_ms;
} sg_store_options;

#define SG_STORE_LEASE_MS 10000 /* lease_ms default */

#define SG_STORE_BUSY_TIMEOUT_MS 5000 /* busy_timeout_ms default */
#define SG_STORE_RETRY_MIN_MS 10      /* first backoff of retry_failed */
#define SG_STORE_RETRY_MAX_MS 1000    /* backoff cap */
#define SG_STORE_CLOSE_RETRIES 3      /* attempts after sg_store_close ... */
#define SG_STORE_CLOSE_RETRY_MS 2000  /* ... or this long, whichever first */

/* Opens (creating if needed) the store named by url: "sqlite:PATH",
 * "sqlite://PATH", "file:PATH" or a plain PATH. `loop` is borrowed and
 * receives completions (it may be NULL for read-only tools and tests that
 * only use sg_store_commit_sync). On failure *out is NULL and err says why.
 * A store has one owner: while it is open, opening the same database again
 * (from this or another process) fails with SG_EUNAVAIL, "store PATH is in
 * use by another sagad (lock file PATH.lock)". */
sg_status sg_store_open(sg_store **out, const char *url, uv_loop_t *loop,
                        const sg_store_options *opt /* NULL = defaults */, char *err,
                        size_t errlen);
/* Commits everything submitted, stops the writer, runs the remaining
 * callbacks on the calling (loop) thread, closes. NULL-safe. Readers must be
 * closed first. With retry_failed, a batch that still fails is retried at
 * most SG_STORE_CLOSE_RETRIES more times within about
 * SG_STORE_CLOSE_RETRY_MS (an attempt may add one busy timeout), then it
 * and everything still queued complete with SG_EIO. */
void sg_store_close(sg_store *s);

/* Queue w (taken, even on failure) for the next group commit; cb runs on
 * the loop thread. SG_ECLOSED if the store is closing: cb is not called. */
sg_status sg_store_submit(sg_store *s, sg_write *w, sg_store_done_cb cb, void *arg);
/* Commit w (taken) now, on the calling thread, waiting for it: for start-up
 * and tests. */
sg_status sg_store_commit_sync(sg_store *s, sg_write *w);
/* SG_OK if the last transaction committed (or none ran yet); else SG_EIO,
 * and `why` gets the reason (the backend's message for the failed
 * transaction). why is the caller's buffer of n bytes, may be NULL, and is
 * "" on SG_OK. SG_EINVAL for a NULL store. Any thread. */
sg_status sg_store_health(sg_store *s, char *why, size_t n);
/* Transactions committed and writes in them, since open (for tests/metrics). */
void sg_store_stats(sg_store *s, uint64_t *transactions, uint64_t *writes);
/* What the writer has done since open, for measurements (divide by the
 * sagas run for a cost per saga). Any thread. */
typedef struct sg_store_counters {
    uint64_t transactions; /* committed */
    uint64_t writes;       /* in them (as sg_store_stats) */
    uint64_t statements;   /* SQL statements the writer ran, failed transactions included */
    uint64_t wal_pages;    /* database pages the writer wrote to the WAL */
    uint64_t wal_bytes;    /* their bytes, frame headers included */
} sg_store_counters;
/* Fills *out (zeroed for a NULL store; the backend's counts stay 0 if
 * it keeps none). */
void sg_store_counts(sg_store *s, sg_store_counters *out);

/* ---- several sagad on one database (design §7) ------------------------- */

/* A shared store (PostgreSQL, Redis) may be opened by several sagad at
 * once. Each process holds a lease: an owner id made at open, an epoch
 * (a number the database hands out, larger for every new lease: the
 * fencing token) and an expiry the writer renews in every transaction and,
 * when idle, every lease_ms / 3. Every saga belongs to the process that
 * started or adopted it; every transaction first checks that the lease is
 * still this process's, else all its writes fail with SG_EFENCED and the
 * lease is gone for good (the process must stop: another owns its sagas).
 * Other stores have one owner (a lock) and no lease. */
int sg_store_shared(const sg_store *s); /* 1 for a shared store; 0 otherwise or NULL */
/* Monotonic milliseconds (uv_hrtime() / 1e6) before which this process
 * still holds its lease, measured from the start of its last renewal (so
 * never later than the database's own expiry): an action with effects
 * outside (a downstream call, a publish) may start only before it. 0 once
 * the lease is lost; UINT64_MAX for a store that is not shared. Any thread. */
uint64_t sg_store_lease_until(sg_store *s);
/* "<owner id>/<epoch>" of this process's lease, "" when not shared.
 * out is the caller's buffer. Any thread. */
#define SG_OWNER_MAX 64
void sg_store_owner(sg_store *s, char out[SG_OWNER_MAX]);
/* The lease's length in ms (sg_store_options.lease_ms); 0 when not shared. */
uint64_t sg_store_lease_ms(const sg_store *s);
/* Takes over the sagas (and their outbox events) of every process whose
 * lease has expired: they become this process's, and the expired leases
 * are removed. Two processes never take the same ones. *sagas gets how
 * many unfinished sagas and undelivered events changed hands. The
 * recovery reads below then return them (on a shared store they return
 * only this process's). SG_EINVAL on a store that is not shared. */
sg_status sg_store_adopt(sg_store_reader *r, size_t *taken);

/* ---- reads ------------------------------------------------------------ */

/* Opens a reader with its own connection, for one thread at a time; any
 * thread may open one. On success *out is the caller's: close it with
 * sg_store_reader_close before sg_store_close. On failure *out is NULL and
 * err (the caller's buffer of errlen bytes; may be NULL) says why. */
sg_status sg_store_reader_open(sg_store *s, sg_store_reader **out, char *err, size_t errlen);
void sg_store_reader_close(sg_store_reader *r); /* NULL-safe */

/* Why the last call on r failed, as sqlite3_errmsg does: a sentence after
 * any status but SG_OK (the backend's message where it has one, such as
 * "SQLite get steps: no such table: steps", else sg_status_text), "" after
 * SG_OK. Owned by r, never NULL, valid until the next call on r or its
 * close; "" for a NULL r. The sg_store_* read calls below set it. */
const char *sg_store_reader_error(const sg_store_reader *r);

/* *out is filled (caller frees with sg_saga_rec_free); SG_ENOTFOUND if none. */
sg_status sg_store_get(sg_store_reader *r, const char *id, sg_saga_rec *out);
sg_status sg_store_get_by_idem(sg_store_reader *r, const char *key, sg_saga_rec *out);

typedef struct sg_list_query {
    int status;        /* -1 = any, else sg_saga_status */
    size_t limit;      /* 1..1000 */
    const char *after; /* cursor from a previous page, or NULL */
    const char *type;  /* sagas: only this definition (saga type), or NULL; borrowed */
} sg_list_query;
#define SG_CURSOR_MAX 64
/* Newest first. *out is a caller-freed array of *n records (free each with
 * sg_saga_rec_free, then free(*out)). next gets the cursor for the following
 * page or "" if this is the last. SG_EINVAL for a malformed cursor. */
sg_status sg_store_list(sg_store_reader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                        char next[SG_CURSOR_MAX]);
/* The cursor that continues a listing right after r (the one sg_store_list
 * would give as next had its page ended at r), for callers that cut a page
 * shorter than they asked for. */
void sg_store_cursor(const sg_saga_rec *r, char out[SG_CURSOR_MAX]);

/* Start-up recovery: every IN_PROGRESS saga, oldest first. The callback
 * takes ownership of rec (must sg_saga_rec_free it). */
sg_status sg_store_load_unfinished(sg_store_reader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                   void *arg);
/* Start-up recovery in pages, so that any number of unfinished sagas is
 * resumed in bounded memory: up to `limit` IN_PROGRESS sagas (1..1000)
 * after cursor `after` ("" or NULL = the oldest), oldest first, each with
 * its PENDING step events, oldest first. cb takes rec (heap, free with
 * sg_saga_rec_free then free) and evs (an array of nevs, each freed with
 * sg_event_rec_free, then the array; NULL when none). next gets the
 * cursor for the following page, "" after the last. */
typedef void (*sg_unfinished_cb)(void *arg, sg_saga_rec *rec, sg_event_rec *evs, size_t nevs);
sg_status sg_store_load_unfinished_page(sg_store_reader *r, const char *after, size_t limit,
                                        sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX]);
/* *yes = 1 if some PENDING step event belongs to a saga that has ended
 * (sg_write_withdraw_orphans then has work to do). */
sg_status sg_store_has_orphans(sg_store_reader *r, int *yes);
/* Every PENDING or PARKED compensation event, oldest first; cb owns ev. */
sg_status sg_store_load_compensations(sg_store_reader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                      void *arg);
/* Every PENDING event and every PARKED one (so that the compensations
 * behind a parked one wait), oldest first; the callback owns ev. */
sg_status sg_store_load_pending_events(sg_store_reader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                       void *arg);
/* Outbox entries (events and HTTP compensations), newest first, paged
 * like sg_store_list: q->status is -1 or an sg_event_status. *out is a
 * caller-freed array (sg_event_rec_free each, then free). */
sg_status sg_store_list_events(sg_store_reader *r, const sg_list_query *q, sg_event_rec **out,
                               size_t *n, char next[SG_CURSOR_MAX]);
/* Every stored definition version, by name then version; the callback's
 * strings are borrowed for the call. */
typedef void (*sg_def_row_cb)(void *arg, const char *name, int version, const char *canonical);
sg_status sg_store_load_defs(sg_store_reader *r, sg_def_row_cb cb, void *arg);
/* Look up one event. */
sg_status sg_store_get_event(sg_store_reader *r, const char *id, sg_event_rec *out);
#define SG_EVENT_STATUSES 4 /* the values of sg_event_status */
/* Outbox entries by status: counts[s] for each sg_event_status s (all 0
 * on failure). SG_EINVAL when the backend cannot count them. */
sg_status sg_store_count_events(sg_store_reader *r, uint64_t counts[SG_EVENT_STATUSES]);

#endif
