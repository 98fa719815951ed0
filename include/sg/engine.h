/* The engine: one libuv loop drives every saga as a small state machine
 * (no thread per saga). HTTP steps run on the shared sg_http_client,
 * publish steps and compensations go through the outbox to the bus, and
 * every state change is committed through the store before the next step
 * starts or an answer leaves. */
#ifndef SG_ENGINE_H
#define SG_ENGINE_H

#include <stddef.h>
#include <uv.h>

#include "sg/bus.h"
#include "sg/def.h"
#include "sg/http_client.h"
#include "sg/outcome.h"
#include "sg/status.h"
#include "sg/store.h"

typedef struct sg_engine sg_engine;

/* A POST /saga as the API hands it over. On a successful sg_engine_submit
 * the engine takes body, idem_key and tracestate (and sets them to NULL
 * here). */
typedef struct sg_start {
    char *body; /* raw JSON object, validated by the caller; malloc'd */
    size_t body_len;
    char *idem_key;    /* Idempotency-Key or NULL; malloc'd */
    int async;         /* Prefer: respond-async: answer once durable */
    const sg_def *def; /* the saga type to run; NULL = the engine's default; borrowed */
    sg_trace trace;    /* the client's trace to continue; trace_id "" = start a new one */
    char *tracestate;  /* its tracestate (checked by sg_tracestate_ok) or NULL; malloc'd */
} sg_start;

/* Runs once per accepted start, on the loop thread: a synchronous start
 * once its saga's final state has committed, an asynchronous one once its
 * insert has. o is borrowed for the call. */
typedef void (*sg_start_cb)(void *arg, const sg_outcome *o);

/* The answer to an operator's command (redelivery); loop thread. detail
 * (borrowed, may be NULL) says why when st is not SG_OK. */
typedef void (*sg_cmd_cb)(void *arg, sg_status st, const char *detail);

typedef struct sg_engine_options {
    long step_timeout_ms;      /* per attempt; default 3000 */
    long retry_min_ms;         /* compensation redelivery backoff, default 100 */
    long retry_max_ms;         /* cap, default 30000 */
    size_t max_inflight;       /* sagas in memory before new starts get 503; default 100000 */
    size_t max_inflight_bytes; /* request and compensation bytes held, default 1 GiB */
    long park_after_s;         /* a compensation still undelivered after this is parked;
                                  default 86400 */
    /* Retention: settled sagas whose last change is older than this many
     * seconds are deleted (sg_write_purge), with their steps and events;
     * 0 (default) keeps everything. */
    long retention_s;
    /* Shared stores: runs once, on the loop thread, when this process has
     * lost its store lease (another sagad may own its sagas now; the engine
     * starts nothing more). sagad exits. NULL = only the log line. */
    void (*on_fenced)(void *arg);
    void *fenced_arg;
} sg_engine_options;

/* All pointers borrowed; they outlive the engine. */
sg_status sg_engine_create(sg_engine **out, uv_loop_t *loop, const sg_engine_options *opt,
                           sg_store *store, sg_bus *bus, sg_http_client *http, const sg_def *def);
/* Loads unfinished sagas and pending events and resumes them (loop thread,
 * before uv_run). On failure err says why. */
sg_status sg_engine_start(sg_engine *e, char *err, size_t errlen);
/* Any thread. On SG_OK the engine takes start's body and key and will run
 * cb exactly once; on failure (SG_ECLOSED) the caller keeps them and cb
 * never runs. */
sg_status sg_engine_submit(sg_engine *e, sg_start *start, sg_start_cb cb, void *arg);
/* POST /saga/{id}/retry: runs the FAILED saga rec (as the caller read it:
 * FAILED, no compensation published) again from its failed step, with the
 * same id and in the same trace (rec->trace; one without a trace, stored
 * by an older sagad, runs in a new one); answered like a start through cb (SG_ECONFLICT with a
 * detail if it is no longer safe, decided by the store). A redrive of a saga already running again
 * joins it. Any thread; on SG_OK the engine takes rec's members (rec is left zeroed); on failure cb
 * never runs. */
sg_status sg_engine_redrive(sg_engine *e, sg_saga_rec *rec, int async, sg_start_cb cb, void *arg);
/* POST /events/{id}/redeliver: puts the PARKED compensation ev (as the
 * caller read it) back to delivery; cb gets SG_OK once that is durable,
 * SG_ECONFLICT if it was not parked any more. Any thread; takes ev's
 * members on SG_OK; on failure cb never runs. */
sg_status sg_engine_redeliver(sg_engine *e, sg_event_rec *ev, sg_cmd_cb cb, void *arg);
/* Loop thread: refuse new starts; in-flight sagas keep running. */
void sg_engine_stop_accepting(sg_engine *e);
/* Sagas in memory / start requests still waiting for an answer. */
size_t sg_engine_active(const sg_engine *e);
size_t sg_engine_waiting(const sg_engine *e);
/* Loop thread, at shutdown: cancels calls, publishes and timers; start
 * requests still waiting get SG_ECLOSED outcomes. Store callbacks arriving later are
 * ignored, so the store can be closed next. Sagas stay durable. */
void sg_engine_halt(sg_engine *e);
/* Loop thread, after sg_engine_halt and sg_store_close: frees everything.
 * Handles are closed; run the loop once more so their close callbacks fire.
 * NULL-safe. */
void sg_engine_destroy(sg_engine *e);

#endif
