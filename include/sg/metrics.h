/* Process-wide metrics for GET /metrics (design §7), in the Prometheus text
 * exposition format 0.0.4.
 *
 * Cheap on the hot path: each thread counts into its own block of cells
 * (plain relaxed loads and stores, no lock, no shared cache line), and a
 * scrape folds every block. A thread's block is claimed on its first count
 * and handed to a later thread when it exits (its counts stay in the sums).
 *
 * Label values are interned into small tables (types, type+step pairs,
 * routes), each with a fixed capacity: a value past it is counted under
 * "_other", so no input grows memory without bound. The strings passed in
 * must stay valid for the life of the process (definitions are never freed,
 * route templates are literals): each thread caches the slot of a pointer,
 * so a repeated count does no string compare.
 *
 * Process-wide rather than an object handed down: the hooks sit in the
 * engine, the store writer and the API, which would otherwise all need a
 * new constructor argument, and Prometheus clients do the same. */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sg/buf.h"
#include "sg/status.h"

/* How one attempt of a step ended. */
typedef enum sg_metrics_outcome {
    SG_METRICS_OK,     /* the step completed */
    SG_METRICS_RETRY,  /* failed; another attempt follows */
    SG_METRICS_FAILED, /* failed for good: the saga fails */
    SG_METRICS_OUTCOMES
} sg_metrics_outcome;

#define SG_METRICS_MAX_TYPES 64  /* saga types; more count as "_other" */
#define SG_METRICS_MAX_STEPS 256 /* type+step pairs */
#define SG_METRICS_MAX_ROUTES 32 /* route templates */

/* A saga of type was durably started (not a resume, not a repeat). */
void sg_metrics_saga_started(const char *type);
/* A saga of type reached its final state; failed: FAILED, else COMPLETED. */
void sg_metrics_saga_finished(const char *type, int failed);
/* Sagas in memory went up or down by delta (sagad_sagas_in_flight). */
void sg_metrics_inflight_add(int delta);
/* One attempt of step of type took ns nanoseconds and ended with o. */
void sg_metrics_step(const char *type, const char *step, sg_metrics_outcome o, uint64_t ns);
/* The store writer committed a transaction of writes writes in ns. */
void sg_metrics_store_commit(uint64_t ns, size_t writes);
/* Retention deleted n sagas (sagad_sagas_purged_total). */
void sg_metrics_sagas_purged(size_t n);
/* An HTTP answer with status code to a request of route (a template such
 * as "/saga/{id}", never a raw path). Codes outside 100..599 count as 0. */
void sg_metrics_http(const char *route, unsigned code);

/* Outbox entries by status, read from the store at scrape time. */
typedef struct sg_metrics_outbox {
    const char *status; /* borrowed */
    uint64_t count;
} sg_metrics_outbox;

/* Appends the whole exposition to out: every family above, plus
 * sagad_outbox_events from outbox[0..noutbox) (omitted when noutbox is 0).
 * SG_ETOOBIG if out's cap is reached (out then holds a truncated text). */
sg_status sg_metrics_render(sg_buf *out, const sg_metrics_outbox *outbox, size_t noutbox);

/* The Content-Type of the exposition. */
#define SG_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Appends v as a label value: \ " and newline escaped (format 0.0.4). */
sg_status sg_metrics_escape_label(sg_buf *out, const char *v);

#endif
