/* Event transports ("bus"), chosen at run time by URL scheme:
 *   log:                  print the envelope to stdout, acknowledged at once
 *   http://host:port/path webhook: POST the envelope, 2xx = acknowledged
 *   nats://host:port      NATS JetStream, subject = topic; the publish ack acknowledges
 *   pulsar://host:6650    Apache Pulsar (pulsar+ssl:// with TLS): the
 *                         broker's send receipt = acknowledged
 * Threads: every function runs on the loop thread, except sg_bus_health and
 * the predicates and name (sg_bus_is_*, sg_bus_name), which any thread may
 * call while the bus exists. */
#ifndef SG_BUS_H
#define SG_BUS_H

#include <stddef.h>
#include <uv.h>

#include "sg/buf.h"
#include "sg/http_client.h"
#include "sg/records.h"
#include "sg/status.h"

typedef struct sg_bus sg_bus;         /* opaque; owned by its creator */
typedef struct sg_bus_pub sg_bus_pub; /* opaque; owned by the bus */

/* What a backend may use; all borrowed, they must outlive the bus. */
typedef struct sg_bus_env {
    uv_loop_t *loop;      /* required */
    sg_http_client *http; /* required by the webhook backend */
    /* Optional: names this sagad stably (host and store), so that a broker
     * sees the same producer across restarts; NULL: the host name. */
    const char *instance;
    /* Optional: CA certificates (PEM file) that TLS transports (pulsar+ssl)
     * check a broker's certificate against when the URL names none; NULL:
     * the system's. */
    const char *ca_file;
} sg_bus_env;

/* Runs once per successful sg_bus_publish, on the loop thread, never from
 * inside sg_bus_publish and never after sg_bus_cancel or sg_bus_destroy.
 * What st says (design §1 decides retries and parking by it):
 *   SG_OK        acknowledged;
 *   SG_EREFUSED  refused for good (authorization, unknown topic, a webhook
 *                4xx other than 408/429): retrying cannot help;
 *   SG_EUNAVAIL  not taken now (unreachable, 408/429/5xx): retry later;
 *   SG_ETIMEOUT, SG_EIO  no answer (timed out, connection lost after the
 *                send): the event may have arrived, it is in doubt. `why` is never
 * NULL: the reason, or sg_status_text(st); borrowed for the call. arg is
 * the caller's, passed back untouched. The callback may publish, cancel
 * other publishes or destroy the bus. */
typedef void (*sg_bus_ack_cb)(void *arg, sg_status st, const char *why);

/* url and env are borrowed for the call (the bus keeps what it needs; env's
 * members must outlive the bus). On success *out is the caller's, to free
 * with sg_bus_destroy. On failure *out is NULL and err (may be NULL) says
 * why: bad URL, unknown scheme, missing env. */
sg_status sg_bus_create(sg_bus **out, const char *url, const sg_bus_env *env, char *err,
                        size_t errlen);
/* Drops every publish outstanding (their callbacks never run) and frees b.
 * May be called from an ack callback. NULL-safe. */
void sg_bus_destroy(sg_bus *b);

/* Publishes ev (borrowed for the call: copied as needed) with the envelope
 * of design §4; the attempt gives up after timeout_ms. *pub (pub may be
 * NULL) receives a handle, owned by the bus, valid for sg_bus_cancel until
 * cb runs. On failure *pub is NULL and cb never runs. */
sg_status sg_bus_publish(sg_bus *b, const sg_event_rec *ev, long timeout_ms, sg_bus_ack_cb cb,
                         void *arg, sg_bus_pub **pub);
/* Withdraws a publish whose callback has not run: it never will, and pub
 * is freed. NULL b or pub: nothing happens. */
void sg_bus_cancel(sg_bus *b, sg_bus_pub *pub);

/* SG_OK if the transport can deliver now (brokers: connected), otherwise
 * SG_EUNAVAIL with the reason (possibly empty) in why[n]; NULL b is
 * SG_EUNAVAIL. Any thread. */
sg_status sg_bus_health(sg_bus *b, char *why, size_t n);
/* 1 for real brokers (NATS, Pulsar): /readyz requires them connected. */
int sg_bus_is_broker(const sg_bus *b);
/* 1 for log: (events go nowhere; sagad warns at start). */
int sg_bus_is_log(const sg_bus *b);
/* Static string: "log", "webhook", "pulsar"; "none" for NULL. */
const char *sg_bus_name(const sg_bus *b);

/* The design §4 envelope:
 * {"id","topic","saga_id","payload":<raw>,"created_at"} appended to out
 * (borrowed); ev borrowed. On failure out is left as it was. */
sg_status sg_event_envelope(sg_buf *out, const sg_event_rec *ev);

#endif
