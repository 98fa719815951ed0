/* Bus backends: the interface each transport implements (one file each),
 * in the manner of Redis' ConnectionType or SQLite's VFS. The generic layer
 * (bus.c) picks the backend by URL scheme, builds the envelope and calls
 * the ops; it keeps no state of its own about publishes.
 *
 * Adding a transport (NATS, Pulsar): write src/bus/<name>.c defining a
 * `const struct sg_bus_ops sg_bus_<name>_ops`, declare it below and add it
 * to bus.c's `backends`. */
#ifndef SG_BUS_INT_H
#define SG_BUS_INT_H

#include <stddef.h>

#include "sg/bus.h"

struct sg_bus_ops {
    const char *const *schemes; /* lower-case URL schemes served, NULL-terminated */
    const char *name;           /* human name: "log", "webhook" (sg_bus_name) */
    int is_broker;              /* 1 = a real broker; /readyz requires it connected */

    /* Checks `url` (its scheme, lower-cased, is `scheme`: one of `schemes`)
     * and opens the transport. env is borrowed and outlives the backend.
     * On failure *state is NULL and err (may be NULL) says why: for a
     * malformed URL, "bad bus URL '<url>': ..." and SG_EINVAL. */
    sg_status (*create)(void **state, const char *scheme, const char *url, const sg_bus_env *env,
                        char *err, size_t errlen);
    /* Frees the backend. Publishes still outstanding are dropped: their
     * callbacks never run. Loop thread. */
    void (*destroy)(void *state);
    /* Sends the envelope (`envelope`, `len`: taken, even on failure; ev is
     * borrowed for this call only). On success *pub is the backend's own
     * handle for this publish (handed to the caller as sg_bus_pub *) and
     * done(arg, st, why) runs exactly once later, on the loop thread, never
     * from inside publish, unless cancelled; `why` is never NULL (the
     * reason, or sg_status_text(st)). On failure *pub is NULL and done never
     * runs. Loop thread. */
    sg_status (*publish)(void *state, const sg_event_rec *ev, char *envelope, size_t len,
                         long timeout_ms, sg_bus_ack_cb done, void *arg, void **pub);
    /* Withdraws a publish whose done has not run yet and frees its handle;
     * done never runs. Loop thread. */
    void (*cancel)(void *state, void *pub);
    /* Optional (NULL: always SG_OK). SG_OK, or SG_EUNAVAIL with the reason
     * in why. Any thread. */
    sg_status (*health)(void *state, char *why, size_t n);
};

extern const struct sg_bus_ops sg_bus_log_ops;
extern const struct sg_bus_ops sg_bus_webhook_ops;
extern const struct sg_bus_ops sg_bus_nats_ops;
extern const struct sg_bus_ops sg_bus_pulsar_ops;

/* An event's trace context as a transport carries it (the webhook and NATS
 * as headers, Pulsar as message properties, each named as the header):
 * "" where the event has none (or none valid). */
typedef struct sg__bus_trace_ctx {
    char parent[SG_TRACEPARENT_LEN + 1]; /* traceparent */
    char state[SG_TRACESTATE_MAX + 1];   /* tracestate */
} sg__bus_trace_ctx;
void sg__bus_trace(const sg_event_rec *ev, sg__bus_trace_ctx *t);

/* Writes the reason (printf-style) into err (when err and errlen) and
 * returns SG_EINVAL: for create's refusals. */
sg_status sg__bus_einval(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
