/* The HTTP API (design §2) on libmicrohttpd. Its threads parse and
 * validate requests, answer reads from their own store readers, and hand
 * POST /saga to the engine (sg_engine_submit), suspending the connection
 * until the loop answers. */
#ifndef SG_API_H
#define SG_API_H

#include <stddef.h>
#include <stdint.h>

#include "sg/auth.h"
#include "sg/bus.h"
#include "sg/engine.h"
#include "sg/status.h"
#include "sg/store.h"

typedef struct sg_api sg_api;

typedef struct sg_api_options {
    const char *host;         /* bind address, e.g. "0.0.0.0" */
    uint16_t port;            /* 0 = any free port */
    size_t max_body;          /* default 1 MiB */
    unsigned threads;         /* MHD worker threads, default 2 */
    unsigned conn_timeout_s;  /* idle / slow client timeout, default 30 */
    unsigned max_connections; /* default 16384 */
    /* Bearer tokens every route but /healthz and /readyz asks for; NULL:
     * none. Borrowed: outlives the API. */
    sg_auth *auth;
    /* HTTPS: the certificate (chain) and private key as PEM text, both or
     * neither; borrowed for the call (the API keeps copies). */
    const char *tls_cert, *tls_key;
} sg_api_options;

/* Borrowed: engine, store, bus outlive the API. On failure err says why. */
sg_status sg_api_create(sg_api **out, const sg_api_options *opt, sg_engine *engine, sg_store *store,
                        sg_bus *bus, char *err, size_t errlen);
uint16_t sg_api_port(const sg_api *a);
/* New connections are closed as soon as they are accepted (a new client
 * fails at once); open ones are served. Idempotent. */
void sg_api_quiesce(sg_api *a);
/* Requests handed to the engine and not yet answered. */
size_t sg_api_pending(const sg_api *a);
void sg_api_destroy(sg_api *a); /* NULL-safe; closes connections */

#endif
