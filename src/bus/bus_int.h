/* Bus backends: the interface each transport implements (one file each),
 * in the manner of Redis' ConnectionType or SQLite's VFS. The generic layer
 * (bus.c) parses the URL, picks the backend by scheme, builds the envelope,
 * tracks publishes and wraps every call in a thin function below.
 *
 * Adding a transport (NATS, Pulsar): write src/bus/<name>.c defining a
 * `const struct sg_bus_ops sg_bus_<name>_ops` and list it in bus.c's table. */
#ifndef SG_BUS_INT_H
#define SG_BUS_INT_H

#include "sg/bus.h"

#define SG_BUS_OPS_VERSION 1

/* Backend completion: same contract as sg_bus_ack_cb. */
typedef sg_bus_ack_cb sg_bus_done_cb;

struct sg_bus_ops {
    int version;        /* SG_BUS_OPS_VERSION */
    const char *scheme; /* URL scheme it serves: "log", "http", "nats" */
    const char *name;   /* human name: "log", "webhook" (sg_bus_name) */
    int is_broker;      /* 1 = a real broker; /readyz requires it connected */

    /* Opens the transport for `url` (already checked to carry this scheme).
     * env is borrowed and outlives the backend. On failure *state is NULL and
     * err says why. */
    sg_status (*create)(void **state, const char *url, const sg_bus_env *env, char *err,
                        size_t errlen);
    /* Frees the backend. Publishes still outstanding are dropped: their
     * callbacks never run (the generic layer cancels them first when the
     * backend has `cancel`). Loop thread. */
    void (*destroy)(void *state);
    /* Sends the envelope (`envelope`, `len`: taken, even on failure; ev is
     * borrowed for this call only). Runs done(arg, ...) exactly once later,
     * never from inside publish, unless cancelled. On success *handle
     * identifies the publish for cancel. On failure done never runs. */
    sg_status (*publish)(void *state, const sg_event_rec *ev, char *envelope, size_t len,
                         long timeout_ms, sg_bus_done_cb done, void *arg, void **handle);
    /* Optional (NULL: the generic layer suppresses the callback instead).
     * Withdraws the publish; done never runs. Loop thread. */
    void (*cancel)(void *state, void *handle);
    /* Optional (NULL: always ready). Any thread. Writes a reason into why
     * when not ready. */
    int (*ready)(void *state, char *why, size_t n);
};

extern const struct sg_bus_ops sg_bus_log_ops;
extern const struct sg_bus_ops sg_bus_webhook_ops;

#endif
